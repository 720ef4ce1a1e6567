"""The control plane's cost per Optuna trial: ours next to bare Ray Tune, and how it scales.

Model work is taken out: our arm tunes the weights-free ``bootstrap_returns`` family (~1 ms per
trial) over synthetic symbols, the bare arm a no-op function. What remains is bookkeeping:
suggesting, scheduling, reporting, saving state. Every arm runs in its own process with its own
local Ray, one after another (never side by side), and prints one JSON line the parent reads.

1. Side by side, the same number of Optuna trials (1,000, then 10,000):
   (a) bare Ray Tune + ``OptunaSearch`` (seeded TPE, one study) in a ``ConcurrencyLimiter``,
       a no-op function trainable, ``reuse_actors=True``: what a user writes without us;
   (b) ``tuner run`` (``run_experiment``): studies × trials of ``bootstrap_returns``.
   Prints Optuna trials/s of both and ``throughput ratio (ours/bare): X``. Both walls are end to
   end: Ray start, tuning, and for ours the collation (winners and defaults re-scored on the test
   period, significance tests, result files, summary, trials.parquet). Also the tuning phase
   alone (Tune's ``Tuner.fit`` against our Tune runs).
2. A scaling table of our engine at several sizes: per-trial wall, driver peak RSS, bytes and
   seconds per state save (our journal's flushes, and the largest Tune experiment-state file,
   which is bounded by the packs of one Tune run), files written per Optuna trial, and
   ``per-trial cost growth (largest/smallest): Y``.

3. ``--universe 1000x10``: the universe run, proven: ``tuner run`` over that many studies as a
   user runs it (a subprocess), SIGKILLed once it is ``--kill-at`` done, then ``tuner resume``;
   checks every study has its winner file and prints both walls, what the kill cost, and the
   projection to 500 symbols x 3 families x 30 trials (45,000 trials). Also, per session
   (sampled every 0.5 s from outside): the driver's peak RSS (the kernel's high-water mark) and
   the largest Ray worker's (actor's) RSS; the finishing session's phases (``phases_s``, whole
   process); files and bytes the experiment holds at the end. ``--kill-at 0``: no kill, one
   session. ``--keep DIR``: keep the experiment there (e.g. for ``bench/bench_outputs.py``).

Run (takes ~20 min on 2 cores; say the machine's load when reporting):
``.venv/bin/python bench/bench_control_plane.py``
Smaller: ``--bare-trials 200 --ratio-size 20x10 --sizes 10x20,100x10,500x10``.
Each ratio pair (a, b) runs back to back; the scaling table after them.
Universe: ``.venv/bin/python bench/bench_control_plane.py --universe 1000x10``.

4. ``--post-tuning 1000x10``: our arm at one size, collation on the cluster
   (``tuner/engine/collate_tasks.py``); the phases (``phases_s``) and the post-tuning share of the wall (re-scoring, collation, writing,
   compaction, shutdown). ``--json FILE`` keeps the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_bars(folder: Path, symbols: int, bars: int = 330, seed: int = 0) -> None:
    """Random-walk daily bars, one CSV per symbol (S0000.csv, ...)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=bars)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01 + 0.01 * rng.random(), bars)))
        spread = close * 0.005
        pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "open": close, "high": close + spread,
                      "low": close - spread, "close": close, "volume": 1000}).to_csv(
            folder / f"S{i:04d}.csv", index=False)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def files_under(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


def largest(root: Path, pattern: str) -> int:
    return max((p.stat().st_size for p in root.rglob(pattern)), default=0)


# ------------------------------------------------------------------------------------- arms


def arm_bare(trials: int, concurrency: int, seed: int) -> dict:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def noop(config):
        tune.report({"loss": (config["x"] - 0.3) ** 2 + config["y"] * 0.0})

    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
        search = OptunaSearch(metric="loss", mode="min", sampler=optuna.samplers.TPESampler(seed=seed))
        tuner = tune.Tuner(
            noop,
            param_space={"x": tune.uniform(0, 1), "y": tune.choice([64, 128, 256])},
            tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(search, max_concurrent=concurrency),
                                        num_samples=trials, reuse_actors=True),
            run_config=tune.RunConfig(name="bare", storage_path=storage, verbose=0),
        )
        fit_start = time.perf_counter()
        grid = tuner.fit()
        fit_s = time.perf_counter() - fit_start
        done = sum(r.error is None for r in grid)
        ray.shutdown()
        wall = time.perf_counter() - start
        root = Path(storage) / "bare"
        return {"arm": "bare", "trials": done, "wall_s": wall, "tuning_s": fit_s,
                "peak_rss_mb": peak_rss_mb(), "files": files_under(root),
                "tune_state_bytes": largest(root, "experiment_state-*.json")}


def arm_ours(studies: int, trials: int, data: str, seed: int) -> dict:
    import logging

    from tuner.engine.experiment import run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    logging.getLogger("ray").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        summary = run_experiment(ExperimentConfig(
            name="plane", data=data, symbols=tuple(f"S{i:04d}" for i in range(studies)),
            families=("bootstrap_returns",), trials=trials, seed=seed, storage=storage), echo=lambda line: None, include_dashboard=False)
        wall = time.perf_counter() - start
        root = Path(storage) / "plane"
        journal = summary["journal"]
        return {"arm": "ours", "studies": studies, "trials": summary["trials"]["completed"],
                "failed": summary["trials"]["failed"], "wall_s": wall, "tuning_s": summary["tuning"]["seconds"],
                "pack_size": summary["tuning"]["pack_size"], "suggest_s": summary["tuning"]["searcher_suggest_s"],
                "tell_s": summary["tuning"]["searcher_tell_s"],
                "peak_rss_mb": peak_rss_mb(), "files": files_under(root),
                "files_written": files_under(root) + journal["flushes"] - 1,  # chunks compacted into 1
                "journal_flushes": journal["flushes"], "journal_bytes_per_flush": journal["bytes_per_flush"],
                "journal_s_per_flush": journal["seconds_per_flush"],
                "tune_state_bytes": largest(root, "experiment_state-*.json"),
                "tune_runs": len(list((root / "_tune").iterdir())),
                "phases_s": summary["phases_s"], "summary_wall_s": summary["wall_s"],
                "collation": summary.get("collation"), "load_at_end": os.getloadavg()[0]}


POST_TUNING = ("rescoring", "collation", "writing", "compaction", "shutdown")
"""The phases after tuning (issue 22: at most 15 % of the wall time at 1,000 studies x 10 trials)."""


def post_tuning(size: str, seed: int, out: str | None) -> None:
    """Our arm at one size: its phases and the post-tuning share of its wall. (It also ran the
    collation of before issue 22, in the driver, beside it: that path needs the re-scored
    results in the driver, which now stay in the run's result store; bench/bench_collation.py
    still compares the two collations on synthetic inputs.)"""
    studies, trials = parse_size(size)
    print(f"post-tuning phases, {studies} studies x {trials} trials; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start ({_uptime()})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bars"
        synthetic_bars(data, studies)
        r = run_arm(["ours", str(studies), str(trials), str(data)])
    r["uptime_after"] = _uptime()
    phases = r["phases_s"]
    share = sum(phases.get(k, 0.0) for k in POST_TUNING) / r["summary_wall_s"]
    r["post_tuning_share"] = share
    rows = [r]
    print(f"wall {r['summary_wall_s']:.1f} s, {r['trials'] / r['summary_wall_s']:.1f} trials/s; "
          f"post-tuning {100 * share:.1f} % of the wall; phases " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
          + f"; driver peak RSS {r['peak_rss_mb']:.0f} MB; collation {r['collation']}; {r['uptime_after']}", flush=True)
    if out:
        Path(out).write_text(json.dumps({"size": size, "rows": rows}, indent=2, default=str) + "\n")


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()[0]:.2f}"


# ------------------------------------------------------------------------------------- universe


class MemorySampler:
    """Peak RSS of a driver process (its kernel high-water mark) and of every process below it
    (Ray's workers, whose names are ``ray::<actor class>``), sampled on each :meth:`sample`."""

    def __init__(self, pid: int) -> None:
        import importlib

        importlib.import_module("ray")  # Ray ships psutil: on the path once Ray is imported
        import psutil

        self.driver = psutil.Process(pid)
        self.driver_peak = 0
        self.workers: dict[int, tuple[str, int]] = {}  # pid -> (name, peak RSS)

    def sample(self) -> None:
        import psutil  # see __init__

        try:
            self.driver_peak = max(self.driver_peak, _high_water_mark(self.driver.pid) or self.driver.memory_info().rss)
            children = self.driver.children(recursive=True)
        except psutil.Error:
            return  # the driver is gone
        for child in children:
            try:
                name, rss = child.name(), child.memory_info().rss
            except psutil.Error:
                continue
            _, peak = self.workers.get(child.pid, (name, 0))
            self.workers[child.pid] = (name, max(peak, rss))

    def largest_actor(self) -> tuple[str, int]:
        """The Ray worker (actor or task process) with the largest RSS seen, and that RSS."""
        ray_workers = [(name, rss) for name, rss in self.workers.values() if name.startswith("ray::")]
        return max(ray_workers, key=lambda w: w[1], default=("none", 0))


def _high_water_mark(pid: int) -> int | None:
    """``VmHWM`` (bytes) from /proc on Linux: the process's peak RSS, not just the current one."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def watched(command: list[str], log: Path, stop_when=None) -> tuple[subprocess.Popen, MemorySampler, float]:
    """Run ``command`` in its own session (output to ``log``), sampling its memory every 0.5 s
    until it exits or ``stop_when()`` is true (then it is left running). Returns it, the
    samples, the seconds."""
    start = time.perf_counter()
    with open(log, "w") as out:  # a file, not a pipe: nobody reads a pipe while it runs
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    memory = MemorySampler(process.pid)
    while process.poll() is None and not (stop_when and stop_when()):
        memory.sample()
        time.sleep(0.5)
    return process, memory, time.perf_counter() - start


def universe(studies: int, trials: int, kill_at: float, seed: int, keep: str | None = None) -> None:
    """``tuner run`` over ``studies`` studies, SIGKILLed mid-run, then ``tuner resume``."""
    import shutil

    cli = [sys.executable, "-m", "tuner.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data, storage = Path(tmp) / "bars", Path(tmp) / "results"
        synthetic_bars(data, studies)
        root = storage / "universe"
        symbols = ",".join(f"S{i:04d}" for i in range(studies))
        run = [*cli, "run", "--name", "universe", "--storage", str(storage), "--data", str(data),
               "--symbols", symbols, "--families", "bootstrap_returns", "--trials", str(trials),
               "--seed", str(seed), "--no-dashboard"]
        total = studies * trials
        print(f"universe: {studies} studies x {trials} trials = {total} trials; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
        sessions = []
        if 0 < kill_at < 1:
            done = 0

            def far_enough() -> bool:
                nonlocal done
                try:
                    done = json.loads((root / "progress.json").read_text())["trials_done"]
                except (OSError, ValueError, KeyError):
                    pass
                return done >= kill_at * total

            driver, memory, first_s = watched(run, Path(tmp) / "first.log", far_enough)
            if driver.poll() is not None:
                raise SystemExit(f"the run ended (exit {driver.returncode}) before {kill_at:.0%} was done")
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
            driver.wait()
            sessions.append(("first run (SIGKILLed)", first_s, memory))
            saved = sum(1 for chunk in (root / "journal").glob("*.jsonl") for _ in chunk.read_text().splitlines())
            print(f"  first run SIGKILLed at {done} trials progress ({saved} in the journal) after {first_s:.0f} s")
            print(f"  trials lost to the kill: {max(0, done - saved)} (progress ahead of the journal); "
                  f"redone: 0 (the journal's are kept)")
            final = [*cli, "resume", "universe", "--storage", str(storage), "--no-dashboard"]
        else:
            final = run
        process, memory, last_s = watched(final, Path(tmp) / "last.log")
        if process.wait() != 0:
            raise SystemExit(f"{final[3]} failed:\n{(Path(tmp) / 'last.log').read_text()[-3000:]}")
        sessions.append(("resume" if sessions else "run", last_s, memory))
        summary = json.loads((root / "summary.json").read_text())
        winners = len(list((root / "bootstrap_returns").glob("*.json")))
        wall = sum(s for _, s, _ in sessions)
        per_trial = wall / total
        print(f"  {sessions[-1][0]}: {last_s:.0f} s; trials {summary['trials']}; complete {summary['complete']}; "
              f"winner files {winners}/{studies}; session {summary['session']}")
        print(f"  its phases (wall_s {summary['wall_s']:.1f} s, process start to Ray's shutdown): "
              + ", ".join(f"{k} {v:.1f}" for k, v in summary["phases_s"].items()))
        tuning = summary.get("tuning") or {}
        print("  its tuning: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in tuning.items()))
        for label, _, mem in sessions:
            name, rss = mem.largest_actor()
            print(f"  {label}: driver peak RSS {mem.driver_peak / 1e6:.0f} MB; largest Ray worker {name} "
                  f"{rss / 1e6:.0f} MB")
        files = [p for p in root.rglob("*") if p.is_file()]
        tune = [p for p in files if "_tune" in p.relative_to(root).parts]
        print(f"  written: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB in the "
              f"experiment ({len(tune)} files, {sum(p.stat().st_size for p in tune) / 1e6:.1f} MB of them Tune's "
              f"_tune/); journal: {summary['journal']['flushes']} saves in the last session, compacted into 1")
        print(f"  wall, all sessions, Ray start-up and collation included: {wall:.0f} s = {total / wall:.1f} trials/s, "
              f"{1000 * per_trial:.1f} ms per trial (load average {os.getloadavg()[0]:.2f} at the end)")
        print(f"  projection to 45,000 trials at that rate: {45_000 * per_trial / 60:.0f} min")
        if keep:
            shutil.copytree(root, Path(keep) / "universe", dirs_exist_ok=True)
            print(f"  kept: {Path(keep) / 'universe'}")
        if winners != studies or not summary["complete"]:
            raise SystemExit("the universe run did not complete with every winner written")


# ------------------------------------------------------------------------------------- parent


def run_arm(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"arm {args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


def parse_size(text: str) -> tuple[int, int]:
    studies, trials = text.lower().split("x")
    return int(studies), int(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bare-trials", default="1000,10000",
                        help="Trials of the bare Tune arm, one per --ratio-size.")
    parser.add_argument("--bare-concurrency", type=int, default=4,
                        help="ConcurrencyLimiter of the bare arm (ours runs 2 per study, 4 packs).")
    parser.add_argument("--ratio-size", default="100x10,1000x10",
                        help="Our arm next to bare Tune: studies x trials (same totals as --bare-trials).")
    parser.add_argument("--sizes", default="10x20,100x10,500x20", help="Scaling table: studies x trials, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--universe", default=None, help="Only the universe run: studies x trials.")
    parser.add_argument("--kill-at", type=float, default=0.5,
                        help="Universe run: SIGKILL at this share done (0: no kill, one session).")
    parser.add_argument("--keep", default=None, help="Universe run: copy the experiment to DIR/universe.")
    parser.add_argument("--post-tuning", default=None,
                        help="Only our arm at this size (studies x trials): its phases.")
    parser.add_argument("--json", default=None, help="--post-tuning: also write the rows to this JSON file.")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        kind, *rest = args.child
        result = (arm_bare(int(rest[0]), int(rest[1]), args.seed) if kind == "bare"
                  else arm_ours(int(rest[0]), int(rest[1]), rest[2], args.seed))
        print(json.dumps(result))
        return

    if args.post_tuning:
        post_tuning(args.post_tuning, args.seed, args.json)
        return
    if args.universe:
        universe(*parse_size(args.universe), args.kill_at, args.seed, args.keep)
        return
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    for bare_trials, size in zip(args.bare_trials.split(","), args.ratio_size.split(","), strict=True):
        if int(bare_trials) != parse_size(size)[0] * parse_size(size)[1]:
            raise SystemExit(f"--ratio-size {size} is not {bare_trials} trials")
    ratio_studies = max(parse_size(size)[0] for size in args.ratio_size.split(","))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bars"
        synthetic_bars(data, max(s for s, _ in sizes + [(ratio_studies, 0)]))
        for bare_trials, size in zip(args.bare_trials.split(","), args.ratio_size.split(","), strict=True):
            ratio_studies, ratio_trials = parse_size(size)
            bare = run_arm(["bare", bare_trials, str(args.bare_concurrency)])
            ours = run_arm(["ours", str(ratio_studies), str(ratio_trials), str(data)])
            print(f"\n(a) bare Ray Tune + OptunaSearch, ConcurrencyLimiter({args.bare_concurrency}), no-op trainable: "
                  f"{bare['trials']} trials in {bare['wall_s']:.1f} s = {bare['trials'] / bare['wall_s']:.2f} trials/s "
                  f"(Tuner.fit {bare['tuning_s']:.1f} s = {bare['trials'] / bare['tuning_s']:.2f}/s; experiment state "
                  f"{bare['tune_state_bytes'] / 1e6:.2f} MB; {bare['files']} files)")
            print(f"(b) tuner run, bootstrap_returns, {ratio_studies} studies x {ratio_trials} trials: "
                  f"{ours['trials']} trials in {ours['wall_s']:.1f} s = {ours['trials'] / ours['wall_s']:.2f} trials/s "
                  f"(tuning {ours['tuning_s']:.1f} s = {ours['trials'] / ours['tuning_s']:.2f}/s; {ours['files']} files)")
            tuning_ratio = (ours["trials"] / ours["tuning_s"]) / (bare["trials"] / bare["tuning_s"])
            ratio = (ours["trials"] / ours["wall_s"]) / (bare["trials"] / bare["wall_s"])
            print(f"tuning-phase ratio (ours/bare, Tune runs vs Tuner.fit): {tuning_ratio:.1f}")
            print(f"throughput ratio (ours/bare): {ratio:.1f}", flush=True)

        rows = []
        for studies, trials in sizes:
            r = run_arm(["ours", str(studies), str(trials), str(data)])
            rows.append(r)
            print(f"  done {studies}x{trials}: {r['wall_s']:.1f} s", flush=True)
        print(f"\nour engine, end to end (load average {os.getloadavg()[0]:.2f} at the end):")
        header = (f"{'studies x trials':>17} {'trials':>7} {'wall s':>8} {'ms/trial':>9} {'tuning ms/trial':>16} "
                  f"{'pack':>5} {'peak RSS MB':>12} "
                  f"{'journal B/save':>15} {'ms/save':>8} {'Tune state B':>13} {'Tune runs':>10} {'files/trial':>12}")
        print(header)
        for (studies, trials), r in zip(sizes, rows, strict=True):
            print(f"{f'{studies} x {trials}':>17} {r['trials']:>7} {r['wall_s']:>8.1f} "
                  f"{1000 * r['wall_s'] / r['trials']:>9.1f} {1000 * r['tuning_s'] / r['trials']:>16.1f} "
                  f"{r['pack_size']:>5} {r['peak_rss_mb']:>12.0f} "
                  f"{r['journal_bytes_per_flush']:>15.0f} {1000 * r['journal_s_per_flush']:>8.2f} "
                  f"{r['tune_state_bytes']:>13} {r['tune_runs']:>10} {r['files_written'] / r['trials']:>12.4f}")
        # Growth of the tuning phase's cost per trial (what a bigger experiment pays per trial);
        # end to end, the fixed start-up (Ray, actors) makes small runs look dearer per trial.
        per_trial = [r["tuning_s"] / r["trials"] for r in rows]
        end_to_end = [r["wall_s"] / r["trials"] for r in rows]
        print(f"end-to-end per-trial cost, largest/smallest: {end_to_end[-1] / end_to_end[0]:.2f}")
        print(f"per-trial cost growth (largest/smallest): {per_trial[-1] / per_trial[0]:.2f}")


if __name__ == "__main__":
    main()
