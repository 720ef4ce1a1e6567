"""Fractional GPU scheduling and actor routing with emulated GPUs; resources that never come."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tuner.core.errors import TunerError
from tuner.core.models.weights import WeightsSource
from tuner.core.windows import WindowSpec
from tuner.engine.experiment import run_experiment
from tuner.engine.experiment_config import ExperimentConfig, FamilyResources

pytestmark = pytest.mark.slow
MODEL_FAMILIES = ("toto", "kronos_standard", "kronos_ensemble")


def tuning(experiment: Path) -> bool:
    """Whether the run is tuning: progress.json names a phase once tuning is over (re-scoring,
    collation: the model actors are released before collating, so the GPUs come free then)."""
    try:
        return json.loads((experiment / "progress.json").read_text()).get("phase") is None
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def gpu_ray():
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, namespace="forecast-tuner")
    yield ray
    ray.shutdown()


def test_when_two_gpus_then_actors_share_them_fractionally_and_trials_reserve_none(gpu_ray, tiny_weights, tmp_path):
    ray = gpu_ray
    config = ExperimentConfig(name="gpus", windows=WindowSpec(), pooled=False, symbols=("AAPL", "MSFT"), families=MODEL_FAMILIES, trials=4,
                              weights=WeightsSource.parse(str(tiny_weights)), storage=str(tmp_path))
    free_gpu_during_run: list[float] = []

    def watch() -> None:
        while not (tmp_path / "gpus" / "summary.json").exists():
            if tuning(tmp_path / "gpus"):
                free_gpu_during_run.append(ray.available_resources().get("GPU", 0.0))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = run_experiment(config, echo=lambda line: None)
    watcher.join(timeout=10)

    actors = summary["actors"]
    by_family = {f: [a for a in actors if a["family"] == f] for f in MODEL_FAMILIES}
    assert {f: len(v) for f, v in by_family.items()} == {f: 2 for f in MODEL_FAMILIES}  # one set per GPU
    assert all(a["gpu_ids"] for a in actors)  # Ray gave every actor a GPU share
    assert {a["device"] for a in actors} == {"cpu"}  # emulated GPUs: no CUDA, the actor used the CPU
    # The actors hold both GPUs (2×0.5 + 2×0.25 + 2×0.25); trials still ran, so they reserved none.
    assert free_gpu_during_run and max(free_gpu_during_run) == 0.0
    assert summary["trials"]["completed"] == 2 * 3 * 4
    # Routing spread each family's trials over both of its actors.
    table = pd.read_parquet(tmp_path / "gpus" / "trials.parquet")
    assert table.groupby("family")["actor"].nunique().eq(2).all()
    assert summary["model_loads"] == 6 == len(actors)


def test_when_actors_ask_for_more_gpu_than_exists_then_a_clear_error_not_a_hang(gpu_ray, tiny_weights, tmp_path):
    config = ExperimentConfig(name="toomuch", symbols=("AAPL",), families=("toto",), trials=1,
                              weights=WeightsSource.parse(str(tiny_weights)), storage=str(tmp_path),
                              resources={"toto": FamilyResources(actors=1, num_gpus=3)},
                              pending_timeout_s=5)
    with pytest.raises(TunerError, match=r"model actors for toto did not start within 5s: they need toto: 1 × \(3 GPU, 1 CPU\); "
                       r"the cluster has GPU 2 and CPU 2 free"):
        run_experiment(config, echo=lambda line: None)
    names = [a["name"] for a in gpu_ray.util.list_named_actors(all_namespaces=True)]
    assert not [n for n in names if n.startswith("toomuch-")]


def test_when_two_sizes_have_gpu_shares_then_each_sizes_actors_hold_theirs(gpu_ray, tmp_path):
    """Checkpoint sizes on (emulated) GPUs: a set of one actor per size per GPU, each size with
    its ``gpu_share``; trials still reserve none."""
    from tuner.core.models.tiny import make_tiny

    ray = gpu_ray
    small, wide = make_tiny(tmp_path / "tiny"), make_tiny(tmp_path / "tiny-wide", size="tiny-wide")
    weights = WeightsSource.from_mapping({"toto2": {"4m": str(small), "22m": str(wide)}}, "weights")
    config = ExperimentConfig(name="sized-gpus", windows=WindowSpec(val_windows=20, test_windows=20), pooled=False,
                              symbols=("AAPL",), families=("toto2",), trials=4, weights=weights,
                              storage=str(tmp_path / "results"),
                              resources={"toto2": FamilyResources.from_mapping(
                                  {"gpu_share": {"22m": 0.5, "4m": 0.25}}, "resources.toto2")})
    lines: list[str] = []
    free: list[float] = []

    def watch() -> None:
        while not (tmp_path / "results" / "sized-gpus" / "summary.json").exists():
            if tuning(tmp_path / "results" / "sized-gpus"):
                free.append(ray.available_resources().get("GPU", 0.0))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = run_experiment(config, echo=lines.append)
    watcher.join(timeout=10)
    assert any(line.startswith("toto2 checkpoint 22m: 2 model actor(s), 0.5 GPU and ") for line in lines)
    assert any(line.startswith("toto2 checkpoint 4m: 2 model actor(s), 0.25 GPU and ") for line in lines)
    assert sum("per GPU set" in line for line in lines) == 2  # one actor of each size per GPU
    assert sorted(a["checkpoint"] for a in summary["actors"]) == ["22m", "22m", "4m", "4m"]
    assert all(a["gpu_ids"] for a in summary["actors"])
    assert free and max(free) == pytest.approx(2 - 2 * (0.5 + 0.25))  # held by the actors, none by trials
    assert summary["model_loads"] == 4 and summary["trials"]["completed"] == 4
