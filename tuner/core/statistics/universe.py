"""The universe-level decision: per symbol, its own tuned winner, the family's pooled config, or
the family's default config, with the false-discovery rate controlled across the universe.

Rule (issue 18, item 3), on the **test period** (never seen by tuning):

1. Per symbol, its own winner is compared with the family default and, when the family has a
   pooled config, with the pooled config: two one-sided HLN Diebold–Mariano tests
   (:func:`tuner.core.statistics.significance.diebold_mariano`). "Beats both" is an intersection of two
   hypotheses, tested by their larger p-value (an intersection–union test: at level α without
   any correction).
2. Those per-symbol p-values, one per symbol, are adjusted across the whole universe by
   **Benjamini–Yekutieli** (``scipy.stats.false_discovery_control(method="by")``), which controls
   the false-discovery rate under any dependence between symbols (they share market days, so
   their tests are correlated; Benjamini–Hochberg assumes positive dependence only). A symbol
   keeps its **own** winner when its adjusted p-value is at most the own level (below).
3. Otherwise it gets the family's **pooled** config when that config beats the default in the
   family's panel test (:func:`tuner.core.statistics.panel.panel_dm`, clustered by date,
   one-sided): one test per family for all its symbols, so no symbol-level luck.
4. Otherwise the **default**: nothing shows tuning helped, and doing nothing new costs nothing.

**The level is shared** so that the false-discovery rate *counted per symbol* stays at
:data:`FDR_LEVEL` whatever the pooled tests do. A wrong pooled choice is not one false
discovery but one per symbol that gets it (a whole family's symbols at once), so the pooled
tests cannot simply run at 5 % each beside a BY at 10 %: under a universe of random walks that
made "any discovery" up to 10 % + 5 % per family. Split instead: the pooled panel tests get
:data:`POOLED_ALPHA` family-wise (Bonferroni over the families tested) and BY the rest
(``FDR_LEVEL - POOLED_ALPHA``). Then, with V_o/R_o the own decisions' false/all and R all
non-default decisions, the false share per symbol is FDP <= 1{a pooled choice is wrong} +
V_o/R_o, so FDR <= POOLED_ALPHA + (FDR_LEVEL - POOLED_ALPHA) = FDR_LEVEL. Panel tests pool
every symbol's windows, so a small level costs them little power. Without any pooled test the
whole level goes to BY.

Romano–Wolf stepdown (``arch.bootstrap.StepM``) would need every symbol's errors on one common
set of dates and controls the family-wise rate (stricter than needed); BY works from the
p-values alone, so symbols with different calendars and window counts fit.

Pure numpy/scipy; no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.core.statistics.panel import PanelComparison
from tuner.core.statistics.significance import Comparison, diebold_mariano, missing

OWN, POOLED, DEFAULT = "own", "pooled", "default"
CHOICES = (OWN, POOLED, DEFAULT)
FDR_METHOD = "Benjamini-Yekutieli"
FDR_LEVEL = 0.10
"""False-discovery rate the ``own`` decisions are controlled at across the universe: of the
symbols that keep their own winner, at most 10 % in expectation are not truly better than both
the default and the pooled config. Looser than 5 % because a false ``own`` costs little (its
config is still one that won on validation) while a missed one costs its whole edge."""
POOLED_ALPHA = 0.02
"""The part of :data:`FDR_LEVEL` spent on the families' pooled-vs-default panel tests, family-wise
(each family's one-sided test runs at ``POOLED_ALPHA / families tested``); BY gets the rest."""


@dataclass(frozen=True)
class SymbolCandidates:
    """What one symbol's decision compares, all on the same test windows.

    Attributes:
        symbol: the symbol.
        own_family: the family (or derived candidate, ``blend``/``regime``) of its own winner.
        own_config: the winner's config.
        own: (n,) the winner's per-window absolute return errors on the test period.
        family: the family whose default and pooled config it is compared with (``own_family``
            for a family winner; for a derived candidate, the symbol's best family winner).
        default_config, default: the family default config and its (n,) test errors; None when
            no default was scored.
        pooled_config, pooled: the family's pooled config and its (n,) test errors on this
            symbol; None when the family has no pooled config.
    """

    symbol: str
    own_family: str
    own_config: Mapping[str, Any]
    own: Sequence[float]
    family: str
    default_config: Mapping[str, Any] | None = None
    default: Sequence[float] | None = None
    pooled_config: Mapping[str, Any] | None = None
    pooled: Sequence[float] | None = None


@dataclass(frozen=True)
class UniverseDecisions:
    """Every symbol's decision and the tallies.

    Attributes:
        decisions: symbol → ``decision`` dict (``choice``, ``family``, ``config``, ``reason``, the
            p-values raw and adjusted, mean differences, minimum detectable edges).
        tallies: ``{"own": n, "pooled": n, "default": n, "symbols": n, "method": ..., "fdr_level":
            ..., "panel_alpha": ...}`` (summary.json's ``decisions``).
    """

    decisions: dict[str, dict[str, Any]]
    tallies: dict[str, Any] = field(default_factory=dict)


def _p(c: Comparison | None) -> float:
    """A missing or undefined test counts as no evidence (p = 1)."""
    return 1.0 if c is None or c.p_value is None else float(c.p_value)


def _fmt(p: float | None) -> str:
    return "none" if p is None else f"{p:.3g}"


def adjust(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Yekutieli adjusted p-values (a symbol is a discovery at level q when its
    adjusted p <= q)."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    return false_discovery_control(p, method="by")


def levels(pooled_panels: Mapping[str, PanelComparison], fdr_level: float = FDR_LEVEL,
           pooled_alpha: float = POOLED_ALPHA) -> tuple[float, float | None]:
    """``(own_level, panel_alpha)``: the BY level of the own decisions and the one-sided level of
    each family's pooled panel test (None when no family has one), sharing ``fdr_level``."""
    tested = sum(1 for panel in pooled_panels.values() if panel is not None and panel.p_value is not None)
    if not tested:
        return fdr_level, None
    return fdr_level - pooled_alpha, pooled_alpha / tested


def decide(candidates: Sequence[SymbolCandidates], pooled_panels: Mapping[str, PanelComparison] | None = None,
           *, fdr_level: float = FDR_LEVEL, pooled_alpha: float = POOLED_ALPHA, horizon: int = 1
           ) -> UniverseDecisions:
    """Decide every symbol (see the module docstring).

    Args:
        candidates: one per symbol.
        pooled_panels: family → the panel test of its pooled config against its default on the
            test period (None or missing: the family's pooled config was not tuned, or untested).
        fdr_level: the false-discovery rate of all non-default decisions, counted per symbol;
            pooled_alpha: the part of it the pooled panel tests spend (see :func:`levels`).
        horizon: forecast horizon (HAC lag of the per-symbol tests).
    """
    if not 0 < fdr_level < 1:
        raise ValueError(f"fdr_level {fdr_level!r}: must be in (0, 1)")
    if not 0 < pooled_alpha < fdr_level:
        raise ValueError(f"pooled_alpha {pooled_alpha!r}: must be in (0, fdr_level {fdr_level!r})")
    pooled_panels = pooled_panels or {}
    own_level, panel_alpha = levels(pooled_panels, fdr_level, pooled_alpha)
    versus: dict[str, tuple[Comparison, Comparison | None]] = {}
    for c in candidates:
        own = np.asarray(c.own, dtype=np.float64)
        d = (diebold_mariano(own, c.default, horizon=horizon) if c.default is not None
             else missing("no default config scored on test"))
        p = diebold_mariano(own, c.pooled, horizon=horizon) if c.pooled is not None else None
        versus[c.symbol] = (d, p)
    joint = [max(_p(d), _p(p) if p is not None else 0.0) for d, p in versus.values()]
    adjusted = adjust(joint)
    decisions: dict[str, dict[str, Any]] = {}
    for c, raw, adj in zip(candidates, joint, adjusted, strict=True):
        d, p = versus[c.symbol]
        panel = pooled_panels.get(c.family)
        numbers = {
            "own_family": c.own_family,
            "p_vs_default": d.p_value, "p_vs_pooled": p.p_value if p else None,
            "p_own": raw, "p_own_adjusted": float(adj),
            "mean_difference_vs_default": d.mean_difference,
            "mean_difference_vs_pooled": p.mean_difference if p else None,
            "min_detectable_edge_pct_vs_default": d.min_detectable_edge_pct,
            "min_detectable_edge_pct_vs_pooled": p.min_detectable_edge_pct if p else None,
            "pooled_tuned": c.pooled is not None,
            "pooled_panel_p_vs_default": panel.p_value if panel is not None else None,
            "method": FDR_METHOD, "fdr_level": fdr_level, "own_fdr_level": own_level,
            "panel_alpha": panel_alpha,
            "symbols": len(candidates), "period": "test",
        }
        against = f"the default (p={_fmt(d.p_value)})" + (
            f" and the pooled config (p={_fmt(p.p_value)})" if p is not None else "")
        if c.default is not None and adj <= own_level:
            choice, family, config = OWN, c.own_family, dict(c.own_config)
            reason = (f"own {c.own_family} winner beats {against} on test; {FDR_METHOD}-adjusted "
                      f"p={adj:.3g} <= {own_level:g} over {len(candidates)} symbols")
        else:
            edge = d.min_detectable_edge_pct
            why = (f"own {c.own_family} winner not shown better than {against} on test after "
                   f"{FDR_METHOD} FDR control at {own_level:g} over {len(candidates)} symbols "
                   f"(adjusted p={adj:.3g}"
                   + (f"; the test could not see an edge below {edge:.1f} % of the default's error"
                      if edge is not None else "") + ")")
            if c.default is None:
                why = f"no default config scored on test for {c.family}: nothing to compare the own winner with"
            if c.pooled is not None and panel is not None and panel_alpha is not None and panel.better(panel_alpha):
                choice, family, config = POOLED, c.family, dict(c.pooled_config or {})
                reason = (f"{why}; the pooled {c.family} config beats the default across "
                          f"{panel.symbols} symbols (panel p={_fmt(panel.p_value)} < {panel_alpha:.3g})")
            else:
                choice, family = DEFAULT, c.family
                config = dict(c.default_config) if c.default_config is not None else None
                if c.pooled is None:
                    tail = f"the pooled {c.family} config was not tuned"
                elif panel is None or panel.p_value is None:
                    tail = f"the pooled {c.family} config has no panel test" + (
                        f" ({panel.reason})" if panel is not None and panel.reason else "")
                else:
                    tail = (f"the pooled {c.family} config does not beat the default in the panel "
                            f"test (p={_fmt(panel.p_value)} >= {panel_alpha:.3g})")
                reason = f"{why}; {tail}"
        chosen_errors = {OWN: c.own, POOLED: c.pooled, DEFAULT: c.default}[choice]
        numbers = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in numbers.items()}
        decisions[c.symbol] = {
            "choice": choice, "family": family, "config": config, "reason": reason, **numbers,
            "test_pct_return_mae": (float(np.mean(chosen_errors)) if chosen_errors is not None
                                    and len(chosen_errors) else None),
        }
    tallies = {choice: sum(1 for d in decisions.values() if d["choice"] == choice) for choice in CHOICES}
    tallies.update(symbols=len(decisions), method=FDR_METHOD, fdr_level=fdr_level, own_fdr_level=own_level,
                   pooled_alpha=pooled_alpha if panel_alpha is not None else None, panel_alpha=panel_alpha,
                   period="test",
                   rule=(f"FDR {fdr_level:g} over all decisions, counted per symbol: own: beats the default "
                         f"and the pooled config, {FDR_METHOD} at {own_level:g} across symbols; else "
                         f"pooled: the family's pooled config beats the default in its panel test at "
                         f"{panel_alpha:.3g} ({pooled_alpha:g} shared by the families tested); else default")
                   if panel_alpha is not None else
                   (f"own: beats the default, {FDR_METHOD} FDR at {own_level:g} across symbols; else "
                    f"default (no pooled config was tested)"))
    return UniverseDecisions(decisions, tallies)
