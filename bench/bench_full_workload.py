"""The predecessor's full workload on our engine: 24 symbols × 3 families × 30 trials, one machine.

The predecessor needed 6,634 s for this on one GPU (its own report; it cannot be re-run side by
side: `bench/bench_engine.py` does that comparison at a small scale). This script times our
engine on the same shape so the figure can be quoted next to it: full-size weights (random-init
at the published shapes unless ``--weights`` names real ones), the default search spaces and
windows, synthetic random-walk symbols (model cost does not depend on the prices).

On a GPU machine: ``.venv/bin/python bench/bench_full_workload.py --autocast bf16``
(target: <= 5 minutes on one H100). On a CPU: only a reduced shape is practical, e.g.
``--symbols 2 --trials 2 --val-windows 5``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import FAMILIES, full_size_weights  # noqa: E402

from tuner.core.models.weights import WeightsSource  # noqa: E402
from tuner.core.windows import WindowSpec  # noqa: E402
from tuner.engine.experiment import run_experiment  # noqa: E402
from tuner.engine.experiment_config import ExperimentConfig, FamilyResources  # noqa: E402

PREDECESSOR_WALL_S = 6634.0
"""The predecessor's wall time for 24 symbols × 3 families × 30 trials on one GPU."""

# One model-actor set = one actor per family; its GPU shares add up to 1 (Toto is the largest).
SET_SHARES = {"toto": 0.5, "kronos_standard": 0.25, "kronos_ensemble": 0.25}


def write_symbols(folder: Path, count: int, bars: int, seed: int) -> list[str]:
    """``count`` daily random-walk symbols of ``bars`` bars each, as CSV files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"SYM{i:02d}" for i in range(count)]
    for name in names:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, bars)))
        open_ = np.concatenate([[100.0], close[:-1]])
        wick = np.abs(rng.normal(0, 0.005, bars)) * close
        pd.DataFrame({
            "date": pd.bdate_range("2015-01-02", periods=bars).strftime("%Y-%m-%d"),
            "open": open_, "high": np.maximum(open_, close) + wick, "low": np.minimum(open_, close) - wick,
            "close": close, "volume": rng.integers(10_000, 1_000_000, bars),
        }).to_csv(folder / f"{name}.csv", index=False)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=24)
    parser.add_argument("--trials", type=int, default=30, help="trials per (symbol, family) study")
    parser.add_argument("--bars", type=int, default=1500, help="bars per synthetic symbol")
    parser.add_argument("--val-windows", type=int, default=WindowSpec().val_windows)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--autocast", choices=["bf16", "fp16", "none"], default="none")
    parser.add_argument("--sets-per-gpu", type=int, default=1,
                        help="model-actor sets (one actor per family) packed on each GPU")
    parser.add_argument("--concurrent-per-study", type=int, default=2)
    parser.add_argument("--weights", default=None,
                        help="checkpoint sources (folder or ids) instead of full-size random-init weights")
    parser.add_argument("--weights-cache", type=Path,
                        default=Path.home() / ".cache" / "forecast-tuner" / "bench-full-size")
    parser.add_argument("--keep", type=Path, default=None, help="keep the experiment folder here")
    args = parser.parse_args()

    weights = WeightsSource.parse(args.weights or str(full_size_weights(args.weights_cache)))
    gpus = torch.cuda.device_count()
    resources = {f: FamilyResources(num_gpus=share / args.sets_per_gpu) for f, share in SET_SHARES.items()} \
        if gpus else {}
    spec = WindowSpec(val_windows=args.val_windows, test_windows=args.val_windows)
    device_name = torch.cuda.get_device_name(0) if gpus else "CPU only"
    print(f"workload: {args.symbols} symbols × {len(FAMILIES)} families × {args.trials} trials = "
          f"{args.symbols * len(FAMILIES) * args.trials} trials; {args.val_windows} validation windows; "
          f"weights {weights.to_dict()}; {device_name}; autocast {args.autocast}; "
          f"{args.sets_per_gpu} actor set(s) per GPU", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        storage = args.keep or Path(tmp) / "results"
        data = Path(tmp) / "data"
        symbols = write_symbols(data, args.symbols, args.bars, args.seed)
        config = ExperimentConfig(
            name="full-workload", data=str(data), symbols=tuple(symbols), families=FAMILIES,
            trials=args.trials, seed=args.seed, windows=spec, weights=weights, storage=str(storage),
            resources=resources, max_concurrent_per_study=args.concurrent_per_study,
            autocast_dtype=None if args.autocast == "none" else args.autocast,
        )
        start = time.perf_counter()
        summary = run_experiment(config, echo=lambda line: print(line, flush=True), include_dashboard=False)
        wall = time.perf_counter() - start
        root = Path(storage) / "full-workload"
        table = pd.read_parquet(root / "trials.parquet")
        tuning = json.loads((root / "progress.json").read_text())["elapsed_s"]

    done = int((table["status"] == "completed").sum())
    print()
    print(f"trials completed: {done} of {args.symbols * len(FAMILIES) * args.trials}; "
          f"failed {int((table['status'] == 'failed').sum())}")
    print(f"wall: {wall:.1f} s ({wall / 60:.1f} min); tuning phase {tuning:.1f} s; "
          f"start-up + re-scoring + collation {wall - tuning:.1f} s")
    print(f"trials per hour: {done / wall * 3600:,.0f}")
    if (args.symbols, args.trials) == (24, 30):
        print(f"predecessor (reported, same shape, one GPU): {PREDECESSOR_WALL_S:,.0f} s; "
              f"ratio {PREDECESSOR_WALL_S / wall:.1f}x")
    print("model time per family (sum of actor seconds over trials):")
    for family, seconds in table.groupby("family")["actor_s"].sum().items():
        print(f"  {family:<18}{seconds:>10.1f} s")
    print(f"model loads {summary['model_loads']} by {summary['model_actors']} actors; "
          f"sample banks {summary['sample_banks']}; batching {summary['batching']}; "
          f"samples_per_batch {summary['samples_per_batch']}")


if __name__ == "__main__":
    main()
