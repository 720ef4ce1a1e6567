"""Driver memory of the multiplexing searcher at universe scale, without Ray or models.

Drives :class:`tuner.engine.search.StudyMultiplexer` through every trial of N studies x T trials
(packs of 64, values drawn at random, 20 per-window errors per trial as a real trial reports)
and prints the process's RSS after building the studies, at the end, and its peak, for each
``hot_studies`` setting asked (``all`` = every study kept live, as before the study cache). It
also prints a digest of every suggestion made, so arms with the same seed can be compared: the
compressed studies must suggest exactly what live ones do.

Run one arm per process (RSS is per process):

    python bench/bench_driver_memory.py 1000 10 --hot 2048
    python bench/bench_driver_memory.py 10000 10 --hot all
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import time


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", type=int)
    parser.add_argument("trials", type=int)
    parser.add_argument("--hot", default=None, help="idle studies kept live, or 'all' (default: the searcher's)")
    args = parser.parse_args()

    from tuner.core.config import load_family_config
    from tuner.engine.search import StudyMultiplexer

    families = ["toto", "kronos_standard", "kronos_ensemble"]
    configs = {f: load_family_config(f) for f in families}
    spaces = {f"S{i}/{families[i % 3]}": (f"S{i}", families[i % 3], configs[families[i % 3]].space)
              for i in range(args.studies)}
    points = {k: [configs[f].default_point] for k, (_, f, _) in spaces.items()}
    from tuner.engine.study_cache import DEFAULT_HOT

    hot = args.studies + 1 if args.hot == "all" else int(args.hot or DEFAULT_HOT)
    base, started = rss_mb(), time.time()
    searcher = StudyMultiplexer(spaces, args.trials, 2, 0, points_to_evaluate=points, pack_size=64,
                                max_packs=8, hot_studies=hot)
    built = rss_mb()
    rng, digest, n = random.Random(0), hashlib.sha1(), 0
    while not searcher.done:
        config = searcher.suggest(f"p{n}")
        if not isinstance(config, dict):
            break
        outcomes = []
        for s in config["pack"]:
            digest.update(repr((s["study"], sorted(s["params"].items()))).encode())
            outcomes.append({"slot": s["slot"], "ok": True, "value": rng.random(), "config": s["params"],
                             "metrics": {"errors": [rng.random() for _ in range(20)]}})
        searcher.on_trial_complete(f"p{n}", {"slots": outcomes})
        n += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"studies {args.studies} x trials {args.trials}, hot {args.hot or hot}: RSS after imports {base:.0f} MB, "
          f"after building {built:.0f} MB, end {rss_mb():.0f} MB, peak {peak:.0f} MB; "
          f"{time.time() - started:.1f} s; cache {searcher.studies.stats()}; suggestions {digest.hexdigest()[:12]}")


if __name__ == "__main__":
    main()
