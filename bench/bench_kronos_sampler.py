"""Time upstream's Kronos sampling (context copied per sample) against our prefix-shared sampler.

Same random-init weights at the official Kronos-small + Kronos-Tokenizer-base shapes, one window of
256 bars, horizon 1, temperature 1, top_p 0.9. Run: ``python bench/bench_kronos_sampler.py``
(needs the test-only ``kronos-finance`` package for the upstream side).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from kronos_finance._vendor.kronos_model import Kronos as UpKronos
from kronos_finance._vendor.kronos_model import KronosTokenizer as UpTokenizer
from kronos_finance._vendor.kronos_model.kronos import auto_regressive_inference

from tuner.core.models.kronos import (
    KronosModel,
    KronosModelConfig,
    KronosTokenizer,
    KronosTokenizerConfig,
    calendar_features,
    normalize_context,
    official_model_config,
    official_tokenizer_config,
    sample_kronos,
)


def _timed(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    up_model = UpKronos(**official_model_config("small")).eval()
    up_tok = UpTokenizer(**official_tokenizer_config("base")).eval()
    model = KronosModel(KronosModelConfig.from_dict(official_model_config("small"))).eval()
    tok = KronosTokenizer(KronosTokenizerConfig.from_dict(official_tokenizer_config("base"))).eval()
    model.load_state_dict(up_model.state_dict())
    tok.load_state_dict(up_tok.state_dict())

    length = args.context
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, length)))
    bars = np.stack([close, close * 1.01, close * 0.99, close, rng.uniform(1e5, 2e5, length),
                     rng.uniform(1e7, 2e7, length)], axis=-1)
    context = torch.tensor(bars, dtype=torch.float32)[None]
    times = pd.date_range("2024-01-02", periods=length + 1, freq="D").as_unit("ns").asi8
    ctx_times, tgt_times = torch.tensor(times[:length])[None], torch.tensor(times[length:])[None]
    clip = 2.0
    x, _, _ = normalize_context(context, clip)
    x_stamp, y_stamp = calendar_features(ctx_times), calendar_features(tgt_times)

    print(f"Kronos-small + Tokenizer-base (random init), context {length}, horizon 1, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'S':>5} {'upstream s':>11} {'ours s':>9} {'speed-up':>9}")
    for s in args.samples:
        def upstream(s: int = s) -> None:
            auto_regressive_inference(up_tok, up_model, x, x_stamp, y_stamp, max_context=512, pred_len=1,
                                      clip=clip, T=1.0, top_k=0, top_p=0.9, sample_count=s)

        def ours(s: int = s) -> None:
            sample_kronos(model, tok, context, ctx_times, tgt_times, temperatures=[1.0] * s, top_p=0.9,
                          top_k=0, clip=clip, seeds=[0])

        up_repeats = 1 if s > 64 else args.repeats  # upstream at S=256 takes tens of seconds
        t_up, t_ours = _timed(upstream, up_repeats), _timed(ours, args.repeats)
        print(f"{s:>5} {t_up:>11.3f} {t_ours:>9.3f} {t_up / t_ours:>8.1f}x", flush=True)


if __name__ == "__main__":
    main()
