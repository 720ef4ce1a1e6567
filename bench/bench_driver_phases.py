"""The driver's memory phase by phase, in a real ``run_experiment`` on a local Ray.

Runs one experiment (synthetic random-walk bars, one CSV per symbol, the weights-free
``bootstrap_returns`` family, a pooled config) in this process and prints, before and after
each step of the driver (cutting the windows, starting the actors, tuning, reading the trials,
re-scoring, the candidates, collation and its parts, the summary), the process's RSS, its
anonymous part and its peak (VmHWM), from /proc. What a step adds to the RSS is what the driver
holds for it; shared pages it maps (the object store's) count too.

The steps are found by name (the driver's private functions): a renamed one is reported, not
skipped silently. Run it alone on the machine (it starts its own Ray):

    python bench/bench_driver_phases.py 10000 2

With ``--trace``, Python's own allocations are traced too (tracemalloc; slower): after each step
the lines of code whose live allocations grew by over 1 MB during it. With ``--trim``, glibc's
``malloc_trim(0)`` runs after each step and the line shows the RSS after it too: what the step
left as freed heap the allocator had kept rather than as live memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_control_plane import synthetic_bars

START = time.time()
TRACE: dict = {}
"""With --trace: the last tracemalloc snapshot (``last``)."""
TRIM: dict = {}
"""With --trim: glibc's ``malloc_trim`` (``call``)."""


def memory_mb() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM", "RssAnon")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) // 1024
    return fields


def log(what: str) -> None:
    m = memory_mb()
    trimmed = ""
    if TRIM:
        TRIM["call"](0)
        trimmed = f"  trimmed {memory_mb()['VmRSS']:5d} MB"
    print(f"[{time.time() - START:7.1f} s] rss {m['VmRSS']:5d} MB  anon {m['RssAnon']:5d} MB  "
          f"peak {m['VmHWM']:5d} MB{trimmed}  {what}", flush=True)
    if TRACE:
        import tracemalloc

        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        for stat in snapshot.compare_to(TRACE["last"], "lineno"):
            if stat.size_diff > 1024**2:
                frame = stat.traceback[0]
                print(f"            {stat.size_diff / 1024**2:+7.1f} MB ({stat.size / 1024**2:.1f} MB live) "
                      f"{frame.filename}:{frame.lineno}", flush=True)
        TRACE["last"] = snapshot


def wrap(owner, names: list[str]) -> None:
    """Log around each of ``owner``'s callables ``names``."""
    for name in names:
        if not hasattr(owner, name):
            raise SystemExit(f"{owner.__name__}.{name} is gone: update this script's step list")
        inner = getattr(owner, name)

        def logged(*args, _inner=inner, _name=name, **kwargs):
            log(f"before {_name}")
            out = _inner(*args, **kwargs)
            log(f"after {_name}")
            return out

        setattr(owner, name, logged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", type=int)
    parser.add_argument("trials", type=int)
    parser.add_argument("--trace", action="store_true", help="also trace Python's allocations (slower)")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each step (glibc)")
    args = parser.parse_args()

    import tuner.engine.collate as collate
    import tuner.engine.collate_tasks as collate_tasks
    import tuner.engine.experiment as experiment
    import tuner.engine.trial_store as trial_store
    from tuner.engine.experiment_config import ExperimentConfig

    wrap(experiment, ["cut_windows", "_connect", "_start_actors", "_make_searcher", "start_trials", "score_winners",
                      "score_pooled", "winner_forecasts", "derive_candidates", "write_experiment",
                      "_add_pooled_section"])
    wrap(trial_store.StoredTrials, ["load"])
    wrap(collate, ["summary_head", "write_summary"])
    wrap(collate_tasks.TaskCollator, ["collate", "_finish"])
    if args.trim:
        import ctypes

        TRIM["call"] = ctypes.CDLL("libc.so.6").malloc_trim
    mark = experiment.PhaseClock.mark

    def marked(self, name, *a, **k):
        log(f"phase {name} ends")
        return mark(self, name, *a, **k)

    experiment.PhaseClock.mark = marked
    log("imports")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bars"
        synthetic_bars(data, args.studies)
        if args.trace:
            import tracemalloc

            tracemalloc.start()
            TRACE["last"] = tracemalloc.take_snapshot()
        log("data written")
        summary = experiment.run_experiment(ExperimentConfig(
            name="phases", data=str(data), symbols=tuple(f"S{i:04d}" for i in range(args.studies)),
            families=("bootstrap_returns",), trials=args.trials, seed=0, storage=f"{tmp}/results"),
            echo=lambda line: None, include_dashboard=False)
        log("done")
        print({k: round(v, 1) for k, v in summary["phases_s"].items()})


if __name__ == "__main__":
    main()
