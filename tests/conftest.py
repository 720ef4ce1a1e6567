"""Shared fixtures: synthetic bars (random walks) and writers for bar files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def random_walk_bars(n: int = 400, seed: int = 0, start: str = "2020-01-01", freq: str = "D",
                     price: float = 100.0, vol: float = 0.01) -> pd.DataFrame:
    """OHLCV bars of a geometric random walk, columns as a typical export names them."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.concatenate([[price], close[:-1]])
    spread = np.abs(rng.normal(0, vol / 2, n)) * close
    return pd.DataFrame({
        "Date": pd.date_range(start, periods=n, freq=freq).strftime("%Y-%m-%d %H:%M:%S"),
        "Open": open_.round(4),
        "High": (np.maximum(open_, close) + spread).round(4),
        "Low": (np.minimum(open_, close) - spread).round(4),
        "Close": close.round(4),
        "Volume": rng.integers(1_000, 10_000, n),
    })


@pytest.fixture
def bars_frame() -> pd.DataFrame:
    return random_walk_bars()


@pytest.fixture
def write_csv(tmp_path: Path):
    def write(name: str, frame: pd.DataFrame | str, folder: Path | None = None) -> Path:
        folder = folder or tmp_path / "data"
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / name
        if isinstance(frame, str):
            file.write_text(frame)
        else:
            frame.to_csv(file, index=False)
        return file

    return write


@pytest.fixture
def data_folder(write_csv, tmp_path: Path) -> Path:
    """Two good symbols (AAA daily, BBB hourly) in a folder."""
    write_csv("AAA.csv", random_walk_bars(400, seed=1))
    write_csv("BBB.csv", random_walk_bars(400, seed=2, freq="h", price=1.1, vol=0.002))
    return tmp_path / "data"


# Small but valid params of every family, for tests that run each family once.
FAMILY_PARAMS = {
    "bootstrap_returns": {"num_samples": 64, "aggregate": "mean"},
    "toto": {"num_samples": 64, "aggregate": "median", "samples_per_batch": 32},
    "kronos_standard": {"temperature": 0.2, "top_p": 0.8, "top_k": 0, "sample_count": 16,
                        "max_context": 64, "clip": 2.0},
    "kronos_ensemble": {"temperature": 0.1, "temp_max": 0.3, "top_p": 0.85, "top_k": 16,
                        "num_samples": 8, "max_context": 64, "clip": 2.0,
                        "aggregate": "trimmed_mean_10"},
    "toto2": {"max_context": 64, "point": "median"},
}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Tiny random-init checkpoints of every model, in the official on-disk format."""
    from tuner.core.models.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-weights"))


@pytest.fixture
def make_family(tiny_weights):
    """Build a family instance; model families get the tiny checkpoints."""
    from tuner.core.families import family_class

    def make(name: str):
        cls = family_class(name)
        return cls() if name == "bootstrap_returns" else cls(weights=str(tiny_weights), device="cpu")

    return make
