"""Fixtures for tests that run the Ray engine on a local Ray."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray (2 CPUs, no dashboard) shared by a module's tests; modules that need a fresh
    Ray per test define their own."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="forecast-tuner")
    yield ray
    ray.shutdown()


@pytest.fixture
def slow_configs(tmp_path: Path) -> Path:
    """A configs/ copy whose test family draws many samples, so trials last long enough to
    interrupt; selected through $TUNER_CONFIGS like a user's own configs folder."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "spaces" / "bootstrap_returns.yaml").write_text(
        "family: bootstrap_returns\ncontext_length: 256\nsearch_space:\n"
        "  num_samples: {choices: [800000, 1000000]}\n  lookback: {low: 16, high: 255}\n"
        "  aggregate: {choices: [mean, median]}\nfixed: {}\n"
    )
    return configs


def engine_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1", **extra}
    return env
