"""Reports: flag rules, loading stored results (complete, incomplete, running, tiny), the terminal
table, CSV/Parquet, the self-contained HTML with its plots, and `tuner report`."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.summary_shapes import entries
from tuner.cli import main
from tuner.core.errors import ConfigError
from tuner.core.storage import Storage
from tuner.core.summary_tables import write_summary
from tuner.decisions.flags import NO_SKILL, OVERFIT, UNTESTED, flags_for
from tuner.decisions.report import family_counts_text, render_csv, render_html, render_table
from tuner.decisions.results import COMPLETE, INCOMPLETE, RUNNING, load_report
from tuner.engine.collate import build_summary

CONFIGS = {
    "toto": {"num_samples": 256, "aggregate": "median", "samples_per_batch": 128},
    "kronos_standard": {"temperature": 0.2, "top_p": 0.8, "top_k": 0, "sample_count": 128,
                        "max_context": 256, "clip": 2.0},
    "kronos_ensemble": {"temperature": 0.1, "temp_max": 0.3, "top_p": 0.85, "top_k": 16, "num_samples": 8,
                        "max_context": 192, "clip": 2.0, "aggregate": "trimmed_mean_10"},
}

# symbol -> family -> (validation, test, latency per forecast); baselines per symbol below.
# AAA: toto wins and is fine. BBB: kronos_standard wins and is overfit (test 2x validation and
# worse than the test baseline). CCC: toto wins without beating the baseline (no-skill).
SCORES = {
    "AAA": {"toto": (0.0100, 0.0110, 0.010), "kronos_standard": (0.0120, 0.0125, 0.050),
            "kronos_ensemble": (0.0130, 0.0200, 0.100)},
    "BBB": {"toto": (0.0210, 0.0220, 0.012), "kronos_standard": (0.0200, 0.0400, 0.060),
            "kronos_ensemble": (0.0250, 0.0260, 0.110)},
    "CCC": {"toto": (0.0300, 0.0310, 0.011), "kronos_standard": (0.0350, 0.0330, 0.055),
            "kronos_ensemble": (0.0400, 0.0380, 0.105)},
}
BASELINES = {"AAA": (0.0150, 0.0160), "BBB": (0.0220, 0.0300), "CCC": (0.0250, 0.0280)}


def result_document(symbol: str, family: str, name: str, tiny: bool, seed: int = 3,
                    scores: dict | None = None) -> dict:
    """A ``<family>/<SYMBOL>.json`` in the layout ``collate.winner_document`` writes."""
    val, test, latency = (scores or SCORES)[symbol][family]
    base_val, base_test = BASELINES[symbol]
    period = lambda mae, base, lat: {"pct_return_mae": mae, "price_mae": mae * 100, "latency_s": lat * 20,  # noqa: E731
                                     "latency_per_forecast_s": lat, "windows": 20, "skill": 1 - mae / base}
    return {
        "symbol": symbol, "model_type": family, "config": CONFIGS[family],
        "validation": period(val, base_val, latency), "test": period(test, base_test, latency / 2),
        "baseline": {"validation": {"pct_return_mae": base_val, "price_mae": base_val * 100, "latency_s": 0.0,
                                    "latency_per_forecast_s": 0.0, "windows": 20},
                     "test": {"pct_return_mae": base_test, "price_mae": base_test * 100, "latency_s": 0.0,
                              "latency_per_forecast_s": 0.0, "windows": 20}},
        "seed": seed, "weights": f"{family}=hub-id", "tiny_weights": tiny,
        "trials": {"completed": 3, "failed": 0, "never_ran": 0, "budget": 3},
        "trial_id": f"{symbol}-{family}-2", "experiment": name,
        "windows": {"val_windows": 20, "test_windows": 20, "horizon": 1}, "data": "data/",
        "created_at": "2026-01-31T12:00:00+00:00",
        "stability": {"pct_return_mae_validation_and_folds": [val, val * 1.1], "spread": val * 0.1},
    }


def blend_document(symbol: str, name: str, val: float, test: float) -> dict:
    """A derived ``blend/<SYMBOL>.json`` (no trials, weights id or tiny flag of its own)."""
    base_val, base_test = BASELINES[symbol]
    period = lambda mae, base: {"pct_return_mae": mae, "price_mae": mae * 100, "latency_s": 1.2,  # noqa: E731
                                "latency_per_forecast_s": 0.06, "windows": 20, "skill": 1 - mae / base}
    return {"symbol": symbol, "model_type": "blend",
            "config": {"members": ["toto", "kronos_ensemble"], "weights": [0.6, 0.4],
                       "rule": "inverse validation pct_return_mae"},
            "validation": period(val, base_val), "test": period(test, base_test),
            "baseline": {"validation": {"pct_return_mae": base_val}, "test": {"pct_return_mae": base_test}},
            "seed": 3, "experiment": name, "created_at": "2026-01-31T12:00:00+00:00"}


def make_experiment(storage: Path, name: str = "exp", *, tiny: bool = False, failed: int = 0,
                    symbols: tuple[str, ...] = ("AAA", "BBB", "CCC"), scores: dict | None = None,
                    seed: int = 3, blend: bool = False) -> Path:
    """Write a finished experiment as `tuner run` would: result files, summary (built by
    ``collate.build_summary``), trials.parquet and the stored config. ``failed`` trials of
    CCC/kronos_ensemble failed (its study then has no winner). ``blend`` adds a blend candidate
    for AAA that beats its family winners (validation 0.009, test 0.0095)."""
    root = storage / name
    documents, counts, rows = {}, {}, []
    for symbol in symbols:
        for family in CONFIGS:
            key = (symbol, family)
            lost = failed if key == ("CCC", "kronos_ensemble") else 0
            counts[key] = {"completed": 3 - lost, "failed": lost, "never_ran": 0, "budget": 3}
            val = (scores or SCORES)[symbol][family][0]
            for i, mae in enumerate((val * 1.3, val * 1.1, val)):
                ok = i >= lost
                rows.append({"trial_id": f"{symbol}-{family}-{i}", "symbol": symbol, "family": family,
                             "status": "completed" if ok else "failed", "error": None if ok else "boom",
                             "config": json.dumps(CONFIGS[family]), "pct_return_mae": mae if ok else None,
                             "baseline_pct_return_mae": BASELINES[symbol][0]})
            if lost == 0:
                documents[key] = result_document(symbol, family, name, tiny, seed, scores)
                (root / family).mkdir(parents=True, exist_ok=True)
                (root / family / f"{symbol}.json").write_text(json.dumps(documents[key]))
    if blend:
        documents[("AAA", "blend")] = blend_document("AAA", name, 0.009, 0.0095)
        (root / "blend").mkdir(parents=True, exist_ok=True)
        (root / "blend" / "AAA.json").write_text(json.dumps(documents[("AAA", "blend")]))
    meta = {"experiment": name, "seed": seed, "tiny_weights": tiny, "weights": {"toto": "hub-id"},
            "windows": {"val_windows": 20, "test_windows": 20, "horizon": 1}, "data": "data/",
            "created_at": "2026-01-31T12:00:00+00:00"}
    write_summary(Storage(str(storage), name), build_summary(documents, counts, meta))
    (root / "tuner-experiment.json").write_text(json.dumps({"name": name, "seed": seed}))
    pd.DataFrame(rows).to_parquet(root / "trials.parquet", index=False)
    return root


def make_running(storage: Path, name: str = "live", tiny_folder: Path | None = None) -> Path:
    """An experiment that has started but not collated: config and progress only."""
    root = storage / name
    root.mkdir(parents=True)
    weights = {"toto": str(tiny_folder)} if tiny_folder else {"toto": "Datadog/Toto-Open-Base-1.0"}
    (root / "tuner-experiment.json").write_text(json.dumps({"name": name, "seed": 1, "weights": weights}))
    (root / "progress.json").write_text(json.dumps({
        "experiment": name, "trials_done": 3, "trials_total": 8, "eta": "10 s",
        "studies": {"AAA/toto": {"done": 2, "failed": 0, "running": 1, "total": 4, "best_pct_return_mae": 0.02},
                    "AAA/kronos_standard": {"done": 1, "failed": 1, "running": 0, "total": 4,
                                            "best_pct_return_mae": 0.015}}}))
    return root


def table_lines(text: str, title: str) -> list[str]:
    """The lines of one table of the terminal report: its header row up to the blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start)
    return lines[start:end]


# ------------------------------------------------------------------------------------- flag rules


@pytest.mark.parametrize(("scores", "expected"), [
    ((0.010, 0.011, 0.015, 0.016), ()),
    ((0.020, 0.019, 0.020, 0.030), (NO_SKILL,)),          # equal to the baseline does not beat it
    ((0.030, 0.031, 0.025, 0.040), (NO_SKILL,)),
    ((0.010, 0.016, 0.015, 0.015), (OVERFIT,)),           # 1.6x and no better than the test baseline
    ((0.010, 0.016, 0.015, 0.020), ()),                   # 1.6x but still beats the test baseline
    ((0.010, 0.015, 0.015, 0.010), ()),                   # exactly 1.5x is not "more than"
    ((0.010, 0.0151, 0.015, 0.010), (OVERFIT,)),
    ((0.030, 0.050, 0.020, 0.040), (NO_SKILL, OVERFIT)),
    ((0.010, None, 0.015, None), (UNTESTED,)),
])
def test_when_scores_are_flagged_then_the_stated_rule_applies(scores, expected):
    assert flags_for(*scores) == expected


def test_when_the_overfit_ratio_is_changed_then_the_threshold_moves():
    assert flags_for(0.010, 0.012, 0.015, 0.012, ratio=1.1) == (OVERFIT,)
    assert flags_for(0.010, 0.012, 0.015, 0.012) == ()


# ------------------------------------------------------------------------------------- loading


def test_when_an_experiment_is_complete_then_winners_scores_and_flags_come_from_its_files(tmp_path):
    make_experiment(tmp_path)
    report = load_report("exp", str(tmp_path))
    assert report.state == COMPLETE and report.tiny_weights is False and report.labels == ()
    assert len(report.rows) == 9
    assert [(w.symbol, w.family, w.flags) for w in report.winners] == [
        ("AAA", "toto", ()), ("BBB", "kronos_standard", (OVERFIT,)), ("CCC", "toto", (NO_SKILL,))]
    bbb = report.winners[1]
    assert bbb.validation_pct_return_mae == 0.02 and bbb.test_pct_return_mae == 0.04
    assert bbb.validation_price_mae == pytest.approx(2.0) and bbb.test_price_mae == pytest.approx(4.0)
    assert bbb.baseline_validation_pct_return_mae == 0.022 and bbb.baseline_test_pct_return_mae == 0.03
    assert bbb.validation_latency_per_forecast_s == 0.06 and bbb.test_latency_per_forecast_s == 0.03
    assert bbb.validation_skill == pytest.approx(1 - 0.02 / 0.022)
    assert dict(bbb.config) == CONFIGS["kronos_standard"] and bbb.trial_id == "BBB-kronos_standard-2"
    assert (bbb.trials_completed, bbb.trials_failed, bbb.trials_budget) == (3, 0, 3)
    assert len(report.trials) == 27


def test_when_a_non_winning_family_is_overfit_then_its_row_is_flagged_but_not_the_winner(tmp_path):
    make_experiment(tmp_path)
    rows = {(r.symbol, r.family): r for r in load_report("exp", str(tmp_path)).rows}
    # AAA/kronos_ensemble: test 0.020 > 1.5 x 0.013 and >= the test baseline 0.016.
    assert rows[("AAA", "kronos_ensemble")].flags == (OVERFIT,) and not rows[("AAA", "kronos_ensemble")].winner
    assert rows[("AAA", "toto")].flags == () and rows[("AAA", "toto")].winner


def test_when_a_blend_candidate_wins_then_it_is_a_row_without_trials_after_the_families(tmp_path):
    make_experiment(tmp_path, blend=True)
    report = load_report("exp", str(tmp_path))
    aaa = [r for r in report.rows if r.symbol == "AAA"]
    assert [r.family for r in aaa] == ["toto", "kronos_standard", "kronos_ensemble", "blend"]
    blend = aaa[-1]
    assert blend.winner and blend.validation_pct_return_mae == 0.009 and blend.trials_completed is None
    assert blend.stability_spread is None and blend.flags == ()
    assert dict(blend.config)["members"] == ["toto", "kronos_ensemble"]
    text = render_table(report)
    assert table_lines(text, "winners (chosen by validation pct_return_mae)")[1].split()[:2] == ["AAA", "blend"]
    page = render_html(report)
    assert "blend" not in explorer_data(page)["AAA"]["studies"]  # no trials, so no optimisation history
    assert '["AAA","toto"]' in page  # the symbol index: opens the best family that has a study


def test_when_trials_failed_then_the_report_is_incomplete_and_says_why(tmp_path):
    make_experiment(tmp_path, failed=3)
    report = load_report("exp", str(tmp_path))
    assert report.state == INCOMPLETE
    assert report.labels == ("WARNING: INCOMPLETE EXPERIMENT: 3 trials failed, 0 never ran; "
                             "studies without a winner: CCC/kronos_ensemble (no completed trial)",)
    assert ("CCC", "kronos_ensemble") not in {(r.symbol, r.family) for r in report.rows}


def test_when_weights_were_tiny_then_the_report_is_labelled(tmp_path):
    make_experiment(tmp_path, tiny=True)
    report = load_report("exp", str(tmp_path))
    assert report.tiny_weights is True
    assert report.labels == ("WARNING: TINY RANDOM-INIT WEIGHTS: these scores are noise, not a model's "
                             "skill; do not promote them",)


def test_when_the_experiment_is_still_running_then_progress_gives_provisional_rows(tmp_path):
    make_running(tmp_path)
    report = load_report("live", str(tmp_path))
    assert report.state == RUNNING and report.trials is None and report.tiny_weights is None
    assert [(r.family, r.validation_pct_return_mae, r.winner, r.trials_completed, r.trials_never_ran)
            for r in report.rows] == [("toto", 0.02, False, 2, 2), ("kronos_standard", 0.015, True, 1, 2)]
    assert any(line.startswith("WARNING: NOT FINISHED: no summary.json yet") for line in report.labels)


def test_when_a_running_experiment_uses_tiny_checkpoints_then_it_is_labelled_tiny(tmp_path):
    folder = tmp_path / "tiny" / "toto"
    folder.mkdir(parents=True)
    (folder / "TINY_RANDOM_WEIGHTS").write_text("tiny")
    make_running(tmp_path / "results", tiny_folder=folder)
    report = load_report("live", str(tmp_path / "results"))
    assert report.tiny_weights is True and report.labels[0].startswith("WARNING: TINY RANDOM-INIT WEIGHTS")


def test_when_the_experiment_does_not_exist_then_error_names_it_and_the_storage(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_report("nope", str(tmp_path))
    assert str(e.value) == (f"no experiment 'nope' under {tmp_path} (no tuner-experiment.json or summary.json); "
                            "`tuner run --name nope` creates it")


def test_when_summary_is_not_json_then_error_names_the_file(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'bad' / 'summary.json'}: not valid JSON")):
        load_report("bad", str(tmp_path))


# ------------------------------------------------------------------------------------- outputs


def test_when_rendered_as_a_table_then_winner_lines_carry_the_scores_and_flags(tmp_path):
    make_experiment(tmp_path)
    text = render_table(load_report("exp", str(tmp_path)))
    assert text.splitlines()[0] == ("experiment exp: complete; trials 27 completed, 0 failed, 0 never ran; "
                                    "seed 3; created 2026-01-31T12:00:00+00:00")
    winners = table_lines(text, "winners (chosen by validation pct_return_mae)")
    assert winners[0].split() == ["symbol", "family", "val_mae", "test_mae", "base_val", "base_test", "val_skill",
                                  "test_skill", "val_price", "test_price", "s/forecast", "spread", "flags"]
    assert winners[1].split() == ["AAA", "toto", "0.01000", "0.01100", "0.01500", "0.01600", "+0.333", "+0.312",
                                  "1", "1.1", "0.0100", "0.00100", "ok"]
    assert winners[2].split()[:4] == ["BBB", "kronos_standard", "0.02000", "0.04000"]
    assert winners[2].split()[-1] == "overfit" and winners[3].split()[-1] == "no-skill"
    configs = table_lines(text, "winning configs")
    assert configs[1].split(None, 2) == ["AAA", "toto", json.dumps(CONFIGS["toto"], sort_keys=True)]
    families = table_lines(text, "every family (9 studies; * = winner)")
    assert len(families) == 10 and families[1].split()[:3] == ["AAA", "toto", "*"]
    assert "  overfit   test pct_return_mae > 1.5 x validation pct_return_mae and >= the naive baseline's" in text


def test_when_rendered_as_a_table_then_numeric_columns_are_right_aligned(tmp_path):
    make_experiment(tmp_path)
    winners = table_lines(render_table(load_report("exp", str(tmp_path))), "winners (chosen by validation pct_return_mae)")
    for column in ("val_mae", "base_test", "s/forecast"):
        end = winners[0].index(column) + len(column)
        assert {line[end - 1] for line in winners[1:]} <= set("0123456789"), column
        assert {line[end] for line in winners[1:]} == {" "}, column


def test_when_rendered_as_csv_then_every_study_is_a_row_with_the_labels(tmp_path):
    make_experiment(tmp_path, tiny=True)
    frame = pd.read_csv(io.StringIO(render_csv(load_report("exp", str(tmp_path)))))
    assert len(frame) == 9
    assert frame["tiny_weights"].all() and (frame["state"] == "complete").all() and (frame["experiment"] == "exp").all()
    bbb = frame[(frame["symbol"] == "BBB") & frame["winner"]].iloc[0]
    assert bbb["family"] == "kronos_standard" and bbb["flags"] == "overfit"
    assert bbb["test_pct_return_mae"] == 0.04 and json.loads(bbb["config"]) == CONFIGS["kronos_standard"]


def explorer_data(page: str) -> dict[str, dict]:
    """The HTML report's embedded per-symbol data (its figures are drawn from it in the
    browser), unpacked as the page's script does."""
    import base64
    import zlib

    packs = json.loads(re.search(r'<script type="application/json" id="study-data">(.*?)</script>', page,
                                 re.S).group(1))
    return {symbol: json.loads(zlib.decompress(base64.b64decode(packed))) for symbol, packed in packs.items()}


def test_when_rendered_as_html_then_it_is_self_contained_with_plotly_embedded_once(tmp_path):
    from plotly.offline import get_plotlyjs

    make_experiment(tmp_path, tiny=True)
    page = render_html(load_report("exp", str(tmp_path)))
    assert "<title>forecast-tuner report: exp [TINY WEIGHTS]</title>" in page
    assert '<div class="banner tiny">WARNING: TINY RANDOM-INIT WEIGHTS' in page
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1
    rest = page.replace(bundle, "")
    assert re.findall(r"<(?:script|link|img|iframe)[^>]*(?:src|href)=", rest) == []  # nothing fetched
    assert re.findall(r"https?://", rest) == []
    index = json.loads(re.search(r'<script type="application/json" id="symbol-index">(.*?)</script>', page,
                                 re.S).group(1))
    assert index == [["AAA", "toto"], ["BBB", "kronos_standard"], ["CCC", "toto"]]
    assert "<select id='symbol-select'" not in page and "<input id='symbol-search' type='search'" in page


def test_when_rendered_as_html_then_each_study_has_optunas_figures_of_its_trials(tmp_path):
    make_experiment(tmp_path)
    page = render_html(load_report("exp", str(tmp_path)))
    data = explorer_data(page)
    assert sorted(data) == ["AAA", "BBB", "CCC"]
    for symbol, packed in data.items():
        assert list(packed["studies"]) == list(CONFIGS)  # family order
        assert packed["symbol"]["families"][0] == ("toto ★" if symbol != "BBB" else "toto")
        assert packed["symbol"]["validation"] == [SCORES[symbol][f][0] for f in CONFIGS]
        assert packed["symbol"]["baseline"]["validation"] == BASELINES[symbol][0]
        for family, study in packed["studies"].items():
            val = SCORES[symbol][family][0]
            assert study["name"] == f"{symbol}/{family}" and study["params"] == sorted(study["params"])
            assert [t[1] for t in study["trials"]] == pytest.approx([val * 1.3, val * 1.1, val])
            assert all(len(t) == 2 + len(study["params"]) for t in study["trials"])


def test_when_the_experiment_is_still_running_then_the_html_says_no_trials_are_recorded_yet(tmp_path):
    make_running(tmp_path)
    page = render_html(load_report("live", str(tmp_path)))
    assert "<p>no trials recorded yet (trials.parquet is written when the run finishes)</p>" in page
    assert {s: d["studies"] for s, d in explorer_data(page).items()} == {"AAA": {}}


def test_when_a_study_had_failed_trials_then_its_history_shows_only_the_completed_ones(tmp_path):
    make_experiment(tmp_path, failed=1)
    data = explorer_data(render_html(load_report("exp", str(tmp_path))))
    assert [t[0] for t in data["CCC"]["studies"]["kronos_ensemble"]["trials"]] == [1, 2]  # trial 0 failed


def test_when_scatter_plots_are_made_then_points_are_coloured_by_family_and_named_by_symbol(tmp_path):
    from tuner.decisions.plots import latency_error_figure, validation_test_figure

    make_experiment(tmp_path)
    report = load_report("exp", str(tmp_path))
    fig = validation_test_figure(report)
    points = {t.name: t for t in fig.data if t.customdata is not None}
    assert sorted(points) == ["kronos_standard", "toto"]  # the winners' families
    assert list(points["toto"].text) == ["AAA", "CCC"] and list(points["toto"].y) == [0.011, 0.031]
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    latency = latency_error_figure(report)
    assert sorted(t.name for t in latency.data) == sorted(CONFIGS)
    assert sum(len(t.x) for t in latency.data) == 9


def test_when_importances_are_computed_then_each_family_ranks_its_searched_parameters(tmp_path):
    from tests.test_studies import records
    from tuner.decisions.plots import importance_figure
    from tuner.decisions.studies import rebuild_studies
    from tuner.engine.collate import trials_table

    root = make_experiment(tmp_path)
    trials_table(records()).to_parquet(root / "trials.parquet", index=False)
    studies = rebuild_studies(load_report("exp", str(tmp_path)))
    fig, note = importance_figure("toto", studies)
    assert sorted(fig.data[0].y) == ["aggregate", "num_samples"]
    assert note.startswith("toto: 8 completed trials of 3 symbols")
    fig, note = importance_figure("kronos_standard", studies)
    assert "top_p" not in fig.data[0].y and "temperature" in fig.data[0].y
    assert note.endswith("Left out, searched only in some trials: top_p (in 6 of 9 trials).")


def test_when_the_experiment_is_incomplete_then_every_format_says_so(tmp_path):
    make_experiment(tmp_path, failed=1)
    report = load_report("exp", str(tmp_path))
    assert "WARNING: INCOMPLETE EXPERIMENT: 1 trials failed" in render_table(report)
    assert "[INCOMPLETE]" in render_html(report)
    assert set(pd.read_csv(io.StringIO(render_csv(report)))["state"]) == {"incomplete"}


# ------------------------------------------------------------------------------------- CLI


def test_when_report_is_run_then_it_prints_the_table(tmp_path):
    make_experiment(tmp_path)
    result = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["experiment exp: complete; trials 27 completed, 0 failed, 0 never ran; seed 3; "
                         "created 2026-01-31T12:00:00+00:00", f"results: {tmp_path / 'exp'}"]
    assert "winners (chosen by validation pct_return_mae)" in lines


def test_when_report_csv_has_no_out_then_csv_goes_to_stdout_and_labels_to_stderr(tmp_path):
    make_experiment(tmp_path, tiny=True)
    result = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0
    assert len(pd.read_csv(io.StringIO(result.stdout))) == 9
    assert result.stderr.startswith("WARNING: TINY RANDOM-INIT WEIGHTS")


def test_when_report_csv_has_a_row_without_trials_then_counts_print_as_integers(tmp_path):
    import csv

    make_experiment(tmp_path, blend=True)
    result = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {(r["symbol"], r["family"]): r for r in csv.DictReader(io.StringIO(result.stdout))}
    counts = ("trials_completed", "trials_failed", "trials_never_ran", "trials_budget")
    assert [rows[("AAA", "toto")][c] for c in counts] == ["3", "0", "0", "3"]
    assert [rows[("AAA", "blend")][c] for c in counts] == ["", "", "", ""]


def test_when_report_parquet_has_no_out_then_it_goes_into_the_experiment_folder(tmp_path):
    make_experiment(tmp_path)
    result = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path), "--format", "parquet"])
    assert result.exit_code == 0, result.output
    target = tmp_path / "exp" / "report.parquet"
    assert result.output == f"wrote parquet report: {target}\n"
    frame = pd.read_parquet(target)
    assert len(frame) == 9 and frame["winner"].sum() == 3 and not frame["tiny_weights"].any()


def test_when_report_html_has_out_then_the_page_is_written_there(tmp_path):
    make_experiment(tmp_path, tiny=True)
    out = tmp_path / "pages" / "exp.html"
    out.parent.mkdir()
    result = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path), "--format", "html",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"wrote html report: {out}",
                                          "WARNING: TINY RANDOM-INIT WEIGHTS: these scores are noise, not a "
                                          "model's skill; do not promote them"]
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["exp.html"]  # atomic: no temporary left


def test_when_report_names_a_missing_experiment_then_it_exits_1_with_the_reason(tmp_path):
    result = CliRunner().invoke(main, ["report", "nope", "--storage", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == (f"Error: no experiment 'nope' under {tmp_path} (no tuner-experiment.json or "
                             "summary.json); `tuner run --name nope` creates it\n")


def test_when_report_format_is_unknown_then_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["report", "exp", "--format", "pdf"])
    assert result.exit_code == 2 and "'pdf' is not one of 'table', 'csv', 'parquet', 'html'" in result.output


# ------------------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_experiment(tiny_weights, tmp_path_factory):
    """A tiny-weight experiment run by the engine: 2 symbols x 3 model families x 3 trials."""
    import ray

    from tuner.core.models.weights import WeightsSource
    from tuner.core.windows import WindowSpec
    from tuner.engine.experiment import run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    storage = tmp_path_factory.mktemp("results")
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="forecast-tuner")
    try:
        config = ExperimentConfig(name="real", windows=WindowSpec(), pooled=False, symbols=("AAPL", "EURUSD"),
                                  families=("toto", "kronos_standard", "kronos_ensemble"), trials=3, seed=5,
                                  weights=WeightsSource.parse(str(tiny_weights)), storage=str(storage))
        summary = run_experiment(config, echo=lambda line: None)
    finally:
        ray.shutdown()
    return storage, summary


@pytest.mark.slow
def test_when_a_real_tiny_experiment_is_reported_then_it_matches_the_summary_and_is_labelled(real_experiment):
    storage, summary = real_experiment
    report = load_report("real", str(storage))
    assert report.state == COMPLETE and report.tiny_weights is True
    symbols = entries(storage / "real")
    assert {w.symbol: w.family for w in report.winners} == {s: e["best_family"] for s, e in symbols.items()}
    for w in report.winners:
        entry = symbols[w.symbol]
        assert w.validation_pct_return_mae == entry["validation_pct_return_mae"]
        assert w.test_pct_return_mae == entry["test_pct_return_mae"]
        assert (NO_SKILL in w.flags) == (not entry["beats_baseline"])
        assert w.validation_price_mae > 0 and w.validation_latency_per_forecast_s > 0
    text = render_table(report)
    assert text.splitlines()[2].startswith("WARNING: TINY RANDOM-INIT WEIGHTS")
    studies = sum(len(e["families"]) for e in symbols.values())  # families and derived candidates
    assert len(report.rows) == studies and len(table_lines(text, f"every family ({family_counts_text(report.rows)}; * = winner)")) == 1 + studies
    data = explorer_data(render_html(report))
    # one history per tuned study (2 symbols x 3 families), each with its 3 trials
    assert {s: list(d["studies"]) for s, d in data.items()} == {
        s: ["toto", "kronos_standard", "kronos_ensemble"] for s in ("AAPL", "EURUSD")}
    for d in data.values():
        for study in d["studies"].values():
            assert len(study["trials"]) == 3
    result = CliRunner().invoke(main, ["report", "real", "--storage", str(storage), "--format", "csv"])
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert result.exit_code == 0 and len(frame) == studies and frame["tiny_weights"].all()
    assert not frame["validation_pct_return_mae"].map(math.isnan).any()


def drawn(figure: str, data: dict) -> dict:
    """What the page's figure function ``figure`` draws from ``data``, run by node."""
    import shutil
    import subprocess

    from tuner.decisions.plots import _FIGURES_JS

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the page's figure functions cannot be run here")
    script = _FIGURES_JS + f"process.stdout.write(JSON.stringify(TunerFigures[{json.dumps(figure)}]({json.dumps(data)})));"
    return json.loads(subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout)


def test_when_a_study_is_chosen_then_the_page_draws_optunas_figures_from_its_trials(tmp_path):
    make_experiment(tmp_path, failed=1)
    data = explorer_data(render_html(load_report("exp", str(tmp_path))))
    study = data["CCC"]["studies"]["kronos_ensemble"]
    history = {t["name"]: t for t in drawn("history", study)["data"]}
    val = SCORES["CCC"]["kronos_ensemble"][0]
    assert history["pct_return_mae"]["x"] == [1, 2] and history["pct_return_mae"]["y"] == pytest.approx([val * 1.1, val])
    assert history["Best Value"]["y"] == pytest.approx([val * 1.1, val])  # the best so far, falling
    assert drawn("history", study)["layout"]["title"]["text"] == "CCC/kronos_ensemble: optimisation history"
    slices = drawn("slice", study)
    assert [t["name"] for t in slices["data"]] == study["params"]
    assert [t["xaxis"] for t in slices["data"]][:2] == ["x", "x2"] and slices["layout"]["xaxis2"]["title"]["text"] == study["params"][1]
    parallel = drawn("parallel", study)["data"][0]
    assert [d["label"].split(" ")[0] for d in parallel["dimensions"]] == ["pct_return_mae", *study["params"]]
    aggregate = next(d for d in parallel["dimensions"] if d["label"] == "aggregate")
    assert aggregate["ticktext"] == ["trimmed_mean_10"] and aggregate["values"] == [0, 0]  # a category
    bars = drawn("symbol", data["AAA"]["symbol"])
    assert [t["name"] for t in bars["data"]] == ["validation pct_return_mae", "test pct_return_mae"]
    assert [s["y0"] for s in bars["layout"]["shapes"]] == list(BASELINES["AAA"])


def test_when_the_page_is_written_then_its_explorer_script_is_valid_javascript(tmp_path):
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    make_experiment(tmp_path)
    page = render_html(load_report("exp", str(tmp_path)))
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[-1]
    assert "TunerFigures" in script and "DecompressionStream" in script
    (tmp_path / "explorer.js").write_text(script)
    checked = subprocess.run([node, "--check", str(tmp_path / "explorer.js")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


PAGE_STUB = """
const drawn = {};
const elements = {};
function element(id) {
  if (!elements[id]) {
    elements[id] = {id: id, value: '', textContent: '', innerHTML: '', options: [], children: [],
                    listeners: {}, addEventListener(kind, fn) { this.listeners[kind] = fn; },
                    add(option) { this.options.push(option); if (option.selected) { this.value = option.value; } },
                    appendChild(child) { this.children.push(child); }, append() {}};
  }
  return elements[id];
}
const document = {getElementById: id => element(id) && (JSON_DATA[id] !== undefined
                    ? Object.assign(element(id), {textContent: JSON_DATA[id]}) : element(id)),
                  createElement: () => ({addEventListener() {}})};
class Option { constructor(text, value, d, selected) { Object.assign(this, {text, value, selected}); } }
const Plotly = {purge() {}, newPlot(el, data, layout) { drawn[el.id] = {data, layout}; }};
"""


def test_when_the_page_opens_then_its_explorer_draws_the_first_symbols_figures(tmp_path):
    """The page's own script, run by node against a stub page: it unpacks the first symbol and
    draws its families and its best study's three figures."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    make_experiment(tmp_path)
    page = render_html(load_report("exp", str(tmp_path)))
    data = {i: t for i, t in re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.S)}
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[-1]
    run = (f"const JSON_DATA = {json.dumps(data)};" + PAGE_STUB + script
           + "setTimeout(() => process.stdout.write(JSON.stringify(drawn)), 500);")
    out = subprocess.run([node, "-e", run], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert sorted(shown) == ["study-history", "study-parallel", "study-slice", "symbol-figure"]
    assert shown["study-history"]["layout"]["title"]["text"] == "AAA/toto: optimisation history"
    assert shown["symbol-figure"]["data"][0]["y"] == [SCORES["AAA"][f][0] for f in CONFIGS]


def test_when_a_family_has_more_trials_than_the_importances_hold_then_a_seeded_sample_says_so(tmp_path, monkeypatch):
    from tests.test_studies import records
    from tuner.decisions import plots
    from tuner.decisions.studies import rebuild_studies
    from tuner.engine.collate import trials_table

    root = make_experiment(tmp_path)
    trials_table(records()).to_parquet(root / "trials.parquet", index=False)
    studies = rebuild_studies(load_report("exp", str(tmp_path)))
    monkeypatch.setattr(plots, "IMPORTANCE_TRIALS", 5)
    pooled, _, total = plots.pooled_family_study("toto", studies, limit=5)
    assert total == 8 and len(pooled.trials) == 5
    again, _, _ = plots.pooled_family_study("toto", studies, limit=5)
    assert [t.params for t in again.trials] == [t.params for t in pooled.trials]  # seeded
    fig, note = plots.importance_figure("toto", {k: v for k, v in studies.items()})
    assert note.startswith("toto: 8 completed trials (a seeded random 5 of them) of 3 symbols") and fig is not None
