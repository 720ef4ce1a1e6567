"""A whole small experiment on a local Ray with tiny checkpoints: every family, collation,
model-load accounting, tiny-weight labelling, and resuming a finished experiment."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.summary_shapes import entries
from tuner.core.models.weights import WeightsSource
from tuner.core.windows import WindowSpec
from tuner.engine.experiment import experiment_status, run_experiment
from tuner.engine.experiment_config import ExperimentConfig

pytestmark = pytest.mark.slow

FAMILIES = ("toto", "kronos_standard", "kronos_ensemble", "bootstrap_returns")


@pytest.fixture(scope="module")
def finished(local_ray, tiny_weights, tmp_path_factory):
    storage = tmp_path_factory.mktemp("results")
    config = ExperimentConfig(name="small", windows=WindowSpec(), symbols=("AAPL", "EURUSD"), families=FAMILIES, trials=3,
                              seed=7, weights=WeightsSource.parse(str(tiny_weights)), storage=str(storage))
    lines: list[str] = []
    summary = run_experiment(config, echo=lines.append)
    return config, storage / "small", summary, lines


def test_when_experiment_finishes_then_every_study_has_a_winner_file(finished):
    config, root, summary, _ = finished
    for family in FAMILIES:
        for symbol in config.symbols:
            doc = json.loads((root / family / f"{symbol}.json").read_text())
            assert doc["symbol"] == symbol and doc["model_type"] == family
            assert doc["seed"] == 7 and doc["trials"] == {"completed": 3, "failed": 0, "never_ran": 0, "budget": 3}
            for period in ("validation", "test"):
                assert doc[period]["windows"] == 20 and doc["baseline"][period]["windows"] == 20
    assert summary["complete"] is True
    assert summary["trials"] == {"completed": 24, "failed": 0, "never_ran": 0}


def test_when_summary_is_written_then_it_names_the_best_family_per_symbol_by_validation(finished):
    _, root, summary, _ = finished
    for entry in entries(root).values():
        scores = {f: v["validation_pct_return_mae"] for f, v in entry["families"].items()}
        assert entry["best_family"] == min(scores, key=scores.get)
        assert {*FAMILIES, "blend"} <= set(scores) <= {*FAMILIES, "blend", "regime"}


def test_when_trials_table_is_written_then_it_has_every_trial_with_metrics_and_node(finished):
    _, root, _, _ = finished
    table = pd.read_parquet(root / "trials.parquet")
    assert len(table) == 24 and (table["status"] == "completed").all()
    assert table.groupby(["symbol", "family"]).size().eq(3).all()
    for column in ("pct_return_mae", "price_mae", "latency_s", "actor_s", "wait_s", "node", "config"):
        assert table[column].notna().all(), column


def test_when_winner_is_reported_then_its_validation_score_is_the_trials_own(finished):
    _, root, _, _ = finished
    table = pd.read_parquet(root / "trials.parquet")
    for family in FAMILIES:
        doc = json.loads((root / family / "AAPL.json").read_text())
        row = table[table["trial_id"] == doc["trial_id"]].iloc[0]
        assert doc["validation"]["pct_return_mae"] == row["pct_return_mae"]
        rows = table[(table["family"] == family) & (table["symbol"] == "AAPL")]
        assert row["pct_return_mae"] == rows["pct_return_mae"].min()


def test_when_models_are_in_actors_then_loads_equal_model_actors(finished):
    _, _, summary, lines = finished
    model_actors = [a for a in summary["actors"] if a["family"] != "bootstrap_returns"]
    assert len(model_actors) == 3
    assert sum(a["model_loads"] for a in model_actors) == len(model_actors)  # 24 trials, 3 loads
    assert summary["model_loads"] == 3 and summary["actor_restarts"] == 0
    assert any("model actors ready: 4 actors, 3 model loads" in line for line in lines)


def test_when_winners_are_rescored_then_their_validation_draws_come_from_the_sample_bank(finished):
    _, _, summary, _ = finished
    # every study's winner is re-run on validation (with the test period): an exact bank hit
    assert summary["sample_banks"]["hits"] >= 8
    assert summary["sample_banks"]["bytes"] <= summary["sample_banks"]["max_bytes"]
    assert summary["batching"]["requests"] >= 6  # Toto's trials: the one family whose calls merge
    # CPU actors: samples_per_batch chosen per call from the fixed cap, nothing probed
    assert summary["samples_per_batch"]["choices"] > 0
    assert summary["samples_per_batch"]["probes"] == 0


def test_when_weights_are_tiny_then_every_output_says_so(finished):
    _, root, summary, lines = finished
    assert summary["tiny_weights"] is True
    assert json.loads((root / "toto" / "AAPL.json").read_text())["tiny_weights"] is True
    assert any("TINY RANDOM-INIT" in line for line in lines)


def test_when_a_run_finishes_then_its_phases_cover_its_wall_time_shutdown_included(finished):
    _, root, summary, lines = finished
    phases = summary["phases_s"]
    assert list(phases) == ["start", "tuning", "rescoring", "collation", "writing", "compaction", "shutdown"]
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) == pytest.approx(summary["wall_s"], abs=1e-6)
    on_disk = json.loads((root / "summary.json").read_text())  # rewritten after the shutdown
    assert on_disk["phases_s"] == phases and on_disk["wall_s"] == summary["wall_s"]
    done = next(i for i, line in enumerate(lines) if line.startswith("done in "))
    assert lines[done + 1].startswith("  time: start ") and lines[done + 1].endswith("s")


def test_when_status_is_read_then_it_reports_the_finished_experiment(finished):
    config, root, _, _ = finished
    status = experiment_status("small", str(root.parent))
    # 24 trials of the per-symbol studies and 12 of the three families' pooled studies
    assert status["progress"]["trials_done"] == 24 + 12
    assert status["summary"]["complete"] is True


def test_when_a_finished_experiment_is_run_again_then_nothing_is_redone(finished):
    config, root, summary, _ = finished
    again = run_experiment(config, echo=lambda line: None)
    assert again["trials"] == summary["trials"]
    table = pd.read_parquet(root / "trials.parquet")
    assert len(table) == 24


def test_when_an_existing_name_gets_a_different_config_then_error_says_how_to_resume(finished):
    from tuner.core.errors import ConfigError

    config, _, _, _ = finished
    with pytest.raises(ConfigError, match="already exists .* different trials; resume it with `tuner resume small --storage "):
        run_experiment(ExperimentConfig(**{**config.__dict__, "trials": 2}), echo=lambda line: None)
    with pytest.raises(ConfigError, match="with 3 trials per study; to raise it to 5 .* `tuner extend small --trials 5"):
        run_experiment(ExperimentConfig(**{**config.__dict__, "trials": 5}), echo=lambda line: None)


def test_when_warm_started_from_an_earlier_experiment_then_its_winners_are_tried_first(finished):
    config, root, _, _ = finished
    again = ExperimentConfig(name="warm", symbols=("AAPL",), families=("toto", "bootstrap_returns"),
                             trials=2, seed=8, weights=config.weights, storage=config.storage,
                             warm_start_from="small", warm_start_top_k=1)
    run_experiment(again, echo=lambda line: None)
    table = pd.read_parquet(root.parent / "warm" / "trials.parquet")
    for family in ("toto", "bootstrap_returns"):
        winner = json.loads((root / family / "AAPL.json").read_text())["config"]
        tried = [json.loads(c) for c in table[table["family"] == family]["config"]]
        searched = {k: v for k, v in winner.items() if k != "samples_per_batch"}
        assert any({k: c[k] for k in searched} == searched for c in tried), (family, searched, tried)


def test_when_toto_and_kronos_ensemble_won_then_their_blend_competes_with_a_cross_fitted_score(finished):
    _, root, _, _ = finished
    for symbol in ("AAPL", "EURUSD"):
        blend = json.loads((root / "blend" / f"{symbol}.json").read_text())
        members = [json.loads((root / f / f"{symbol}.json").read_text())["validation"]["pct_return_mae"]
                   for f in ("toto", "kronos_ensemble")]
        assert blend["config"]["members"] == ["toto", "kronos_ensemble"]
        assert sum(blend["config"]["weights"]) == pytest.approx(1.0)
        # inverse-MAE weights: the better member gets the larger weight
        assert (blend["config"]["weights"][0] > 0.5) == (members[0] < members[1])
        # scored out of fold, so no in-sample guarantee against the members; it says so
        assert blend["config"]["validation_score"].startswith("cross-fitted")
        assert blend["test"]["windows"] == 20 and blend["baseline"]["test"]["windows"] == 20


def test_when_a_regime_is_written_then_it_beats_both_members_on_validation(finished):
    _, root, summary, _ = finished
    for symbol in ("AAPL", "EURUSD"):
        file = root / "regime" / f"{symbol}.json"
        if not file.exists():  # no volatility split helped: the summary has no regime entry
            assert "regime" not in entries(root)[symbol]["families"]
            continue
        regime = json.loads(file.read_text())
        members = {k: json.loads((root / regime["config"][k] / f"{symbol}.json").read_text())
                   ["validation"]["pct_return_mae"] for k in ("fast", "conservative")}
        assert regime["validation"]["pct_return_mae"] <= members["fast"] + 1e-12
        assert regime["validation"]["pct_return_mae"] < members["conservative"]
