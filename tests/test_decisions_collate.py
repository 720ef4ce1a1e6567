"""Collation writes each symbol's universe-level decision into summary.json and its winner file,
with the tallies and the panel tests; blend/regime candidates get a significance section
(issue 18 items 3-4, issue 23 item 2). Synthetic errors through ``write_experiment``; no Ray."""

from __future__ import annotations

import json

from tests.decided_experiment import FAMILY, write
from tests.summary_shapes import entries
from tuner.core.storage import Storage


def read(root, name: str, relative: str) -> dict:
    return json.loads((root / name / relative).read_text())


def test_when_no_pooled_config_was_tuned_then_decisions_are_own_or_default_and_say_so(tmp_path):
    summary = write(str(tmp_path), "exp", with_pooled=False)
    choices = {s: e["decision"]["choice"] for s, e in entries(tmp_path / "exp").items()}
    assert choices == {"EDGE": "own", "NULL": "default", "POOL": "default"}
    assert summary["decisions"]["own"] == 1 and summary["decisions"]["default"] == 2
    assert summary["decisions"]["method"] == "Benjamini-Yekutieli" and summary["decisions"]["fdr_level"] == 0.1
    assert "no pooled config was tuned" in summary["decisions"]["note"]
    null = read(tmp_path, "exp", f"{FAMILY}/NULL.json")["decision"]
    assert null["config"] == {"lookback": 256} and "was not tuned" in null["reason"]
    assert null["min_detectable_edge_pct_vs_default"] > 0
    assert summary["panel"]["families"][FAMILY]["pooled_vs_default"] is None
    assert summary["panel"]["families"][FAMILY]["winner_vs_default"]["clustered_by"] == "date"
    json.dumps(summary, allow_nan=False)


def test_when_the_pooled_config_beats_the_default_then_symbols_without_an_edge_take_it(tmp_path):
    summary = write(str(tmp_path), "exp", with_pooled=True)
    choices = {s: e["decision"]["choice"] for s, e in entries(tmp_path / "exp").items()}
    assert choices == {"EDGE": "own", "NULL": "pooled", "POOL": "pooled"}
    pool = read(tmp_path, "exp", f"{FAMILY}/POOL.json")
    assert pool["decision"]["config"] == {"lookback": 64} and pool["pooled"]["config"] == {"lookback": 64}
    assert pool["decision"]["p_vs_pooled"] is not None and "panel p=" in pool["decision"]["reason"]
    panel = summary["panel"]["families"][FAMILY]["pooled_vs_default"]
    assert panel["p_value"] < 0.05 and panel["symbols"] == 3 and round(panel["mean_difference_pct"]) == -20
    assert summary["panel"]["decisions"]["vs_default"]["p_value"] < 0.05


def test_when_a_blend_is_the_winner_then_it_has_a_significance_section_and_the_decision(tmp_path):
    write(str(tmp_path), "exp", with_pooled=False, derived=True)
    assert entries(tmp_path / "exp")["NULL"]["best_family"] == "blend"
    blend = Storage(str(tmp_path), "exp").read_json("blend/NULL.json")
    section = blend["significance"]
    assert section["vs_default"]["test"]["p_value"] is not None
    assert section["vs_baseline"]["test"]["min_detectable_edge_pct"] is not None
    assert "runs no trials of its own" in section["reasons"]["pbo"]
    assert blend["decision"]["own_family"] == "blend" and blend["decision"]["family"] in ("blend", FAMILY)


def test_when_a_symbol_has_derived_candidates_then_each_one_compares_with_its_best_family_winner():
    from tuner.engine.universe_decisions import base_family, best_family_winners

    def doc(value: float) -> dict:
        return {"validation": {"pct_return_mae": value}}

    documents = {("A", "toto"): doc(0.02), ("A", "kronos"): doc(0.01), ("A", "blend"): doc(0.005),
                 ("B", "toto"): doc(0.03), ("B", "regime"): doc(0.001),
                 ("C", "toto"): doc(0.01), ("C", "kronos"): doc(0.01)}  # a tie: the family name decides
    assert best_family_winners(documents) == {"A": "kronos", "B": "toto", "C": "kronos"}
    assert all(best_family_winners(documents)[s] == base_family(s, "blend", documents) for s in "ABC")
