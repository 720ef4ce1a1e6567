"""What a trial costs with 6x the windows: per family, one validation trial at 20 and at 120 windows.

Issue 18 sizes the periods from the data (``windows: auto``: up to 250 windows a period instead
of 20). This script times one tuning trial (the family's default config on one symbol's
validation period, ``tuner.core.trial.run_trial``) at ``--base`` and ``--scale`` x ``--base``
windows, on full-size random-init weights at the published shapes (the ones
``bench/bench_full_workload.py`` uses), a synthetic 6-year daily random walk, no sample bank (a
fresh draw every trial, as a trial with new sampling parameters gets). The two arms run back to
back, alternating, ``--repeats`` times; the median of each arm and their ratio are reported,
since the machine may be shared (ratios from the same run are what compare).

Usage (CPU: reduce the paths, e.g. ``--paths 16``):
    .venv/bin/python bench/bench_windows.py --paths 16 --repeats 2 --out bench/results/<date>-windows.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import full_size_weights  # noqa: E402

from tuner.core.config import load_family_config  # noqa: E402
from tuner.core.data import load_bars  # noqa: E402
from tuner.core.families import family_class  # noqa: E402
from tuner.core.models.weights import WeightsSource  # noqa: E402
from tuner.core.trial import run_trial  # noqa: E402
from tuner.core.windows import WindowSpec, make_periods  # noqa: E402

FAMILIES = ("toto", "kronos_standard", "kronos_ensemble")


def six_year_symbol(folder: Path, bars: int = 6 * 252, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, bars)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0, 0.005, bars)) * close
    file = folder / "SIX.csv"
    pd.DataFrame({"date": pd.bdate_range("2015-01-02", periods=bars).strftime("%Y-%m-%d"), "open": open_,
                  "high": np.maximum(open_, close) + wick, "low": np.minimum(open_, close) - wick,
                  "close": close, "volume": rng.integers(10_000, 1_000_000, bars)}).to_csv(file, index=False)
    return file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--base", type=int, default=20, help="validation windows of the small arm")
    parser.add_argument("--scale", type=int, default=6, help="the large arm has base x scale windows")
    parser.add_argument("--paths", type=int, default=None,
                        help="sample paths per window instead of the default config's (CPU: keep it small)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights-cache", type=Path,
                        default=Path.home() / ".cache" / "forecast-tuner" / "bench-full-size")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    weights = WeightsSource.parse(str(full_size_weights(args.weights_cache)))
    with tempfile.TemporaryDirectory() as tmp:
        bars = load_bars(six_year_symbol(Path(tmp)))
    report = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}, "bars": len(bars),
              "base_windows": args.base, "large_windows": args.base * args.scale, "families": {}}
    for name in args.families.split(","):
        config = load_family_config(name)
        family = family_class(name)(weights=weights, device=args.device)
        family.load()
        params = dict(config.default)
        if args.paths:
            params[family.count_param] = args.paths
        arms = {w: make_periods(bars, WindowSpec(w, 20), config.context_length)
                for w in (args.base, args.base * args.scale)}
        run_trial(family, params, arms[args.base], seed=0)  # warm-up (allocations, first-call costs)
        times: dict[int, list[float]] = {w: [] for w in arms}
        cpu: dict[int, list[float]] = {w: [] for w in arms}
        for _ in range(args.repeats):
            for w, periods in arms.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run_trial(family, params, periods, seed=0)
                times[w].append(time.perf_counter() - start)
                cpu[w].append(time.process_time() - start_cpu)
        small, large = (statistics.median(times[w]) for w in arms)
        small_cpu, large_cpu = (statistics.median(cpu[w]) for w in arms)
        report["families"][name] = {"params": params, "device": str(family.device), "seconds": times,
                                    "cpu_seconds": cpu, "median_s": {"base": small, "large": large},
                                    "median_cpu_s": {"base": small_cpu, "large": large_cpu},
                                    "ratio": large / small, "cpu_ratio": large_cpu / small_cpu,
                                    "window_ratio": args.scale}
        # CPU seconds (every thread of this process) move less than wall time when the machine
        # is shared; on a GPU the wall ratio is the one that counts.
        print(f"{name:<16} {args.base} windows {small:7.2f}s   {args.base * args.scale} windows {large:7.2f}s"
              f"   ratio {large / small:4.2f}   CPU-time ratio {large_cpu / small_cpu:4.2f} (windows x{args.scale})",
              flush=True)
        family.close()
        if args.out:  # after each family: a long run that is stopped keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))
    report["machine"]["load_after"] = os.getloadavg()
    print(f"load average before {report['machine']['load_before']}, after {report['machine']['load_after']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
