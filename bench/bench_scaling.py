"""Wall time of one fixed tuning workload on a local multi-node Ray with 1, 2 and 4 emulated
GPU nodes (``ray.cluster_utils.Cluster``; each node 1 CPU + 1 emulated GPU).

With GPUs in the cluster the engine starts one model actor per family per GPU (0.5 GPU Toto,
0.25 per Kronos family), so more nodes mean more actors sharing the work. On this 2-core machine
the emulated nodes share the same two cores: the figure shows how the engine's own cost (actor
start-up, scheduling, routing) grows with resources, not a real speed-up; on real GPU nodes the
model work would divide among them.

Run: ``.venv/bin/python bench/bench_scaling.py --trials 6``
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


def run_once(nodes: int, trials: int, weights: str) -> dict:
    import pandas as pd
    import ray
    from ray.cluster_utils import Cluster

    from tuner.core.models.weights import WeightsSource
    from tuner.engine.experiment import NAMESPACE, run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=cluster.address, namespace=NAMESPACE)
    try:
        with tempfile.TemporaryDirectory() as storage:
            start = time.perf_counter()
            summary = run_experiment(ExperimentConfig(
                name="scaling", symbols=("AAPL", "MSFT"), families=("toto", "kronos_standard", "kronos_ensemble"),
                trials=trials, weights=WeightsSource.parse(weights), storage=storage,
                max_concurrent_per_study=2), echo=lambda line: None)
            wall = time.perf_counter() - start
            table = pd.read_parquet(Path(storage) / "scaling" / "trials.parquet")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"nodes": nodes, "gpus": nodes, "actors": summary["model_actors"], "trials": summary["trials"]["completed"],
            "wall_s": wall, "model_s": float(table["actor_s"].sum()),
            "nodes_used": int(table["node_id"].nunique())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_once(args.one, args.trials, args.weights)))
        return
    from tuner.core.models.tiny import make_tiny

    weights = make_tiny(Path(tempfile.mkdtemp()) / "tiny")
    rows = []
    for n in args.nodes:  # one process per size: a clean Ray each time
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--trials", str(args.trials),
                              "--weights", str(weights)], env={**os.environ, "RAY_AUTH_MODE": "token"},
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"workload: 2 symbols × 3 families × {args.trials} trials, tiny checkpoints")
    print(f"{'nodes/GPUs':>10}{'actors':>8}{'nodes used':>12}{'trials':>8}{'wall s':>9}{'model s (sum)':>15}")
    for r in rows:
        print(f"{r['nodes']:>10}{r['actors']:>8}{r['nodes_used']:>12}{r['trials']:>8}{r['wall_s']:>9.1f}{r['model_s']:>15.1f}")


if __name__ == "__main__":
    main()
