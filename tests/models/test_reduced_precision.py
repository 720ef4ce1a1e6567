"""The bf16/fp16 autocast path of both models, run on CPU.

Production enables autocast on CUDA only (the loaders refuse it elsewhere), but the dtype
plumbing is the same code on every device: setting ``autocast_dtype`` directly runs it here,
so a float32/half mismatch (a KV cache, the sampler's CDF, the Toto head) fails in CI rather
than on the first GPU run. Values are compared with float32 at half-precision tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tuner.core.models.kronos import complete_bars, load_kronos, sample_kronos, write_tiny_kronos
from tuner.core.models.toto import first_patch_distribution, load_toto, sample_toto, write_tiny_toto

DTYPES = [torch.bfloat16, torch.float16]


def linear_output_dtypes(model: nn.Module) -> tuple[set[torch.dtype], list]:
    """Dtypes the model's Linear layers produce (hooks; remove the handles after use)."""
    seen: set[torch.dtype] = set()
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
               for m in model.modules() if isinstance(m, nn.Linear)]
    return seen, handles


@pytest.fixture(scope="module")
def toto_dir(tmp_path_factory):
    return write_tiny_toto(tmp_path_factory.mktemp("toto") / "tiny", seed=0)


@pytest.fixture(scope="module")
def kronos_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kronos")
    return write_tiny_kronos(root / "model", root / "tokenizer", seed=0)


def float32_and_half_toto(folder, dtype):
    """The same checkpoint twice: as loaded (float32), and with autocast ``dtype`` switched on."""
    half = load_toto(folder)
    half.autocast_dtype = dtype
    return load_toto(folder), half


def closes(windows: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return 100.0 * torch.exp(torch.cumsum(0.01 * torch.randn(windows, length, generator=g), -1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_when_toto_runs_under_autocast_then_transformer_is_half_and_head_stays_float32(toto_dir, dtype):
    reference, half = float32_and_half_toto(toto_dir, dtype)
    context = closes(3, 200)
    seen, handles = linear_output_dtypes(half)
    try:
        got = first_patch_distribution(half, context)
    finally:
        for h in handles:
            h.remove()
    want = first_patch_distribution(reference, context)
    assert dtype in seen  # autocast really ran the Linear layers in half precision
    for name, g, w in zip(got._fields, got, want, strict=True):
        assert g.dtype == torch.float32, name  # the mixture head feeds the sampler in float32
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, w, rtol=0.1, atol=0.05, msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_when_toto_samples_long_horizons_under_autocast_then_paths_are_finite_and_near_float32(toto_dir, dtype):
    reference, half = float32_and_half_toto(toto_dir, dtype)
    context = closes(2, 150)
    patch = half.config.patch_size
    kwargs = dict(horizon=patch + 3, num_samples=32, seeds=[1, 2], samples_per_batch=16)  # autoregressive
    got = sample_toto(half, context, **kwargs)
    want = sample_toto(reference, context, **kwargs)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.isfinite(got).all()
    # same seeds, nearly the same distributions: the medians of the paths agree closely
    np.testing.assert_allclose(got.median(1).values, want.median(1).values, rtol=0.02)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_when_kronos_samples_under_autocast_then_paths_are_finite_and_near_float32(kronos_dirs, dtype):
    reference = load_kronos(*kronos_dirs)
    half = load_kronos(*kronos_dirs)
    for module in half:
        module.autocast_dtype = dtype
    windows, length, horizon = 2, 40, 3
    g = torch.Generator().manual_seed(0)
    walk = 100 + torch.randn(windows, length, 1, generator=g).cumsum(1)
    bars = complete_bars(walk + torch.rand(windows, length, 4, generator=g),
                         volume=1000 + 100 * torch.rand(windows, length, generator=g))
    base = np.datetime64("2024-03-04T09:30", "ns") + np.arange(length + horizon) * np.timedelta64(1, "D")
    times = torch.tensor(np.stack([base.astype(np.int64)] * windows))
    kwargs = dict(temperatures=[1.0] * 64, top_p=0.9, top_k=0, clip=2.0, seeds=[5, 6], samples_per_batch=32)

    seen, handles = linear_output_dtypes(half[0])
    try:
        got = sample_kronos(*half, bars, times[:, :length], times[:, length:], **kwargs)
    finally:
        for h in handles:
            h.remove()
    want = sample_kronos(*reference, bars, times[:, :length], times[:, length:], **kwargs)

    assert dtype in seen
    assert got.dtype == torch.float32 and got.shape == want.shape == (windows, 64, horizon, 6)
    assert torch.isfinite(got).all()
    # discrete tokens: a few draws may flip to a neighbouring id; the rest decode to nearly the
    # same bars (the tokenizer's decoder runs in half precision too)
    closes_got, closes_want = got[..., 3], want[..., 3]
    np.testing.assert_allclose(closes_got.mean(1), closes_want.mean(1), rtol=0.02)
    near = ((closes_got - closes_want).abs() / closes_want.abs() < 2e-3).float().mean()
    assert near > 0.5
