"""Reading and cutting bar files, per file: most of an experiment's start at 10,000 symbols.

Writes N synthetic random-walk CSV files (330 daily bars, one symbol each, as
``bench_control_plane.py --universe`` does), reads each with :func:`tuner.core.data.load_bars`
and cuts its windows for one family, and prints the best of 3 passes in ms per file. To compare
two versions of the reader, run it at each, back to back, on a quiet machine:

    python bench/bench_data_read.py 250
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_control_plane import synthetic_bars

from tuner.core.config import load_family_config
from tuner.core.data import load_bars
from tuner.core.windows import WindowSpec, make_periods, series_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=int, nargs="?", default=250)
    args = parser.parse_args()
    context = load_family_config("bootstrap_returns").context_length
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_bars(Path(tmp), args.files + 50)
        files = sorted(Path(tmp).iterdir())
        for file in files[:50]:  # warm-up: imports, pandas' first calls
            load_bars(file)
        passes = []
        for _ in range(3):
            start = time.perf_counter()
            for file in files[50:]:
                bars = load_bars(file)
                make_periods(bars, WindowSpec(), context, series=series_arrays(bars))
            passes.append(time.perf_counter() - start)
    print(f"{args.files} files read and cut: best of 3 {min(passes):.2f} s = {1000 * min(passes) / args.files:.1f} ms per file")


if __name__ == "__main__":
    main()
