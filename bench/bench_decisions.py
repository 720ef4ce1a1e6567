"""The universe-level decision on synthetic universes (issue 18 item 6, full size): false
discoveries, power, and what random walks end up with.

Each universe (tests/synthetic_universe.py): null symbols (random walks: the default is truly
best, other configs equal or worse) and edge symbols (a drift of ``EDGE`` sigma that a
non-default config captures), sharing a market factor; a tiny weights-free constant-forecast
family with sampling noise; own winners chosen on validation, the pooled config on the mean
validation error, every decision on the test period. Reported per window count:

* ``false_share``: false own/pooled decisions / all own/pooled decisions (pooled over universes),
  with its 95 % binomial interval; the FDR level is 0.10.
* ``fdr``: the mean over universes of false / max(decisions, 1) (the quantity BY controls).
* ``own_false_share``: the same share among ``own`` decisions only; and
  ``false_share_pooled_counted_once``: counting a family's pooled decision once per universe
  (one panel test decides it for all its symbols, so its errors come in blocks of a universe).
* ``power``: edge symbols that kept a truly better own winner.
* ``null_decided_vs_default_pct``: random walks' decided configs' mean test error vs the
  default's (%); ``null_own_vs_default_pct``: what their own winners alone would have given.

    python bench/bench_decisions.py [--universes 100]

Output: bench/results/decisions.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.synthetic_universe import EDGE, GRID, NOISE, RHO, STREAMS, simulate  # noqa: E402
from tuner.core.statistics.universe import FDR_LEVEL, FDR_METHOD  # noqa: E402


def run(universes: int, nulls: int, edges: int, windows: int) -> dict:
    false = decided = power = own_false = own_decided = family_false = family_chosen = 0
    fdp, null_decided, null_own = [], [], []
    for seed in range(universes):
        u = simulate(np.random.default_rng(seed), nulls, edges, windows)
        false += u.false_non_default
        decided += u.non_default
        power += u.edge_own
        own_false += u.own_false
        own_decided += u.decisions.tallies["own"]
        family_false += u.pooled_family_false
        family_chosen += u.pooled_family_chosen
        fdp.append(u.false_non_default / max(u.non_default, 1))
        null_decided.append(100 * (u.null_decided.mean() / u.null_default.mean() - 1))
        diffs = [d["mean_difference_vs_default"] for i, d in enumerate(u.decisions.decisions.values())
                 if not u.edge[i]]
        null_own.append(100 * np.mean(diffs) / u.null_default.mean())
    low, high = stats.binomtest(false, decided).proportion_ci(0.95) if decided else (None, None)
    return {"nulls": nulls, "edges": edges, "windows": windows, "universes": universes,
            "decisions": decided, "false": false, "false_share": false / decided if decided else None,
            "false_share_ci95": [low, high], "fdr": float(np.mean(fdp)),
            "power": power / (universes * edges),
            "own_decisions": own_decided, "own_false": own_false,
            "own_false_share": own_false / own_decided if own_decided else None,
            # A family's pooled decision is one test applied to all its non-own symbols at once:
            # counted once per universe here (how often the pooled config was chosen, and wrongly).
            "pooled_family_chosen": family_chosen, "pooled_family_false": family_false,
            "false_share_pooled_counted_once": ((own_false + family_false) / (own_decided + family_chosen)
                                                if own_decided + family_chosen else None),
            "null_decided_vs_default_pct": float(np.mean(null_decided)),
            "null_own_vs_default_pct": float(np.mean(null_own))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--universes", type=int, default=100)
    args = parser.parse_args()
    out = {"method": FDR_METHOD, "fdr_level": FDR_LEVEL, "edge_sigma": EDGE, "rho": RHO,
           "grid": list(GRID), "streams": STREAMS, "noise": NOISE, "runs": []}
    for nulls, edges, windows in ((30, 10, 20), (30, 10, 60), (30, 10, 120), (90, 10, 120), (30, 10, 250)):
        row = run(args.universes, nulls, edges, windows)
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
    path = Path(__file__).parent / "results" / "decisions.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
