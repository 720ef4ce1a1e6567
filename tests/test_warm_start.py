from __future__ import annotations

import json

import pandas as pd

from tuner.core.config import load_family_config
from tuner.core.storage import Storage
from tuner.engine.collate import COMPLETED, TrialRecord, build_summary, pick_winners, trial_counts
from tuner.engine.warm_start import fit_point, warm_start_points


def previous_experiment(tmp_path) -> Storage:
    storage = Storage(str(tmp_path), "2026-10")
    rows = [
        ("AAPL", "toto", {"num_samples": 256, "aggregate": "median"}, 0.010),
        ("AAPL", "toto", {"num_samples": 64, "aggregate": "mean"}, 0.030),
        ("AAPL", "toto", {"num_samples": 2048, "aggregate": "trimmed_mean_10"}, 0.020),
        ("AAPL", "toto", {"num_samples": 96, "aggregate": "mean"}, 0.001),  # not in today's space
    ]
    table = pd.DataFrame([{"symbol": s, "family": f, "status": COMPLETED, "config": json.dumps(c),
                           "pct_return_mae": v} for s, f, c, v in rows])
    storage.write_parquet("trials.parquet", table)
    return storage


def test_when_previous_experiment_is_given_then_its_best_in_space_configs_come_first(tmp_path):
    spaces = {"toto": load_family_config("toto").space}
    points = warm_start_points([("AAPL", "toto"), ("MSFT", "toto")], spaces,
                               previous=previous_experiment(tmp_path), top_k=3)
    assert points == {"AAPL/toto": [{"num_samples": 256, "aggregate": "median"},
                                    {"num_samples": 2048, "aggregate": "trimmed_mean_10"},
                                    {"num_samples": 64, "aggregate": "mean"}]}


def test_when_production_config_matches_the_family_then_it_is_the_first_point(tmp_path):
    best = tmp_path / "best"
    best.mkdir()
    (best / "AAPL.json").write_text(json.dumps({"family": "toto", "config": {
        "num_samples": 512, "aggregate": "mean", "samples_per_batch": 256}}))
    (best / "MSFT.json").write_text(json.dumps({"family": "kronos_standard", "config": {}}))
    spaces = {"toto": load_family_config("toto").space}
    points = warm_start_points([("AAPL", "toto"), ("MSFT", "toto")], spaces, production=best,
                               previous=previous_experiment(tmp_path), top_k=1, budget=2)
    # the previous best (num_samples 96) is outside today's space: the next best takes its place
    assert points == {"AAPL/toto": [{"num_samples": 512, "aggregate": "mean"},
                                    {"num_samples": 256, "aggregate": "median"}]}


def test_when_temp_max_is_below_temperature_then_the_point_does_not_fit():
    space = load_family_config("kronos_ensemble").space
    good = {"temperature": 0.2, "temp_max": 0.3, "top_p": 0.8, "top_k": 0, "num_samples": 8,
            "max_context": 256, "clip": 2.0, "aggregate": "mean"}
    assert fit_point(space, good) == good
    assert fit_point(space, {**good, "temp_max": 0.21, "temperature": 0.24}) is None


def record(trial_id: str, mae: float, latency: float) -> TrialRecord:
    return TrialRecord(trial_id, "AAPL", "toto", COMPLETED, {"num_samples": 64},
                       {"pct_return_mae": mae, "latency_per_forecast_s": latency})


def test_when_max_latency_is_set_then_only_fast_enough_trials_can_win():
    records = [record("a", 0.01, 0.5), record("b", 0.02, 0.05), record("c", 0.03, 0.01)]
    assert pick_winners(records)[("AAPL", "toto")].trial_id == "a"
    assert pick_winners(records, max_latency_s=0.1)[("AAPL", "toto")].trial_id == "b"
    assert pick_winners(records, max_latency_s=0.001) == {}


def test_when_no_trial_meets_the_latency_limit_then_the_summary_says_why():
    records = [record("a", 0.01, 0.5)]
    counts = trial_counts(records, [("AAPL", "toto")], budget=1)
    summary = build_summary({}, counts, {"max_latency_s": 0.1})
    assert summary["studies_without_winner"] == {
        "AAPL/toto": "no completed trial within max_latency_s 0.1 s per forecast"}
    assert summary["complete"] is True


def test_when_an_old_config_has_a_top_p_that_was_not_used_then_the_point_leaves_it_out():
    from tuner.core.config import load_family_config
    from tuner.engine.warm_start import fit_point

    space = load_family_config("kronos_standard").space
    old = {"temperature": 0.2, "top_k": 16, "top_p": 0.8, "sample_count": 128, "max_context": 256, "clip": 2.0}
    assert fit_point(space, old) == {k: v for k, v in old.items() if k != "top_p"}
    assert fit_point(space, {**old, "top_k": 0}) == {**old, "top_k": 0}
