"""Optuna studies rebuilt from trials.parquet: params and distributions from the search spaces,
states, values, user attributes, and `tuner export-optuna` into SQLite and journal storages."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.test_report import make_experiment
from tuner.cli import main
from tuner.decisions.results import load_report
from tuner.decisions.studies import rebuild_studies, study_trial_sets
from tuner.engine.collate import COMPLETED, FAILED, NEVER_RAN, TrialRecord, trials_table

# Per family, three trial configs as a real run records them (config_checked: searched and
# fixed parameters, conditional ones at their `otherwise` value).
CONFIGS = {
    "toto": [{"num_samples": 256, "aggregate": "median"},
             {"num_samples": 64, "aggregate": "trimmed_mean_10"},
             {"num_samples": 2048, "aggregate": "quantile_0.25"}],
    # top_p is searched only when top_k is 0; with top_k 16 it is recorded as 1.0
    "kronos_standard": [{"temperature": 0.21, "top_k": 0, "top_p": 0.8, "sample_count": 128,
                         "max_context": 256, "clip": 2.0},
                        {"temperature": 0.12, "top_k": 16, "top_p": 1.0, "sample_count": 192,
                         "max_context": 192, "clip": 1.5},
                        {"temperature": 0.29, "top_k": 0, "top_p": 0.71, "sample_count": 256,
                         "max_context": 224, "clip": 2.4}],
    "kronos_ensemble": [{"temperature": 0.1, "temp_max": 0.3, "top_k": 16, "top_p": 1.0, "num_samples": 8,
                         "max_context": 192, "clip": 2.0, "aggregate": "trimmed_mean_10"},
                        {"temperature": 0.2, "temp_max": 0.25, "top_k": 0, "top_p": 0.8, "num_samples": 5,
                         "max_context": 256, "clip": 1.4, "aggregate": "mean"},
                        # num_samples 96: not in today's space (edited since the run)
                        {"temperature": 0.15, "temp_max": 0.35, "top_k": 32, "top_p": 1.0, "num_samples": 96,
                         "max_context": 224, "clip": 2.2, "aggregate": "median"}],
}
SEARCHED = {  # what Optuna suggested in each of those trials (the rest is fixed or not applicable)
    "kronos_standard": [True, False, True],   # whether top_p was searched
    "kronos_ensemble": [False, True, False],
}


def records(symbols=("AAA", "BBB", "CCC")) -> list[TrialRecord]:
    """Trials as the driver hands them to collate: trial 2 of each study is the best (the winner
    make_experiment writes), BBB/toto trial 1 failed and CCC/kronos_ensemble trial 0 never ran."""
    out = []
    for s, symbol in enumerate(symbols):
        for family, configs in CONFIGS.items():
            for i, config in enumerate(configs):
                trial_id = f"{symbol}-{family}-{i}"
                status = {("BBB", "toto", 1): FAILED, ("CCC", "kronos_ensemble", 0): NEVER_RAN}.get(
                    (symbol, family, i), COMPLETED)
                metrics = {}
                if status == COMPLETED:
                    mae = 0.01 * (1 + s) * (1.3 - 0.1 * i)
                    metrics = {"pct_return_mae": mae, "price_mae": mae * 100, "latency_s": 0.2 + i,
                               "latency_per_forecast_s": (0.2 + i) / 20, "windows": 20, "skill": 1 - mae / 0.02,
                               "baseline_pct_return_mae": 0.02, "seed": 3, "actor": f"exp-{family}-0",
                               "node": "10.0.0.1", "actor_s": 0.5, "wait_s": 0.01, "tiny_weights": False,
                               "timestamp": 1_760_000_000 + 10 * i, "time_total_s": 1.5, "trial_id": trial_id,
                               "errors": [mae * (0.5 + w / 20) for w in range(20)]}
                out.append(TrialRecord(trial_id, symbol, family, status, config, metrics,
                                       "RuntimeError: boom" if status == FAILED else
                                       "stopped before it reported" if status == NEVER_RAN else None))
    return out


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A finished experiment (make_experiment's winners and summary) whose trials.parquet is
    written by collate.trials_table from driver records, as `tuner run` writes it."""
    root = make_experiment(tmp_path / "results")
    trials_table(records()).to_parquet(root / "trials.parquet", index=False)
    return tmp_path / "results"


def parquet_rows(storage: Path) -> dict[str, list[dict]]:
    frame = pd.read_parquet(storage / "exp" / "trials.parquet")
    rows: dict[str, list[dict]] = {}
    for row in frame.to_dict("records"):
        rows.setdefault(f"exp/{row['symbol']}/{row['family']}", []).append(row)
    return rows


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def assert_study_matches(study: optuna.Study, rows: list[dict], winner_test: float) -> None:
    """Every trial of the study against its trials.parquet row, in order."""
    assert len(study.trials) == len(rows)
    for trial, row in zip(study.trials, rows, strict=True):
        config = json.loads(row["config"])
        assert {**trial.params, **trial.user_attrs.get("fixed_params", {})} == config
        assert set(trial.params) <= set(config)
        if row["status"] == COMPLETED:
            assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == row["pct_return_mae"]
        else:
            assert trial.state == optuna.trial.TrialState.FAIL and trial.value is None
        for column, value in row.items():
            if column in ("config", "pct_return_mae") or column.startswith("param_") or missing(value):
                continue
            expected = value.tolist() if getattr(value, "ndim", 0) else value.item() if hasattr(value, "item") else value
            assert trial.user_attrs[column] == expected, column
        assert trial.user_attrs.get("winner", False) == (row["trial_id"].endswith("-2"))
        if trial.user_attrs.get("winner"):
            assert trial.user_attrs["test_pct_return_mae"] == winner_test
            assert trial.user_attrs["test_latency_per_forecast_s"] > 0
        if not missing(row.get("timestamp")):
            assert trial.datetime_complete == datetime.fromtimestamp(row["timestamp"])
            assert trial.datetime_complete - trial.datetime_start == timedelta(seconds=row["time_total_s"])


def test_when_studies_are_rebuilt_then_conditional_and_fixed_parameters_are_not_params(experiment):
    studies = rebuild_studies(load_report("exp", str(experiment)))
    assert sorted(studies) == [(s, f) for s in ("AAA", "BBB", "CCC") for f in sorted(CONFIGS)]
    for family, searched in SEARCHED.items():
        trials = studies[("AAA", family)].trials
        assert ["top_p" in t.params for t in trials] == searched
        assert [t.user_attrs.get("fixed_params", {}).get("top_p") for t in trials] == [
            None if s else 1.0 for s in searched]
    ensemble = studies[("AAA", "kronos_ensemble")].trials[2]
    assert ensemble.distributions["num_samples"].choices == (5, 8, 10, 12, 15, 96)  # widened
    assert ensemble.distributions["temp_max"].low == 0.20 and ensemble.distributions["temp_max"].high == 0.35
    toto = studies[("BBB", "toto")].trials
    assert [t.state.name for t in toto] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert toto[1].user_attrs["error"] == "RuntimeError: boom"


def test_when_the_report_reads_the_trials_without_optuna_storage_then_they_are_the_studies_trials(experiment):
    report = load_report("exp", str(experiment))
    studies, sets = rebuild_studies(report), study_trial_sets(report)
    assert sorted(sets) == sorted(studies)
    for key, study in studies.items():
        assert sets[key].study_name == study.study_name
        assert [(t.number, t.state, t.value, t.params, t.distributions, t.user_attrs) for t in sets[key].get_trials()] \
            == [(t.number, t.state, t.value, t.params, t.distributions, t.user_attrs) for t in study.trials]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_when_exported_then_every_trial_reloads_as_in_trials_parquet(experiment, tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'tuning.db'}" if kind == "sqlite" else str(tmp_path / "tuning.log")
    result = CliRunner().invoke(main, ["export-optuna", "exp", "--storage", str(experiment),
                                       "--storage-url", url])
    assert result.exit_code == 0, result.output
    assert result.output == f"exported 9 studies of experiment exp to {url}\n"
    storage = url if kind == "sqlite" else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(url))
    rows = parquet_rows(experiment)
    summaries = optuna.get_all_study_summaries(storage)
    assert sorted(s.study_name for s in summaries) == sorted(rows)
    winner_docs = {(r.symbol, r.family): r for r in load_report("exp", str(experiment)).rows}
    for name, study_rows in rows.items():
        study = optuna.load_study(study_name=name, storage=storage)
        _, symbol, family = name.split("/")
        assert study.direction == optuna.study.StudyDirection.MINIMIZE
        assert study.user_attrs["symbol"] == symbol and study.user_attrs["family"] == family
        assert study.metric_names == ["pct_return_mae"]
        assert_study_matches(study, study_rows, winner_docs[(symbol, family)].test_pct_return_mae)


def test_when_the_studies_exist_then_export_refuses_and_replace_overwrites(experiment, tmp_path):
    url = f"sqlite:///{tmp_path / 'tuning.db'}"
    args = ["export-optuna", "exp", "--storage", str(experiment), "--storage-url", url]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert again.output == (f"Error: study 'exp/AAA/kronos_ensemble' already exists in {url} (and 8 more of "
                            "this experiment's); pass --replace to overwrite them or export elsewhere\n")
    replaced = CliRunner().invoke(main, [*args, "--replace"])
    assert replaced.exit_code == 0, replaced.output
    assert len(optuna.load_study(study_name="exp/AAA/toto", storage=url).trials) == 3  # not 6


def test_when_the_experiment_has_no_trials_table_then_export_says_so(tmp_path):
    from tests.test_report import make_running

    make_running(tmp_path)
    result = CliRunner().invoke(main, ["export-optuna", "live", "--storage", str(tmp_path),
                                       "--storage-url", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1
    assert result.output == (f"Error: experiment 'live' has no trials.parquet yet under {tmp_path / 'live'}: "
                             "it is still running or was interrupted\n")
