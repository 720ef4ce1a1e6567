"""Damaged outputs of a finished experiment are rebuilt from its journal by `tuner resume`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.summary_shapes import tables

pytestmark = pytest.mark.slow

DAMAGE = {"summary.json": "{\"complete\": tr", "progress.json": "{", "trials.parquet": "PAR1 not parquet",
          "symbols.parquet": "PAR1 not parquet", "studies.parquet": "PAR1 not parquet"}


@pytest.fixture
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="forecast-tuner")
    yield ray
    ray.shutdown()


def test_when_outputs_are_damaged_then_resume_rebuilds_them_from_the_journal(local_ray, tmp_path):
    from tuner.engine.experiment import resume_experiment, run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    config = ExperimentConfig(name="rebuilt", symbols=("AAPL",), families=("bootstrap_returns",), trials=3,
                              storage=str(tmp_path))
    first = run_experiment(config, echo=lambda line: None)
    root = tmp_path / "rebuilt"
    winner = json.loads((root / "bootstrap_returns" / "AAPL.json").read_text())
    table = pd.read_parquet(root / "trials.parquet").set_index("trial_id")["pct_return_mae"]

    # all of them; then only the trial table; then only the summary's tables
    for damaged in (tuple(DAMAGE), ("trials.parquet",), ("symbols.parquet",), ("studies.parquet",)):
        for name in damaged:
            (root / name).write_text(DAMAGE[name])
        lines: list[str] = []
        summary = resume_experiment("rebuilt", str(tmp_path), echo=lines.append)
        for name in damaged[:1]:  # the first damaged file found is named, with the way back
            assert any(line.startswith(f"{root / name}: not ") and line.endswith("Rebuilding it now.")
                       for line in lines), lines
        assert summary["complete"] and summary["trials"] == first["trials"]
        assert json.loads((root / "summary.json").read_text())["trials"] == first["trials"]
        assert tables(root).entry("AAPL")["best_family"] == "bootstrap_returns"
        assert tables(root).study_counts()["AAPL/bootstrap_returns"]["completed"] == 3
        assert json.loads((root / "progress.json").read_text())["trials_done"] == 3
        rebuilt = pd.read_parquet(root / "trials.parquet").set_index("trial_id")["pct_return_mae"]
        assert rebuilt.to_dict() == table.to_dict()
        assert json.loads((root / "bootstrap_returns" / "AAPL.json").read_text())["config"] == winner["config"]
