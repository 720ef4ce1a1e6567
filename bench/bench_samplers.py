"""Our samplers vs upstream's procedures, Kronos S ∈ {1, 16, 256} and Toto S ∈ {64, 256, 2048},
in one run (each on its own full-size random-init weights, shared by both sides).

Run: ``.venv/bin/python bench/bench_samplers.py`` (needs the test-only upstream packages).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_kronos_sampler  # noqa: E402
import bench_toto_sampler  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv
    print("== Kronos-small + Tokenizer-base, context 256, horizon 1 ==", flush=True)
    sys.argv = [argv[0], "--samples", "1", "16", "256"]
    bench_kronos_sampler.main()
    print("\n== Toto-Open-Base-1.0 shapes, context 512, horizon 1 ==", flush=True)
    sys.argv = [argv[0], "--samples", "64", "256", "2048"]
    bench_toto_sampler.main()
