"""Size of Hansen's SPA (as ``tuner.core.statistics.significance.spa_test`` runs it) at the window counts a
run uses: how often it rejects at 5 % when every config is exactly as good as the baseline.

Each simulated study: ``CONFIGS`` configs and the baseline with per-window absolute errors
``|r - f|`` where ``r`` is a common return (so configs and baseline are correlated, as real
forecasts of the same bars are) and each forecast adds its own independent noise of the same
scale: every config's expected error equals the baseline's. Output:
``bench/results/spa_size.json`` (window count → rejection rate and its binomial 95 % band);
``tuner.core.statistics.significance.SPA_MIN_WINDOWS`` is the smallest window count whose size band
contains 5 %.

    python bench/bench_spa_size.py [--sims 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from tuner.core.statistics.significance import spa_test

CONFIGS = 20
WINDOWS = (20, 40, 60, 120, 250)


def simulate(n: int, sims: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rejections = {"spa": 0, "reality_check": 0}
    for _ in range(sims):
        r = rng.standard_normal(n)
        base = np.abs(r - 0.5 * rng.standard_normal(n))
        models = np.abs(r[:, None] - 0.5 * rng.standard_normal((n, CONFIGS)))
        out = spa_test(base, models, reps=500, seed=int(rng.integers(1 << 31)), calibrated_only=False)
        rejections["spa"] += out.spa_p_value is not None and out.spa_p_value < 0.05
        rejections["reality_check"] += (out.reality_check_p_value is not None
                                        and out.reality_check_p_value < 0.05)
    res = {}
    for k, v in rejections.items():
        low, high = stats.binomtest(int(v), sims).proportion_ci(0.95)
        res[k] = {"rate": v / sims, "band95": [round(low, 4), round(high, 4)]}
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=300)
    args = parser.parse_args()
    out = {"configs": CONFIGS, "sims": args.sims, "level": 0.05, "windows": {}}
    for i, n in enumerate(WINDOWS):
        out["windows"][str(n)] = simulate(n, args.sims, seed=i)
        print(n, out["windows"][str(n)], flush=True)
    path = Path(__file__).parent / "results" / "spa_size.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
