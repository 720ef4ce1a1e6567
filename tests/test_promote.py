"""Promotion to configs/best: documents, diffs, backups, refusals (tiny weights, unfinished),
symbol and improvement filters, dry runs, atomic writes, and `tuner promote`."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.summary_shapes import entries
from tests.test_report import CONFIGS, make_experiment, make_running
from tuner.cli import main
from tuner.core.errors import ConfigError, PromotionRefused
from tuner.decisions.promote import (
    PROMOTE,
    SKIP,
    apply_promotions,
    plan_promotions,
    promote_winners,
    render_document,
)

WHEN = datetime(2026, 2, 1, 9, 30, 0, tzinfo=timezone.utc)
TINY_REFUSAL = ("refusing to promote experiment 'exp': it was made with tiny random-init weights (its scores "
                "are noise, not skill); pass --force to promote it anyway")

# Scores of a second, better experiment for AAA only (toto validation 0.008 instead of 0.010)
# and worse for BBB (kronos_standard 0.030 instead of 0.020).
BETTER_AAA = {
    "AAA": {"toto": (0.0080, 0.0090, 0.010), "kronos_standard": (0.0120, 0.0125, 0.050),
            "kronos_ensemble": (0.0130, 0.0140, 0.100)},
    "BBB": {"toto": (0.0310, 0.0320, 0.012), "kronos_standard": (0.0300, 0.0310, 0.060),
            "kronos_ensemble": (0.0350, 0.0360, 0.110)},
    "CCC": {"toto": (0.0300, 0.0310, 0.011), "kronos_standard": (0.0350, 0.0330, 0.055),
            "kronos_ensemble": (0.0400, 0.0380, 0.105)},
}


def promote(storage: Path, configs: Path, name: str = "exp", **kwargs) -> list:
    return promote_winners(name, str(storage), configs, echo=lambda line: None, **kwargs)


def read(configs: Path, symbol: str) -> dict:
    return json.loads((configs / "best" / f"{symbol}.json").read_text())


def test_when_winners_are_promoted_then_each_symbol_gets_its_production_config(tmp_path):
    make_experiment(tmp_path / "results")
    done = promote(tmp_path / "results", tmp_path / "configs")
    assert [(p.symbol, p.action, p.reason, p.written, p.backup) for p in done] == [
        ("AAA", PROMOTE, "new", True, None), ("BBB", PROMOTE, "new", True, None), ("CCC", PROMOTE, "new", True, None)]
    doc = read(tmp_path / "configs", "BBB")
    assert doc["symbol"] == "BBB" and doc["family"] == "kronos_standard"
    assert doc["config"] == CONFIGS["kronos_standard"] and list(doc["config"]) == sorted(doc["config"])
    assert doc["validation"]["pct_return_mae"] == 0.02 and doc["test"]["pct_return_mae"] == 0.04
    assert doc["baseline"]["validation"]["pct_return_mae"] == 0.022 and doc["baseline"]["test"]["pct_return_mae"] == 0.03
    assert doc["flags"] == ["overfit"] and doc["experiment"] == "exp" and doc["seed"] == 3
    assert doc["weights"] == "kronos_standard=hub-id" and doc["tiny_weights"] is False
    assert doc["trial_id"] == "BBB-kronos_standard-2" and doc["experiment_created_at"] == "2026-01-31T12:00:00+00:00"
    assert doc["source"] == str(tmp_path / "results" / "exp" / "kronos_standard" / "BBB.json")
    assert datetime.fromisoformat(doc["promoted_at"]).tzinfo is not None and "forced" not in doc
    assert sorted(p.name for p in (tmp_path / "configs" / "best").iterdir()) == ["AAA.json", "BBB.json", "CCC.json"]


def test_when_a_production_config_is_replaced_then_the_old_one_is_backed_up_byte_for_byte(tmp_path):
    make_experiment(tmp_path / "results", "old")
    promote(tmp_path / "results", tmp_path / "configs", "old")
    old_bytes = (tmp_path / "configs" / "best" / "AAA.json").read_bytes()
    make_experiment(tmp_path / "results", "new", scores=BETTER_AAA)
    plan = plan_promotions("new", str(tmp_path / "results"), tmp_path / "configs", symbols=["AAA"])
    done = apply_promotions(plan, now=WHEN)
    backup = tmp_path / "configs" / "best" / ".backup" / "AAA.20260201T093000Z.json"
    assert done[0].backup == backup and backup.read_bytes() == old_bytes
    assert done[0].reason == "replaces toto from experiment old" and done[0].previous_score == 0.01
    assert read(tmp_path / "configs", "AAA")["experiment"] == "new"
    assert read(tmp_path / "configs", "AAA")["validation"]["pct_return_mae"] == 0.008


def test_when_two_backups_fall_in_the_same_second_then_both_are_kept(tmp_path):
    make_experiment(tmp_path / "results", "a")
    make_experiment(tmp_path / "results", "b", scores=BETTER_AAA)
    make_experiment(tmp_path / "results", "c", seed=9)
    configs = tmp_path / "configs"
    for name in ("a", "b", "c"):
        apply_promotions(plan_promotions(name, str(tmp_path / "results"), configs, symbols=["AAA"]), now=WHEN)
    backups = sorted(p.name for p in (configs / "best" / ".backup").iterdir())
    assert backups == ["AAA.20260201T093000Z-1.json", "AAA.20260201T093000Z.json"]
    assert json.loads((configs / "best" / ".backup" / backups[1]).read_text())["experiment"] == "a"
    assert json.loads((configs / "best" / ".backup" / backups[0]).read_text())["experiment"] == "b"


def test_when_the_plan_is_made_then_the_diff_shows_what_changes(tmp_path):
    make_experiment(tmp_path / "results", "old")
    promote(tmp_path / "results", tmp_path / "configs", "old")
    make_experiment(tmp_path / "results", "new", scores=BETTER_AAA)
    plan = plan_promotions("new", str(tmp_path / "results"), tmp_path / "configs", symbols=["AAA"])
    target = tmp_path / "configs" / "best" / "AAA.json"
    lines = plan[0].diff.splitlines()
    assert lines[:2] == [f"--- {target}", f"+++ {target} (experiment new)"]
    assert '-    "pct_return_mae": 0.01,' in lines and '+    "pct_return_mae": 0.008,' in lines
    assert '-  "experiment": "old",' in lines and '+  "experiment": "new",' in lines


def test_when_a_symbol_has_no_production_config_then_the_diff_is_against_dev_null(tmp_path):
    make_experiment(tmp_path / "results")
    plan = plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs", symbols=["CCC"])
    lines = plan[0].diff.splitlines()
    written = render_document(plan[0].document).splitlines()
    assert lines[0] == "--- /dev/null" and lines[2] == f"@@ -0,0 +1,{len(written)} @@"
    assert lines[3:] == ["+" + line for line in written] and lines[4] == '+  "symbol": "CCC",'


def test_when_dry_run_then_diffs_are_echoed_and_nothing_is_written(tmp_path):
    make_experiment(tmp_path / "results")
    echoed: list[str] = []
    done = promote_winners("exp", str(tmp_path / "results"), tmp_path / "configs", dry_run=True, echo=echoed.append,
                           verbose=True)
    assert [p.written for p in done] == [False, False, False]
    assert [line.splitlines()[0] for line in echoed] == ["--- /dev/null"] * 3
    assert not (tmp_path / "configs").exists()


def test_when_promoted_twice_then_the_second_time_is_unchanged_and_writes_nothing(tmp_path):
    make_experiment(tmp_path / "results")
    promote(tmp_path / "results", tmp_path / "configs")
    before = (tmp_path / "configs" / "best" / "AAA.json").read_bytes()
    again = promote(tmp_path / "results", tmp_path / "configs")
    assert [(p.action, p.reason, p.written) for p in again] == [(SKIP, "unchanged: AAA.json already holds this result", False),
                                                                (SKIP, "unchanged: BBB.json already holds this result", False),
                                                                (SKIP, "unchanged: CCC.json already holds this result", False)]
    assert (tmp_path / "configs" / "best" / "AAA.json").read_bytes() == before
    assert not (tmp_path / "configs" / "best" / ".backup").exists()


def test_when_a_blend_wins_then_production_gets_its_members_configs_and_weights(tmp_path):
    make_experiment(tmp_path / "results", blend=True)
    promote(tmp_path / "results", tmp_path / "configs", symbols=["AAA"])
    doc = read(tmp_path / "configs", "AAA")
    assert doc["family"] == "blend" and doc["config"]["members"] == ["toto", "kronos_ensemble"]
    assert list(doc["members"]) == ["toto", "kronos_ensemble"]
    assert doc["members"]["toto"] == {"config": CONFIGS["toto"], "weights": "toto=hub-id", "tiny_weights": False,
                                      "trial_id": "AAA-toto-2", "validation_pct_return_mae": 0.01}
    assert doc["members"]["kronos_ensemble"]["config"] == CONFIGS["kronos_ensemble"]
    assert doc["weights"] == {"toto": "toto=hub-id", "kronos_ensemble": "kronos_ensemble=hub-id"}
    assert doc["tiny_weights"] is False and doc["validation"]["pct_return_mae"] == 0.009


def test_when_a_plain_family_wins_then_there_are_no_members(tmp_path):
    make_experiment(tmp_path / "results", blend=True)
    promote(tmp_path / "results", tmp_path / "configs", symbols=["BBB"])
    assert "members" not in read(tmp_path / "configs", "BBB")


# ------------------------------------------------------------------------------------- refusals


def test_when_weights_were_tiny_then_promotion_is_refused_naming_the_flag(tmp_path):
    make_experiment(tmp_path / "results", tiny=True)
    with pytest.raises(PromotionRefused) as e:
        plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs")
    assert str(e.value) == TINY_REFUSAL
    assert not (tmp_path / "configs").exists()


def test_when_tiny_weights_are_forced_then_the_config_says_tiny_and_forced(tmp_path):
    make_experiment(tmp_path / "results", tiny=True)
    promote(tmp_path / "results", tmp_path / "configs", force=True)
    doc = read(tmp_path / "configs", "AAA")
    assert doc["tiny_weights"] is True
    assert doc["forced"] == ["it was made with tiny random-init weights (its scores are noise, not skill)"]


def test_when_the_experiment_is_incomplete_then_promotion_is_refused_unless_forced(tmp_path):
    make_experiment(tmp_path / "results", failed=3)
    with pytest.raises(PromotionRefused) as e:
        plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs")
    assert str(e.value) == ("refusing to promote experiment 'exp': it is incomplete (3 trials failed, 0 never ran; "
                            "no winner for CCC/kronos_ensemble (no completed trial)); pass --force to promote it anyway")
    done = promote(tmp_path / "results", tmp_path / "configs", force=True)
    assert [p.written for p in done] == [True, True, True]


def test_when_tiny_and_incomplete_then_both_reasons_are_given(tmp_path):
    make_experiment(tmp_path / "results", tiny=True, failed=1)
    with pytest.raises(PromotionRefused, match=r"tiny random-init weights .* and it is incomplete \(1 trials failed"):
        plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs")


def test_when_the_experiment_has_no_summary_yet_then_even_force_cannot_promote_it(tmp_path):
    make_running(tmp_path / "results")
    with pytest.raises(ConfigError) as e:
        plan_promotions("live", str(tmp_path / "results"), tmp_path / "configs", force=True)
    assert str(e.value) == (f"experiment 'live' has no summary.json yet under {tmp_path / 'results' / 'live'}: it is "
                            "still running or was interrupted, so it has no winners to promote; finish it with "
                            "`tuner resume live`")


def test_when_the_experiment_does_not_exist_then_error_names_the_storage(tmp_path):
    with pytest.raises(ConfigError, match=r"^no experiment 'nope' under .* \(no tuner-experiment.json\)$"):
        plan_promotions("nope", str(tmp_path), tmp_path / "configs")


# ------------------------------------------------------------------------------------- filters


def test_when_symbols_are_given_then_only_they_are_promoted(tmp_path):
    make_experiment(tmp_path / "results")
    done = promote(tmp_path / "results", tmp_path / "configs", symbols=["CCC", "AAA"])
    assert [p.symbol for p in done] == ["CCC", "AAA"]
    assert sorted(p.name for p in (tmp_path / "configs" / "best").iterdir()) == ["AAA.json", "CCC.json"]


def test_when_a_symbol_is_unknown_then_error_lists_the_experiments_symbols(tmp_path):
    make_experiment(tmp_path / "results")
    with pytest.raises(ConfigError) as e:
        plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs", symbols=["AAA", "TSLA"])
    assert str(e.value) == "experiment 'exp' has no winner for TSLA; it has: AAA, BBB, CCC"


def test_when_only_improvements_then_worse_symbols_are_skipped_with_the_scores(tmp_path):
    make_experiment(tmp_path / "results", "old", symbols=("AAA", "BBB"))
    promote(tmp_path / "results", tmp_path / "configs", "old")
    make_experiment(tmp_path / "results", "new", scores=BETTER_AAA)
    done = promote(tmp_path / "results", tmp_path / "configs", "new", only_improvements=True)
    assert [(p.symbol, p.action, p.written) for p in done] == [("AAA", PROMOTE, True), ("BBB", SKIP, False),
                                                               ("CCC", PROMOTE, True)]
    assert done[1].reason == ("not an improvement: validation pct_return_mae 0.03000 is not lower than production's "
                              "0.02000 (kronos_standard from experiment old)")
    assert read(tmp_path / "configs", "AAA")["experiment"] == "new"
    assert read(tmp_path / "configs", "BBB")["experiment"] == "old"
    assert read(tmp_path / "configs", "CCC")["experiment"] == "new"  # nothing in production: an improvement


def test_when_only_improvements_and_the_score_ties_then_it_is_not_an_improvement(tmp_path):
    make_experiment(tmp_path / "results", "old", symbols=("AAA",))
    promote(tmp_path / "results", tmp_path / "configs", "old")
    make_experiment(tmp_path / "results", "same", symbols=("AAA",))
    (skipped,) = promote(tmp_path / "results", tmp_path / "configs", "same", only_improvements=True)
    assert (skipped.action, skipped.written) == (SKIP, False)
    assert skipped.reason.startswith("not an improvement: validation pct_return_mae 0.01000 is not lower")


def test_when_only_improvements_and_the_production_file_is_broken_then_error_names_it(tmp_path):
    make_experiment(tmp_path / "results")
    (tmp_path / "configs" / "best").mkdir(parents=True)
    (tmp_path / "configs" / "best" / "AAA.json").write_text("{broken")
    with pytest.raises(ConfigError) as e:
        plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs", symbols=["AAA"], only_improvements=True)
    assert str(e.value) == (f"{tmp_path / 'configs' / 'best' / 'AAA.json'}: no validation.pct_return_mae to compare "
                            "with (--only-improvements); fix or remove the file")


def test_when_the_production_file_is_broken_then_a_plain_promotion_replaces_and_backs_it_up(tmp_path):
    make_experiment(tmp_path / "results")
    (tmp_path / "configs" / "best").mkdir(parents=True)
    (tmp_path / "configs" / "best" / "AAA.json").write_text("{broken")
    done = apply_promotions(plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs",
                                            symbols=["AAA"]), now=WHEN)
    assert done[0].reason == "replaces an unreadable file" and done[0].backup.read_text() == "{broken"
    assert read(tmp_path / "configs", "AAA")["family"] == "toto"


# ------------------------------------------------------------------------------------- CLI


def test_when_promote_is_refused_then_it_exits_1_with_the_reason_and_the_flag(tmp_path):
    make_experiment(tmp_path / "results", tiny=True)
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs")])
    assert result.exit_code == 1
    assert result.output == f"Error: {TINY_REFUSAL}\n"


def test_when_promote_runs_then_it_prints_diffs_then_one_line_per_symbol(tmp_path):
    make_experiment(tmp_path / "results")
    best = tmp_path / "configs" / "best"
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs"), "--symbols", "AAA,BBB", "--verbose"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "--- /dev/null" and lines[1] == f"+++ {best / 'AAA.json'} (experiment exp)"
    assert lines[-3:] == [
        f"AAA: promoted toto (validation pct_return_mae 0.01000) to {best / 'AAA.json'} [new]",
        f"BBB: promoted kronos_standard (validation pct_return_mae 0.02000) to {best / 'BBB.json'} [new]",
        "  WARNING: BBB is flagged overfit (see `tuner report exp`)",
    ]


def test_when_promote_dry_run_then_it_says_so_and_writes_nothing(tmp_path):
    make_experiment(tmp_path / "results", tiny=True)
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs"), "--dry-run", "--force",
                                       "--symbols", "AAA"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-3:] == [
        f"AAA: would promote toto (validation pct_return_mae 0.01000) to {tmp_path / 'configs' / 'best' / 'AAA.json'} [new]",
        "WARNING: these results were made with TINY RANDOM-INIT weights (allowed by --force)",
        "dry run: nothing written",
    ]
    assert not (tmp_path / "configs").exists()


def test_when_promote_dry_run_on_tiny_weights_then_it_shows_the_diff_and_warns_with_exit_0(tmp_path):
    make_experiment(tmp_path / "results", tiny=True)
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs"), "--dry-run", "--symbols", "AAA",
                                       "--verbose"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["--- /dev/null", f"+++ {tmp_path / 'configs' / 'best' / 'AAA.json'} (experiment exp)"]
    assert '+  "tiny_weights": true,' in lines
    assert lines[-3:] == [
        f"AAA: would promote toto (validation pct_return_mae 0.01000) to {tmp_path / 'configs' / 'best' / 'AAA.json'} [new]",
        "WARNING: without --dry-run this is refused: it was made with tiny random-init weights (its scores are "
        "noise, not skill); pass --force to promote it anyway",
        "dry run: nothing written",
    ]
    assert not (tmp_path / "configs").exists()


def test_when_promote_replaces_and_skips_then_it_reports_the_backup_and_the_reason(tmp_path):
    make_experiment(tmp_path / "results", "old")
    promote(tmp_path / "results", tmp_path / "configs", "old")
    make_experiment(tmp_path / "results", "new", scores=BETTER_AAA)
    result = CliRunner().invoke(main, ["promote", "new", "--storage", str(tmp_path / "results"),
                                       "--configs", str(tmp_path / "configs"), "--only-improvements",
                                       "--symbols", "AAA,BBB"])
    assert result.exit_code == 0, result.output
    best = tmp_path / "configs" / "best"
    (backup,) = (best / ".backup").iterdir()
    assert result.output.splitlines()[-2:] == [
        f"AAA: promoted toto (validation pct_return_mae 0.00800, was 0.01000) to {best / 'AAA.json'} "
        f"[replaces toto from experiment old]; backup {backup}",
        "BBB: skipped: not an improvement: validation pct_return_mae 0.03000 is not lower than production's "
        "0.02000 (kronos_standard from experiment old)",
    ]


def test_when_no_configs_option_then_tuner_configs_is_used(tmp_path, monkeypatch):
    make_experiment(tmp_path / "results")
    (tmp_path / "myconfigs" / "spaces").mkdir(parents=True)
    monkeypatch.setenv("TUNER_CONFIGS", str(tmp_path / "myconfigs"))
    result = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"), "--symbols", "AAA"])
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "myconfigs", "AAA")["family"] == "toto"


# ------------------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_experiment(tiny_weights, tmp_path_factory):
    """A tiny-weight experiment run by the engine: 2 symbols x 2 model families x 2 trials."""
    import ray

    from tuner.core.models.weights import WeightsSource
    from tuner.core.windows import WindowSpec
    from tuner.engine.experiment import run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    storage = tmp_path_factory.mktemp("results")
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="forecast-tuner")
    try:
        config = ExperimentConfig(name="real", windows=WindowSpec(), pooled=False, symbols=("AAPL", "MSFT"), families=("toto", "kronos_ensemble"),
                                  trials=2, seed=11, weights=WeightsSource.parse(str(tiny_weights)),
                                  storage=str(storage))
        summary = run_experiment(config, echo=lambda line: None)
    finally:
        ray.shutdown()
    return storage, summary


@pytest.mark.slow
def test_when_a_real_tiny_experiment_is_promoted_then_it_is_refused_and_forcing_writes_the_winners(
        real_experiment, tmp_path):
    storage, summary = real_experiment
    configs = tmp_path / "configs"
    refused = CliRunner().invoke(main, ["promote", "real", "--storage", str(storage), "--configs", str(configs)])
    assert refused.exit_code == 1 and "tiny random-init weights" in refused.output and "--force" in refused.output
    forced = CliRunner().invoke(main, ["promote", "real", "--storage", str(storage), "--configs", str(configs),
                                       "--force"])
    assert forced.exit_code == 0, forced.output
    def result_file(family: str, symbol: str) -> dict:
        return json.loads((storage / "real" / family / f"{symbol}.json").read_text())

    for symbol, entry in entries(storage / "real").items():
        doc = read(configs, symbol)
        result = result_file(entry["best_family"], symbol)
        decision = entry["decision"]  # what is promoted: the universe-level decision (issue 18)
        assert doc["decision"]["choice"] == decision["choice"] and doc["family"] == decision["family"]
        if decision["choice"] != "own":
            section = result_file(decision["family"], symbol)[decision["choice"]]
            assert doc["config"] == decision["config"] == section["config"]
            assert doc["validation"] == section["validation"] and doc["test"] == section["test"]
            continue
        assert doc["family"] == entry["best_family"] and doc["config"] == result["config"]
        assert doc["validation"] == result["validation"] and doc["test"] == result["test"]
        assert doc["seed"] == 11 and doc["tiny_weights"] is True
        if "trial_id" in result:  # a tuned family's winner
            assert doc["weights"] == result["weights"] and doc["trial_id"] == result["trial_id"]
            assert "members" not in doc
        else:  # a derived candidate (blend, regime): the families it combines come along
            assert doc["members"], doc
            for family, member in doc["members"].items():
                own = result_file(family, symbol)
                assert member["config"] == own["config"] and member["weights"] == own["weights"]
                assert member["trial_id"] == own["trial_id"] and doc["weights"][family] == own["weights"]
