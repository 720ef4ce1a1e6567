"""``promote`` promotes the universe-level decisions (issue 18 item 3) and ``--only-significant``
writes nothing whose decision is ``default``; without decisions it takes the best significant
candidate, blend and regime included (issue 23 item 2)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.decided_experiment import FAMILY, write
from tests.summary_shapes import to_legacy
from tuner.cli import main
from tuner.decisions.promote import PROMOTE, SKIP, plan_promotions


def plan(tmp_path, **kwargs):
    return {p.symbol: p for p in plan_promotions("exp", str(tmp_path / "results"), tmp_path / "configs", **kwargs)}


def test_when_decisions_say_pooled_then_the_pooled_config_is_promoted_with_its_scores(tmp_path):
    write(str(tmp_path / "results"), "exp", with_pooled=True)
    promotions = plan(tmp_path, only_significant=True)
    assert {s: p.action for s, p in promotions.items()} == {"EDGE": PROMOTE, "NULL": PROMOTE, "POOL": PROMOTE}
    pool = promotions["POOL"].document
    assert pool["config"] == {"lookback": 64} and pool["family"] == FAMILY
    assert pool["decision"]["choice"] == "pooled"
    winner = json.loads((tmp_path / "results" / "exp" / FAMILY / "POOL.json").read_text())
    assert pool["test"] == winner["pooled"]["test"] and pool["test"] != winner["test"]
    assert promotions["EDGE"].document["config"] == {"lookback": 104}  # its own winner


def test_when_a_decision_is_default_then_only_significant_writes_nothing_for_it(tmp_path):
    write(str(tmp_path / "results"), "exp", with_pooled=False)
    out = CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                    "--configs", str(tmp_path / "configs"), "--only-significant"])
    assert out.exit_code == 0, out.output
    assert "NULL: skipped: decision: default (" in out.output and "was not tuned" in out.output
    assert sorted(p.name for p in (tmp_path / "configs" / "best").iterdir()) == ["EDGE.json"]
    everything = plan(tmp_path)
    assert everything["NULL"].action == PROMOTE and everything["NULL"].document["config"] == {"lookback": 256}
    assert everything["NULL"].document["decision"]["choice"] == "default"


def test_when_the_best_candidate_is_not_significant_then_only_significant_takes_the_best_significant_one(tmp_path):
    """No decisions (an experiment collated before them): NULL's winner is a blend whose test
    p-values are not significant, its family winner's are: the family winner is promoted."""
    root = tmp_path / "results" / "exp"
    write(str(tmp_path / "results"), "exp", with_pooled=False, derived=True)
    to_legacy(root, edit=lambda entries: [entry.pop("decision") for entry in entries.values()])

    def set_p(relative: str, p: float) -> None:
        doc = json.loads((root / relative).read_text())
        for versus in ("vs_default", "vs_baseline"):
            doc["significance"][versus]["test"]["p_value"] = p
        (root / relative).write_text(json.dumps(doc))

    set_p("blend/NULL.json", 0.5)
    set_p(f"{FAMILY}/NULL.json", 0.001)
    promotions = plan(tmp_path, only_significant=True)
    assert promotions["NULL"].action == PROMOTE and promotions["NULL"].family == FAMILY
    set_p("blend/NULL.json", 0.001)
    assert plan(tmp_path, only_significant=True)["NULL"].family == "blend"
    set_p("blend/NULL.json", 0.5)
    set_p(f"{FAMILY}/NULL.json", 0.5)
    held = plan(tmp_path, only_significant=True)["NULL"]
    assert held.action == SKIP and held.reason.startswith("not significant on the test period")
