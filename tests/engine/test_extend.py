"""`tuner extend`: a finished experiment gets more trials per study and continues from its
journal, on a local Ray with the weights-free test family."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from tuner.cli import main
from tuner.engine.experiment import run_experiment
from tuner.engine.experiment_config import ExperimentConfig

pytestmark = pytest.mark.slow


def test_when_a_finished_experiment_is_extended_then_it_runs_only_the_new_trials_and_keeps_the_rest(
        local_ray, tmp_path):
    # No pooled study: the counts below are the per-symbol studies' (tests/engine/test_pooled.py
    # covers a pooled study's resume).
    config = ExperimentConfig(name="ext", symbols=("AAPL", "MSFT"), families=("bootstrap_returns",), trials=3,
                              seed=5, storage=str(tmp_path), pooled=False)
    run_experiment(config, echo=lambda line: None)
    root = tmp_path / "ext"
    before = pd.read_parquet(root / "trials.parquet")
    stored = json.loads((root / "tuner-experiment.json").read_text())

    result = CliRunner().invoke(main, ["extend", "ext", "--trials", "5", "--storage", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "raising the budget from 3 to 5 trials per study" in result.output
    assert "[resumed] with 6 finished trials kept" in result.output

    after = pd.read_parquet(root / "trials.parquet")
    summary = json.loads((root / "summary.json").read_text())
    assert summary["complete"] is True and summary["trials"]["completed"] == 10
    assert len(after) == 10 and after["trial_id"].is_unique
    kept = after[after["trial_id"].isin(before["trial_id"])]
    assert len(kept) == 6 and set(kept["session"]) == {1} and set(after["session"]) == {1, 2}
    for study, group in after.groupby("study"):
        assert sorted(group["number"]) == [0, 1, 2, 3, 4], study
    now = json.loads((root / "tuner-experiment.json").read_text())
    assert {k: v for k, v in now.items() if k not in ("trials", "version")} == \
        {k: v for k, v in stored.items() if k not in ("trials", "version")}
    assert now["trials"] == 5

    again = CliRunner().invoke(main, ["extend", "ext", "--trials", "5", "--storage", str(tmp_path)])
    assert again.exit_code == 0 and "is complete (10 trials)" in again.output
