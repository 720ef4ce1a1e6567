"""The universe-level decision and the panel test (issue 18, items 3, 4 and 6), on the synthetic
universe of tests/synthetic_universe.py: null symbols (random walks) and symbols with a drift a
non-default config truly exploits. Seeded; a few universes of 40 symbols (~1 s); the full
simulation is bench/bench_decisions.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tests.synthetic_universe import simulate
from tuner.core.statistics.panel import CLUSTER_DATE, CLUSTER_INDEX, PanelComparison, panel_dm
from tuner.core.statistics.universe import (
    DEFAULT,
    FDR_LEVEL,
    FDR_METHOD,
    OWN,
    POOLED,
    POOLED_ALPHA,
    SymbolCandidates,
    decide,
    levels,
)

UNIVERSES = 8
NULLS, EDGES = 30, 10
POWER_FLOOR = 0.45
"""Share of edge symbols that must keep a truly better own winner. Why 0.45: an edge symbol's
best config lowers the error by 0.207 sigma per window with a per-window sd of the difference of
0.711 sigma (sampling noise included), a noncentrality of 3.19 at 120 test windows;
Benjamini-Yekutieli over 40 symbols with ~6 discoveries rejects below p = 0.0033 (t > 2.74), so
a single test finds it 67 % of the time, and bench/bench_decisions.py measures ~63 % (selection
sometimes picks a neighbouring grid value, a smaller edge). 0.45 is 0.63 less the 99.9 %
binomial margin at 80 edge symbols (0.46); a rule that needs far more evidence (Bonferroni at
1 %: t > 4.0) falls well below it."""


@pytest.fixture(scope="module")
def universes():
    return [simulate(np.random.default_rng(seed), NULLS, EDGES) for seed in range(UNIVERSES)]


def test_when_a_universe_is_decided_then_false_non_default_decisions_stay_within_the_fdr_band(universes):
    false = sum(u.false_non_default for u in universes)
    decided = sum(u.non_default for u in universes)
    assert decided > 0
    high = stats.binom.ppf(0.999, decided, FDR_LEVEL) / decided
    assert false / decided <= high
    # The band can fail: keeping every own winner with a lower test error (no test, no control)
    # makes about a third of the random walks false discoveries.
    naive_false = sum(sum(1 for i, d in enumerate(u.decisions.decisions.values())
                          if not u.edge[i] and d["mean_difference_vs_default"] < 0) for u in universes)
    naive = sum(sum(1 for d in u.decisions.decisions.values() if d["mean_difference_vs_default"] < 0)
                for u in universes)
    assert naive_false / naive > stats.binom.ppf(0.999, naive, FDR_LEVEL) / naive


def test_when_a_universe_is_decided_then_its_false_discovery_proportion_averages_below_the_level(universes):
    # What the rule controls is the expected proportion per universe, counted per symbol (a wrong
    # pooled choice counts once per symbol that gets it): its mean stays under the level.
    fdp = [u.false_non_default / max(u.non_default, 1) for u in universes]
    assert np.mean(fdp) <= FDR_LEVEL


def _panel(p: float | None, symbols: int = 3) -> PanelComparison:
    return PanelComparison(-3.0 if p is not None else None, p, -0.001, -5.0, 0.0003, 2.0, symbols,
                           symbols * 60, 60, "date", None if p is not None else "undefined")


def test_when_pooled_tests_run_then_they_and_the_own_decisions_share_the_fdr_level():
    assert levels({}) == (FDR_LEVEL, None)
    assert levels({"a": _panel(None)}) == (FDR_LEVEL, None)  # an undefined test spends nothing
    assert levels({"a": _panel(0.3)}) == (pytest.approx(FDR_LEVEL - POOLED_ALPHA), POOLED_ALPHA)
    own, each = levels({"a": _panel(0.3), "b": _panel(0.01), "c": _panel(None)})
    assert own == pytest.approx(FDR_LEVEL - POOLED_ALPHA) and each == pytest.approx(POOLED_ALPHA / 2)


@pytest.mark.parametrize(("panel_p", "choice"), [(0.5 * POOLED_ALPHA, POOLED), (1.5 * POOLED_ALPHA, DEFAULT)])
def test_when_the_pooled_panel_p_is_near_its_share_of_the_level_then_that_share_decides(panel_p, choice):
    # Between POOLED_ALPHA and 0.05 a pooled config used to be chosen for every symbol of the
    # family: with the per-family 5 % beside BY at 10 %, the per-symbol FDR could reach 15 %.
    rng = np.random.default_rng(5)
    base = {s: np.abs(rng.normal(0, 0.01, 60)) for s in "ABC"}
    out = decide([candidate(s, base[s] * 1.001, base[s], base[s] * 0.99) for s in base], {"fam": _panel(panel_p)})
    assert {d["choice"] for d in out.decisions.values()} == {choice}
    assert all(d["panel_alpha"] == POOLED_ALPHA and d["own_fdr_level"] == pytest.approx(FDR_LEVEL - POOLED_ALPHA)
               for d in out.decisions.values())


def test_when_symbols_have_a_real_edge_then_most_keep_their_own_winner(universes):
    found = sum(u.edge_own for u in universes)
    assert found / (UNIVERSES * EDGES) >= POWER_FLOOR


def test_when_symbols_are_random_walks_then_their_decided_configs_are_no_worse_than_the_default(universes):
    decided = np.concatenate([u.null_decided for u in universes])
    default = np.concatenate([u.null_default for u in universes])
    assert decided.mean() <= default.mean() * 1.005
    # What the own winners alone would have done: selection on noise makes a random walk worse.
    own_only = [np.mean([d["mean_difference_vs_default"] for i, d in enumerate(u.decisions.decisions.values())
                         if not u.edge[i]]) for u in universes]
    assert np.mean(own_only) > 0


def test_when_decisions_are_made_then_each_names_its_method_numbers_and_reason(universes):
    u = universes[0]
    assert set(u.decisions.tallies) >= {OWN, POOLED, DEFAULT, "method", "fdr_level"}
    assert u.decisions.tallies[OWN] + u.decisions.tallies[POOLED] + u.decisions.tallies[DEFAULT] == NULLS + EDGES
    for d in u.decisions.decisions.values():
        assert d["method"] == FDR_METHOD and d["fdr_level"] == FDR_LEVEL
        assert d["p_own_adjusted"] >= d["p_own"] and d["reason"]
        assert d["choice"] != DEFAULT or d["config"] == {"c": 0.0}


def candidate(symbol: str, own, default, pooled=None) -> SymbolCandidates:
    return SymbolCandidates(symbol, "fam", {"c": 1}, own, "fam", {"c": 0}, default,
                            {"c": 2} if pooled is not None else None, pooled)


def test_when_no_pooled_config_was_tuned_then_the_decision_is_own_or_default_and_says_so():
    rng = np.random.default_rng(3)
    base = np.abs(rng.normal(0, 0.01, 60))
    out = decide([candidate("A", base * 0.5, base), candidate("B", base + 0.001, base)])
    assert out.decisions["A"]["choice"] == OWN and out.decisions["A"]["config"] == {"c": 1}
    assert out.decisions["B"]["choice"] == DEFAULT and out.decisions["B"]["config"] == {"c": 0}
    assert "pooled fam config was not tuned" in out.decisions["B"]["reason"]
    assert out.decisions["B"]["p_vs_pooled"] is None and out.decisions["B"]["pooled_tuned"] is False


def test_when_the_pooled_config_wins_the_panel_then_symbols_without_their_own_edge_get_it():
    rng = np.random.default_rng(4)
    base = {s: np.abs(rng.normal(0, 0.01, 60)) for s in "ABC"}
    pooled = {s: base[s] * 0.8 for s in base}
    panel = panel_dm(pooled, base)
    assert panel.better()
    out = decide([candidate(s, pooled[s] * 1.001, base[s], pooled[s]) for s in base], {"fam": panel})
    assert {d["choice"] for d in out.decisions.values()} == {POOLED}
    assert all(d["config"] == {"c": 2} and "panel p=" in d["reason"] for d in out.decisions.values())


def test_when_symbols_share_a_market_shock_then_the_date_clustered_panel_test_keeps_its_size():
    rng = np.random.default_rng(11)
    sims, symbols, windows = 300, 20, 40
    clustered = naive = 0
    for _ in range(sims):
        shock = rng.standard_normal(windows)
        d = {f"S{i}": shock + rng.standard_normal(windows) for i in range(symbols)}
        zero = {s: np.zeros(windows) for s in d}
        dates = {s: [f"t{t}" for t in range(windows)] for s in d}
        clustered += panel_dm(d, zero, dates).p_value < 0.05
        # Every observation its own cluster: the shared shock is ignored.
        naive += panel_dm(d, zero, {s: [f"{s}{t}" for t in range(windows)] for s in d}).p_value < 0.05
    low, high = stats.binom.interval(0.999, sims, 0.05)
    assert low / sims <= clustered / sims <= high / sims
    assert naive / sims > high / sims


def test_when_no_dates_are_given_then_the_panel_clusters_by_window_index_and_says_so():
    a = {"A": [1.0, 2.0, 3.0, 4.0], "B": [2.0, 2.0, 1.0, 3.0]}
    b = {"A": [2.0, 2.0, 3.0, 5.0], "B": [2.0, 3.0, 2.0, 3.0]}
    assert panel_dm(a, b).clustered_by == CLUSTER_INDEX
    assert panel_dm(a, b, {s: ["d1", "d2", "d3", "d4"] for s in a}).clustered_by == CLUSTER_DATE
    empty = panel_dm(a, {"C": [1.0]})
    assert empty.p_value is None and empty.reason.startswith("no symbol has errors")
