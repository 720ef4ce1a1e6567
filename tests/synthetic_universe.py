"""A synthetic universe for testing the universe-level decision (issue 18, item 6); also used by
bench/bench_decisions.py for the full simulation.

The family is tiny and weights-free: a config is a constant return forecast ``c * sigma`` (``c``
on :data:`GRID`) plus sampling noise ``NOISE * sigma * e`` from one of :data:`STREAMS` noise
streams (as a sampling forecaster's seed or sample count: configs of equal ``c`` are exactly
equally good, so a random walk has true nulls of equality, not only worse configs). The default
is ``c = 0`` on stream 0 (the no-change forecast with its own noise: "what we had"). A window's
error is ``|r - c * sigma - NOISE * sigma * e|``. Returns share a market
factor (correlation :data:`RHO` between symbols on the same day), so the symbols' tests are
dependent as real ones are.

* A **null** symbol is a random walk: ``r ~ N(0, sigma)``: the default is truly best and every
  other config is truly worse.
* An **edge** symbol has a drift ``mu = EDGE * sigma`` (sign alternating between edge symbols):
  configs with ``c`` between 0 and ``2 * EDGE`` of the drift's sign are truly better than the
  default.

Each symbol's own winner is the grid config with the lowest validation error (selection on
noise, as tuning does); the pooled config is the one with the lowest mean validation error over
all symbols. Truth is known, so each decision is scored as true or false.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuner.core.statistics.panel import panel_dm
from tuner.core.statistics.universe import (
    DEFAULT,
    OWN,
    POOLED,
    SymbolCandidates,
    UniverseDecisions,
    decide,
)

GRID = (0.0, -1.0, -0.75, -0.5, -0.25, 0.25, 0.5, 0.75, 1.0)
"""Config values ``c`` (units of sigma); GRID[0] is the default."""
STREAMS = 3
NOISE = 0.3
SIGMA = 0.01
RHO = 0.5
EDGE = 0.75
FAMILY = "constant"


def expected_error(c: float, mu: float) -> float:
    """``E|Z + mu - c|`` for standard normal ``Z`` (in sigmas): a config's true error."""
    from scipy.stats import norm

    a = mu - c
    return float(a * (2 * norm.cdf(a) - 1) + 2 * norm.pdf(a))


@dataclass(frozen=True)
class Outcome:
    """One simulated universe: its decisions and their truth."""

    decisions: UniverseDecisions
    edge: np.ndarray  # (symbols,) True where the symbol has a drift
    false_non_default: int  # own/pooled decisions whose config is not truly better than the default
    non_default: int
    edge_own: int  # edge symbols that kept a truly better own winner
    null_decided: np.ndarray  # (null symbols, test windows) the decided configs' errors
    null_default: np.ndarray
    own_false: int = 0  # false own decisions
    pooled_family_false: int = 0  # 1 when the family's pooled config was chosen and is not truly better
    pooled_family_chosen: int = 0  # 1 when any symbol got the pooled config


def simulate(rng: np.random.Generator, nulls: int = 30, edges: int = 10, windows: int = 120) -> Outcome:
    symbols = nulls + edges
    mu = np.zeros(symbols)
    mu[nulls:] = EDGE * np.where(np.arange(edges) % 2 == 0, 1.0, -1.0)
    grid = np.repeat(np.asarray(GRID), STREAMS)  # config k: c = grid[k], stream k % STREAMS

    def period() -> np.ndarray:
        market = rng.standard_normal(windows)
        own = rng.standard_normal((symbols, windows))
        r = mu[:, None] + RHO * market + np.sqrt(1 - RHO**2) * own  # in sigmas
        noise = NOISE * rng.standard_normal((symbols, windows, STREAMS))
        forecast = grid + np.tile(noise, len(GRID))
        return np.abs(r[:, :, None] - forecast) * SIGMA  # (symbols, windows, configs)

    validation, test = period(), period()
    own_pick = validation.mean(axis=1).argmin(axis=1)
    pooled_pick = int(validation.mean(axis=(0, 1)).argmin())
    dates = {f"S{i:03d}": [f"t{t:04d}" for t in range(windows)] for i in range(symbols)}
    names = list(dates)
    pooled_errors = {s: test[i, :, pooled_pick] for i, s in enumerate(names)}
    default_errors = {s: test[i, :, 0] for i, s in enumerate(names)}
    panel = panel_dm(pooled_errors, default_errors, dates) if pooled_pick != 0 else None
    candidates = [SymbolCandidates(s, FAMILY, {"c": float(grid[own_pick[i]])}, test[i, :, own_pick[i]], FAMILY,
                                   {"c": 0.0}, test[i, :, 0], {"c": float(grid[pooled_pick])},
                                   test[i, :, pooled_pick])
                  for i, s in enumerate(names)]
    out = decide(candidates, {FAMILY: panel} if panel is not None else {})
    pooled_truly_better = np.mean([expected_error(grid[pooled_pick], m) for m in mu]) < np.mean(
        [expected_error(0.0, m) for m in mu])
    false = non_default = edge_own = own_false = 0
    decided = np.empty((symbols, windows))
    for i, s in enumerate(names):
        choice = out.decisions[s]["choice"]
        if choice == OWN:
            better = expected_error(grid[own_pick[i]], mu[i]) < expected_error(0.0, mu[i])
            non_default += 1
            false += not better
            own_false += not better
            edge_own += bool(better and mu[i] != 0)
            decided[i] = test[i, :, own_pick[i]]
        elif choice == POOLED:
            non_default += 1
            false += not pooled_truly_better
            decided[i] = test[i, :, pooled_pick]
        else:
            assert choice == DEFAULT
            decided[i] = test[i, :, 0]
    chosen = int(out.tallies[POOLED] > 0)
    return Outcome(out, mu != 0, false, non_default, edge_own, decided[:nulls], test[:nulls, :, 0],
                   own_false, int(chosen and not pooled_truly_better), chosen)
