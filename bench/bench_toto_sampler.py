"""Time upstream's TotoForecaster against our sample_toto on full-size random-init Toto weights.

Horizon 1, a context of 512 bars, S in {64, 256, 2048} samples; ours also for 20 windows in one
call. Needs the test-only ``toto-ts`` package. Run: ``python bench/bench_toto_sampler.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from toto.data.util.dataset import MaskedTimeseries
    from toto.inference.forecaster import TotoForecaster
    from toto.model.toto import Toto

from tuner.core.models.checkpoint import save_checkpoint
from tuner.core.models.toto import base_toto_config, load_toto, sample_toto


def _prices(windows: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 100.0 * torch.exp(torch.cumsum(0.01 * torch.randn(windows, length, generator=g), -1))


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[64, 256, 2048])
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument(
        "--upstream-batch", type=int, default=256, help="upstream samples_per_batch cap"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    upstream = Toto(**{**base_toto_config(), "use_memory_efficient_attention": False}).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ours = load_toto(
            save_checkpoint(Path(tmp), base_toto_config(), upstream.state_dict(), tiny=True)
        )
    forecaster = TotoForecaster(upstream.model)

    closes = _prices(args.windows, args.context)
    one = closes[:1]
    inputs = MaskedTimeseries(
        series=one,
        padding_mask=torch.ones_like(one, dtype=torch.bool),
        id_mask=torch.zeros_like(one),
        timestamp_seconds=torch.zeros_like(one, dtype=torch.long),
        time_interval_seconds=torch.full((1,), 86400),
    )

    def run_upstream(s: int) -> None:
        with torch.inference_mode():
            forecaster.forecast(
                inputs,
                prediction_length=1,
                num_samples=s,
                samples_per_batch=min(s, args.upstream_batch),
            )

    sample_toto(ours, one, horizon=1, num_samples=8, seeds=[0])  # warm-up (allocator, kernels)
    print(
        f"threads={torch.get_num_threads()} context={args.context} horizon=1 "
        f"upstream samples_per_batch=min(S, {args.upstream_batch})"
    )
    header = (
        f"{'S':>6} {'upstream 1w (s)':>16} {'ours 1w (s)':>12} {'speed-up':>9} "
        f"{f'ours {args.windows}w (s)':>14} {'per window (s)':>15}"
    )
    print(header)
    print("-" * len(header))
    seeds = list(range(args.windows))
    for s in args.samples:
        t_up = _time(lambda s=s: run_upstream(s))
        t_one = _time(lambda s=s: sample_toto(ours, one, horizon=1, num_samples=s, seeds=[0]))
        t_many = _time(lambda s=s: sample_toto(ours, closes, horizon=1, num_samples=s, seeds=seeds))
        print(
            f"{s:>6} {t_up:>16.3f} {t_one:>12.4f} {t_up / t_one:>8.0f}x "
            f"{t_many:>14.4f} {t_many / args.windows:>15.4f}"
        )


if __name__ == "__main__":
    main()
