"""Collation alone: in the driver (serial) vs Ray tasks, and where the tasks' documents go.

Synthetic inputs (no model, no tuning): ``--symbols`` symbols x ``--families`` families, each
study with ``--trials`` trials of ``--windows`` per-window validation errors, its winner and
default re-scored on a test period of as many windows, a pooled config. Each arm runs
``collate.write_experiment`` on them in its own process (its own local Ray, ``--cpus`` CPUs),
one after another:

* ``serial``: every document built and written in the driver (``SerialCollator``: the code
  before issue 22's collation tasks);
* ``tasks``: built, decided and written by Ray tasks (``TaskCollator``, the engine's),
  ``symbols.parquet`` included: the driver holds object references and the universe-level
  summary.

Per arm: wall seconds of ``write_experiment``, the driver's RSS before it and its peak during it
(the kernel's high-water mark, reset first), and a digest of every file written (``created_at``
blanked): the arms must agree. Say the machine's load when reporting.

``.venv/bin/python bench/bench_collation.py --symbols 1000 --windows 120``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = ("serial", "tasks")


def inputs(symbols: int, families: int, trials: int, windows: int, seed: int = 0) -> dict:
    import numpy as np

    from tuner.core.metrics import Scores
    from tuner.core.pooled import PooledOutcome
    from tuner.core.trial import PeriodResult, TrialResult
    from tuner.engine.collate import COMPLETED, TrialRecord

    def scores(errors) -> Scores:
        return Scores(float(errors.mean()), float(errors.mean() * 100), 0.001, 0.0001, len(errors),
                      tuple(float(e) for e in errors))

    def result(symbol, family, config, errors, base) -> TrialResult:
        def period(p):
            return PeriodResult(scores(errors[p]), scores(base[p]), 1 - errors[p].mean() / base[p].mean())

        return TrialResult(symbol, family, config, 0, period("validation"), period("test"), None, False)

    rng = np.random.default_rng(seed)
    names = [f"F{j}" for j in range(families)]
    records, finals, defaults, pooled_results = [], {}, {}, {n: {} for n in names}
    for i in range(symbols):
        symbol = f"S{i:05d}"
        base = {p: np.abs(rng.normal(0, 0.01, windows)) for p in ("validation", "test")}
        default = {p: base[p] * 0.99 for p in base}
        for family in names:
            own = {p: default[p] * rng.uniform(0.8, 1.1) * np.exp(rng.normal(0, 0.05, windows)) for p in base}
            finals[(symbol, family)] = result(symbol, family, {"lookback": 100}, own, base)
            defaults[(symbol, family)] = result(symbol, family, {"lookback": 256}, default, base)
            pooled_results[family][symbol] = result(symbol, family, {"lookback": 64}, {p: default[p] * 0.98 for p in base}, base)
            for t in range(trials):
                errors = own["validation"] if t == trials - 1 else own["validation"] * (1.02 + 0.01 * t)
                records.append(TrialRecord(f"{symbol}-{family}-{t}", symbol, family, COMPLETED,
                                           {"lookback": 100 if t == trials - 1 else 20 + t},
                                           {"pct_return_mae": float(errors.mean()), "errors": list(map(float, errors))},
                                           number=t, session=1))
    return {"records": records, "finals": finals, "studies": list(finals), "budget": trials,
            "meta": {"experiment": "bench", "seed": 0, "windows": {"horizon": 1}, "tiny_weights": False},
            "defaults": defaults,
            "pooled": {f: PooledOutcome(f, {"lookback": 64}, 0.01, trials, pooled_results[f]) for f in names}}


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.json")):
        h.update(str(p.relative_to(root)).encode())
        h.update(re.sub(rb'"created_at": "[^"]*"', b"", p.read_bytes()))
    return h.hexdigest()[:12]


class Measured:
    """A collator, measured: its seconds, and the driver's RSS once it returns (every document
    written and decided, before the summary tables are written)."""

    def __init__(self, inner) -> None:
        self.inner, self.measured = inner, {}

    def collate(self, *args):
        start = time.perf_counter()
        collated = self.inner.collate(*args)
        self.measured["collate_s"] = round(time.perf_counter() - start, 2)
        self.measured["driver_rss_collated_mb"] = round(rss_mb())
        return collated

    def write_summary(self, *args):
        return self.inner.write_summary(*args)


def arm(kind: str, symbols: int, families: int, trials: int, windows: int, cpus: int) -> dict:
    import logging

    import ray

    from tuner.core.storage import Storage
    from tuner.engine.collate import SerialCollator, write_experiment
    from tuner.engine.collate_tasks import TaskCollator

    logging.getLogger("ray").setLevel(logging.WARNING)
    args = inputs(symbols, families, trials, windows)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    inner = SerialCollator() if kind == "serial" else TaskCollator()
    collator = Measured(inner)
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up, two symbols in the driver: what every arm's driver has imported (pandas,
        # pyarrow, scipy, the tests) is in the RSS before, as in a run's driver.
        write_experiment(Storage(tmp, "warm-up"), **inputs(2, families, trials, windows))
        before = rss_mb()
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (Linux)
        start = time.perf_counter()
        write_experiment(Storage(tmp, "bench"), **args, collator=collator)
        wall = time.perf_counter() - start
        peak = rss_mb("VmHWM")
        anon, shared = rss_mb("RssAnon"), rss_mb("RssShmem")  # heap vs mapped shared memory (object store)
        out = {"arm": kind, "wall_s": round(wall, 2), "driver_rss_before_mb": round(before),
               "driver_peak_during_mb": round(peak), "driver_growth_mb": round(peak - before),
               "driver_anon_after_mb": round(anon), "driver_shmem_after_mb": round(shared),
               "files": sum(1 for _ in Path(tmp).rglob("*.json")), "digest": digest(Path(tmp) / "bench"),
               **collator.measured, "collation": getattr(inner, "stats", None)}
    ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--families", type=int, default=1)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--windows", type=int, default=120, help="per period (validation and test)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        print(json.dumps(arm(a.child, a.symbols, a.families, a.trials, a.windows, a.cpus)))
        return
    print(f"collation of {a.symbols} symbols x {a.families} families, {a.trials} trials, {a.windows} windows "
          f"per period, on {a.cpus} CPUs; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    rows = []
    for kind in a.arms.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--symbols", str(a.symbols),
                              "--families", str(a.families), "--trials", str(a.trials), "--windows", str(a.windows),
                              "--cpus", str(a.cpus)], capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise SystemExit(f"arm {kind} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        row = json.loads(lines[-1])
        row["load_after"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(f"{kind:>13}: {row['wall_s']:7.1f} s; driver RSS {row['driver_rss_before_mb']} MB before, peak "
              f"{row['driver_peak_during_mb']} MB during (+{row['driver_growth_mb']} MB; after: heap "
              f"{row['driver_anon_after_mb']} MB, shared {row['driver_shmem_after_mb']} MB); "
              f"collate {row['collate_s']} s, RSS after it {row['driver_rss_collated_mb']} MB; {row['files']} files, "
              f"digest {row['digest']}; load {row['load_after']}"
              + (f"; tasks {row['collation']['tasks']} x {row['collation']['symbols_per_task']} symbols"
                 if row["collation"] else ""), flush=True)
    if len({r["digest"] for r in rows}) != 1:
        raise SystemExit("the arms wrote different files")
    print("every arm wrote the same files (created_at aside)")
    if a.json:
        Path(a.json).write_text(json.dumps({"symbols": a.symbols, "families": a.families, "trials": a.trials,
                                            "windows": a.windows, "cpus": a.cpus, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
