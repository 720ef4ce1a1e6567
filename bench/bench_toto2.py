"""Our Toto 2.0 forward pass vs upstream ``toto-2``'s ``Toto2Model.forecast`` on the same inputs.

CPU, random init, full-size shapes (``tuner.core.models.toto2.size_config``: the published 4m,
and 22m / 313m at their parameter counts), one validation period's windows (W closes of L bars,
horizon 1), both sides on the same weights, one torch thread by default. Arms run back to back, interleaved, ``--repeats``
times each (the machine is shared: the load average before and after is recorded); reported
per arm: the median seconds per call and the ratio upstream / ours. Upstream runs its default
(``has_missing_values=True``: masked attention) and its Flash setting (``False``).

Run: ``.venv/bin/python bench/bench_toto2.py --sizes 22m 313m`` (needs the test-only upstream
package; ``bash scripts/setup.sh --test``). Writes ``bench/results/toto2-forward.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.core import strict_json  # noqa: E402
from tuner.core.models.checkpoint import save_checkpoint  # noqa: E402
from tuner.core.models.toto2 import Toto2Config, forecast_toto2, load_toto2, size_config  # noqa: E402


def _upstream(config: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from toto2 import Toto2Model
        from toto2.configuration import Toto2ModelConfig
    torch.manual_seed(0)
    return Toto2Model(Toto2ModelConfig(**Toto2Config.from_dict(config).to_dict())).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["22m", "313m"])
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per arm (1: arms on a shared machine contend less)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "toto2-forward.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    x = 100 * torch.exp(torch.cumsum(0.01 * torch.randn(args.windows, args.context, generator=g), -1))
    inputs = {"target": x[:, None], "target_mask": torch.ones(args.windows, 1, args.context, dtype=torch.bool),
              "series_ids": torch.zeros(args.windows, 1, dtype=torch.long)}
    report = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__},
              "windows": args.windows, "context": args.context, "horizon": 1, "repeats": args.repeats,
              "sizes": {}}
    for size in args.sizes:
        config = size_config(size)
        up = _upstream(config)
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder), Toto2Config.from_dict(config).to_dict(), up.state_dict(), tiny=True)
            ours = load_toto2(folder)
        params = sum(p.numel() for p in ours.parameters())
        arms = {
            "ours": lambda m=ours: forecast_toto2(m, x, horizon=1),
            "upstream_masked": lambda m=up: m.forecast(inputs, horizon=1),
            "upstream_flash": lambda m=up: m.forecast(inputs, horizon=1, has_missing_values=False),
        }
        with torch.inference_mode():
            results = {name: arm() for name, arm in arms.items()}  # warm-up, and the outputs agree:
        ours_q = results["ours"]
        diffs = {name: float((out[:, :, 0].transpose(0, 1) - ours_q).abs().max())
                 for name, out in results.items() if name != "ours"}
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in arms}
        with torch.inference_mode():
            for _ in range(args.repeats):
                for name, arm in arms.items():
                    start = time.perf_counter()
                    arm()
                    times[name].append(time.perf_counter() - start)
        load_after = os.getloadavg()
        median = {name: statistics.median(t) for name, t in times.items()}
        entry = {"parameters": params, "seconds": times, "median_s": median,
                 "ratio_upstream_over_ours": {n: median[n] / median["ours"] for n in arms if n != "ours"},
                 "max_abs_quantile_difference": diffs, "loadavg_1_5_15_before": list(load_before),
                 "loadavg_1_5_15_after": list(load_after)}
        report["sizes"][size] = entry
        print(f"{size} ({params / 1e6:.1f}M params): ours {median['ours']:.3f}s, upstream masked "
              f"{median['upstream_masked']:.3f}s ({entry['ratio_upstream_over_ours']['upstream_masked']:.2f}x), "
              f"flash {median['upstream_flash']:.3f}s ({entry['ratio_upstream_over_ours']['upstream_flash']:.2f}x); "
              f"max |diff| {max(diffs.values()):.2e}; load {load_before[0]:.1f} -> {load_after[0]:.1f}", flush=True)
    Path(args.out).write_text(strict_json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
