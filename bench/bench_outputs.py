"""What a user opens after a universe run, timed at scale: `tuner status` (and ``--all``),
`tuner report` (text and ``--format html``: seconds and page size), `tuner promote --dry-run` and
`tuner export-optuna` (SQLite and a journal file), each with its peak RSS.

By default on a synthetic stored experiment written the way `tuner run` stores one (winner
files, trials.parquet with per-window errors, and the summary written by the engine's own writer:
a short summary.json with symbols.parquet and studies.parquet; no Ray), ``--symbols`` x
``--families`` studies of ``--trials`` trials; or on a real one with ``--storage``/``--name``
(e.g. what ``bench_control_plane.py --universe ... --keep DIR`` left). ``--shape legacy`` writes
the old shape instead (every symbol's and study's dict inside summary.json), to compare.

Each command runs as a user runs it (a ``tuner`` subprocess, so start-up is included), one after
another; its peak RSS is the kernel's high-water mark of that subprocess (``getrusage`` of the
children of a fresh wrapper process). Run (say the machine's load when reporting):
``.venv/bin/python bench/bench_outputs.py --symbols 1000 --trials 10``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FAMILY = {"toto": {"num_samples": [64, 128, 256, 512], "aggregate": ["median", "mean", "trimmed_mean_10"]},
          "kronos_standard": {"temperature": (0.05, 0.5), "sample_count": [64, 128, 256]},
          "kronos_ensemble": {"temperature": (0.05, 0.3), "num_samples": [5, 8, 10, 12, 15]}}


def _config(rng, family: str) -> dict:
    config = {}
    for name, space in FAMILY[family].items():
        config[name] = (round(float(rng.uniform(*space)), 4) if isinstance(space, tuple)
                        else space[int(rng.integers(len(space)))])
    return config


def _period(mae: float, base: float, latency: float, errors: list[float]) -> dict:
    return {"pct_return_mae": mae, "price_mae": mae * 100, "latency_s": latency * 20,
            "latency_per_forecast_s": latency, "windows": 20, "skill": 1 - mae / base, "errors": errors}


def _significance(rng, family: str) -> dict:
    """A winner's significance section shaped as collation writes it (its numbers made up), so
    the stored entries weigh what real ones do (~4 KB per symbol with its decision)."""
    def test() -> dict:
        edge = float(rng.uniform(0.0005, 0.002))
        return {"statistic": float(rng.normal(-2, 1)), "p_value": float(rng.random()),
                "mean_difference": float(rng.normal(-0.001, 0.001)), "ci": [-edge * 2, edge], "ci_level": 0.9,
                "windows": 20, "min_detectable_edge": edge, "min_detectable_edge_pct": edge * 1e4}

    return {"vs_baseline": {"validation": test(), "test": test()}, "vs_default": {"validation": test(), "test": test()},
            "spa_p_value": float(rng.random()), "reality_check_p_value": float(rng.random()), "pbo": float(rng.random()),
            "mcs": {"members": [family, "baseline"], "p_values": {family: 1.0, "baseline": float(rng.random())},
                    "alpha": 0.1, "windows": 20, "period": "test"},
            "reasons": {"spa_p_value": None, "pbo": None}}


def synthetic_experiment(storage: Path, name: str, symbols: int, families: list[str], trials: int,
                         seed: int = 0, shape: str = "tables") -> Path:
    """A finished experiment as `tuner run` stores it (no blend/regime candidates; significance
    sections and decisions shaped as collation writes them, numbers made up): its summary
    through the engine's writer (``shape`` ``tables``), or all in summary.json (``legacy``)."""
    from tuner.engine.collate import build_summary

    rng = np.random.default_rng(seed)
    root = storage / name
    rows, documents, counts = [], {}, {}
    meta = {"experiment": name, "seed": seed, "tiny_weights": False, "weights": {},
            "windows": {"val_windows": 20, "test_windows": 20, "horizon": 1}, "data": "synthetic",
            "created_at": "2026-12-01T00:00:00+00:00"}
    start = 1_764_000_000.0
    for i in range(symbols):
        symbol = f"S{i:04d}"
        base_val, base_test = 0.02 + 0.01 * rng.random(), 0.02 + 0.01 * rng.random()
        for family in families:
            best = None
            for k in range(trials):
                mae = base_val * (0.9 + 0.2 * rng.random())
                errors = list(np.round(rng.random(20) * 2 * mae, 6))
                trial_id = f"{i:04d}{families.index(family)}.{k}"
                rows.append({"trial_id": trial_id, "study": f"{symbol}/{family}", "number": k, "session": 1,
                             "symbol": symbol, "family": family, "status": "completed", "error": None,
                             "config": json.dumps(_config(rng, family), sort_keys=True), "pct_return_mae": mae,
                             "price_mae": mae * 100, "latency_s": 0.2, "latency_per_forecast_s": 0.01,
                             "windows": 20, "skill": 1 - mae / base_val, "baseline_pct_return_mae": base_val,
                             "seed": seed, "actor": f"{name}-{family}-0", "node": "127.0.0.1", "actor_s": 0.05,
                             "wait_s": 0.01, "trial_wall_s": 0.3, "tiny_weights": False,
                             "finished_at": start + len(rows) * 0.05, "errors": errors})
                if best is None or mae < best[0]:
                    best = (mae, rows[-1])
            mae, row = best
            test = mae * (0.9 + 0.4 * rng.random())
            documents[(symbol, family)] = {
                "symbol": symbol, "model_type": family, "config": json.loads(row["config"]),
                "validation": _period(mae, base_val, 0.01, row["errors"]),
                "test": _period(test, base_test, 0.01, list(np.round(rng.random(20) * 2 * test, 6))),
                "baseline": {"validation": _period(base_val, base_val, 0.0, []),
                             "test": _period(base_test, base_test, 0.0, [])},
                "seed": seed, "weights": f"{family}=synthetic", "tiny_weights": False,
                "trials": {"completed": trials, "failed": 0, "never_ran": 0, "budget": trials},
                "trial_id": row["trial_id"], "significance": _significance(rng, family),
                **{k: meta[k] for k in ("experiment", "windows", "data", "created_at")}}
            counts[(symbol, family)] = dict(documents[(symbol, family)]["trials"])
            (root / family).mkdir(parents=True, exist_ok=True)
            (root / family / f"{symbol}.json").write_text(json.dumps(documents[(symbol, family)]))
    summary = build_summary(documents, counts, meta)
    for entry in summary["symbols"].values():  # what the universe-level decision adds
        entry["decision"] = {
            "choice": "own", "family": entry["best_family"], "config": entry["config"],
            "reason": "own winner beats the default (p=0.0100) and the pooled config (p=0.0200); "
                      "FDR-adjusted p=0.0400 <= 0.1 (synthetic)",
            "method": "Benjamini-Yekutieli", "fdr_level": 0.1, "p_own": 0.02, "p_own_adjusted": 0.04,
            "p_vs_default": 0.01, "p_vs_pooled": 0.02, "min_detectable_edge_pct_vs_default": 8.6,
            "min_detectable_edge_pct_vs_pooled": 9.1, "period": "test", "windows": 20}
    if shape == "legacy":
        (root / "summary.json").write_text(json.dumps(summary))
    else:  # imported here: --shape legacy also runs on a checkout from before the tables
        from tuner.core.storage import Storage
        from tuner.core.summary_tables import write_summary

        write_summary(Storage(str(storage), name), summary)
    (root / "tuner-experiment.json").write_text(json.dumps({"name": name, "seed": seed}))
    pd.DataFrame(rows).to_parquet(root / "trials.parquet", index=False)
    return root


WRAPPER = ("import resource, subprocess, sys\n"
           "rc = subprocess.call(sys.argv[1:])\n"
           "sys.stderr.write(f'\\nmaxrss_kb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
           "sys.exit(rc)\n")
"""Runs one command as its only child and reports that child's peak RSS (Linux: KiB)."""


def timed(args: list[str]) -> tuple[float, str, float]:
    """Wall seconds of one `tuner` command run as a user runs it, its output, its peak RSS in MB."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "tuner.cli", *args],
                         capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"tuner {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    rss = [line for line in out.stderr.splitlines() if line.startswith("maxrss_kb ")]
    return took, out.stdout, int(rss[-1].split()[1]) / 1024 if rss else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--families", default="toto", help="Comma-separated (synthetic experiment).")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--shape", choices=("tables", "legacy"), default="tables",
                        help="The summary's shape (synthetic experiment): tables (now), legacy (before issue 22).")
    parser.add_argument("--storage", default=None, help="An existing experiments folder (with --name).")
    parser.add_argument("--name", default="outputs")
    parser.add_argument("--skip", default="sqlite,journal",
                        help="Comma-separated steps to skip: status, status-all, report, html, promote, sqlite, "
                             "journal (default: the two exports).")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(args.storage) if args.storage else Path(tmp) / "results"
        if not args.storage:
            start = time.perf_counter()
            synthetic_experiment(storage, args.name, args.symbols, args.families.split(","), args.trials,
                                 shape=args.shape)
            print(f"synthetic experiment: {args.symbols} symbols x {args.families} x {args.trials} trials, "
                  f"summary shape {args.shape}, written in {time.perf_counter() - start:.1f} s")
        root = storage / args.name
        table = pd.read_parquet(root / "trials.parquet", columns=["study"])
        sizes = {f: (root / f).stat().st_size / 1e3 for f in ("summary.json", "symbols.parquet", "studies.parquet")
                 if (root / f).exists()}
        print(f"experiment {args.name}: {table['study'].nunique()} studies, {len(table)} trials; "
              + ", ".join(f"{f} {kb:,.0f} KB" for f, kb in sizes.items())
              + f"; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
        where = ["--storage", str(storage)]
        steps = [("status", ["status", args.name, *where]),
                 ("status-all", ["status", args.name, *where, "--all"]),
                 ("report", ["report", args.name, *where]),
                 ("html", ["report", args.name, *where, "--format", "html", "--out", str(Path(tmp) / "report.html")]),
                 ("promote", ["promote", args.name, *where, "--configs", str(Path(tmp) / "configs"), "--dry-run"])]
        for step, command in steps:
            if step in skip:
                continue
            took, out, rss = timed(command)
            lines = out.splitlines()
            what = f"{len(lines)} lines, widest {max(map(len, lines), default=0)} characters"
            if step == "html":
                what = f"{(Path(tmp) / 'report.html').stat().st_size / 1e6:.1f} MB page"
            print(f"tuner {' '.join(command[:2] + command[4:]).replace(tmp, '$TMP')}: {took:.1f} s, "
                  f"peak RSS {rss:.0f} MB, {what}")
        for kind in ("sqlite", "journal"):
            if kind in skip:
                continue
            target = Path(tmp) / ("tuning.db" if kind == "sqlite" else "tuning.log")
            url = f"sqlite:///{target}" if kind == "sqlite" else str(target)
            took, _, rss = timed(["export-optuna", args.name, *where, "--storage-url", url])
            print(f"tuner export-optuna ({kind}): {took:.1f} s, peak RSS {rss:.0f} MB, "
                  f"{target.stat().st_size / 1e6:.1f} MB")
        shutil.rmtree(Path(tmp) / "configs", ignore_errors=True)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
