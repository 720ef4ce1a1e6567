"""Ray Tune's per-trial overhead on our workload, and what the engine's settings do to it.

Each variant runs the same small experiment (bundled data, 2 symbols, tiny checkpoints, so model
work is small and the overhead shows) in its own process, and prints trials per second during
tuning, the mean model work per trial inside the actors, and the overhead per trial:

* ``no-reuse``: Tune starts a new trial actor for every trial (Tune's default);
* ``engine``: our settings: reused trial actors, 5 ms request batching, sample banks;
* ``engine-no-loggers``: also without Tune's CSV/TensorBoard/JSON result loggers;
* ``engine-4-per-study``: as ``engine`` but 4 trials of a study in flight (more TPE-blind).

Run: ``.venv/bin/python bench/bench_overhead.py --trials 10``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "no-reuse": {"env": {}, "reuse": False, "per_study": 2},
    "engine": {"env": {}, "reuse": True, "per_study": 2},
    "engine-no-loggers": {"env": {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}, "reuse": True, "per_study": 2},
    "engine-4-per-study": {"env": {}, "reuse": True, "per_study": 4},
}


def run_variant(name: str, trials: int, weights: str, families: str) -> dict:
    """Runs in a child process (environment variables differ per variant)."""
    import pandas as pd

    from tuner import experiment
    from tuner.experiment import run_experiment
    from tuner.experiment_config import ExperimentConfig
    from tuner.weights import WeightsSource

    variant = VARIANTS[name]
    if not variant["reuse"]:  # the one knob not in ExperimentConfig: patch the Tuner factory
        original = experiment._make_tuner

        def no_reuse(*args, **kwargs):
            tuner, resumed = original(*args, **kwargs)
            tuner._local_tuner._tune_config.reuse_actors = False
            return tuner, resumed

        experiment._make_tuner = no_reuse
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        summary = run_experiment(ExperimentConfig(
            name="overhead", symbols=("AAPL", "MSFT"), families=tuple(families.split(",")), trials=trials,
            weights=WeightsSource.parse(weights), storage=storage,
            max_concurrent_per_study=variant["per_study"]), echo=lambda line: None, include_dashboard=False)
        wall = time.perf_counter() - start
        progress = json.loads((Path(storage) / "overhead" / "progress.json").read_text())
        table = pd.read_parquet(Path(storage) / "overhead" / "trials.parquet")
    n = summary["trials"]["completed"]
    tuning_s = progress["elapsed_s"]
    return {"variant": name, "trials": n, "wall_s": wall, "tuning_s": tuning_s,
            "trials_per_s": n / tuning_s, "actor_s_mean": float(table["actor_s"].mean()),
            "rpc_wait_s_mean": float(table["wait_s"].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--families", default="toto,kronos_standard,kronos_ensemble")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.trials, args.weights, args.families)))
        return
    from tuner.models.tiny import make_tiny

    weights = make_tiny(Path(tempfile.mkdtemp()) / "tiny")
    rows = []
    for name, variant in VARIANTS.items():
        out = subprocess.run([sys.executable, __file__, "--variant", name, "--trials", str(args.trials),
                              "--weights", str(weights), "--families", args.families],
                             env={**os.environ, **variant["env"]}, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{name}: done", file=sys.stderr, flush=True)
    # "in actor" overlaps between concurrent trials (threads on the same cores), so it is not a
    # share of the wall time; "wall s/trial" is what each trial costs the run.
    print(f"{'variant':<22}{'trials':>7}{'tuning s':>10}{'trials/s':>10}{'wall s/trial':>14}"
          f"{'in actor s':>12}{'RPC+queue s':>13}")
    for r in rows:
        print(f"{r['variant']:<22}{r['trials']:>7}{r['tuning_s']:>10.1f}{r['trials_per_s']:>10.2f}"
              f"{1 / r['trials_per_s']:>14.3f}{r['actor_s_mean']:>12.3f}{r['rpc_wait_s_mean']:>13.3f}")
    base = next(r for r in rows if r["variant"] == "no-reuse")
    for r in rows[1:]:
        print(f"{r['variant']}: {r['trials_per_s'] / base['trials_per_s']:.2f}x the trials/s of no-reuse")


if __name__ == "__main__":
    main()
