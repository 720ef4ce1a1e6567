"""Parity of our Toto 2.0 with upstream ``toto-2`` (``toto2.Toto2Model``) on identical random-init weights.

Upstream declares Python >= 3.12; its code runs unchanged on our 3.11, so ``scripts/setup.sh
--test`` installs it into our venv as a test-only oracle (``--no-deps --ignore-requires-python``,
``constraints/oracle-toto2.txt``). Without it these tests are skipped, saying so.

Toto 2.0 is deterministic (nine quantiles, no sampling), so outputs are compared directly: the
same quantiles within float32 rounding, for several contexts (a multiple of the patch, padded
ones, wholly unobserved patches), horizons (within a patch and across several) and checkpoint
configs (the published 4m shape, a tiny one, and one with the other switches: qk-norm with
weights, grouped-query attention, variate layer first, plain RoPE, no per-dim scale).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

toto2 = pytest.importorskip(
    "toto2", reason="upstream toto-2 not installed: run `bash scripts/setup.sh --test` (see README, Development)")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from toto2 import Toto2Model as Upstream
    from toto2.configuration import Toto2ModelConfig

from tuner.core.models.checkpoint import save_checkpoint  # noqa: E402
from tuner.core.models.toto2 import (  # noqa: E402
    Toto2Config,
    forecast_toto2,
    load_toto2,
    size_config,
    tiny_toto2_config,
    write_tiny_toto2,
)

pytestmark = pytest.mark.parity


def _switches() -> dict:
    """The other code paths: qk-norm with weights, GQA, variate layer first, no xPos / per-dim scale."""
    return {**tiny_toto2_config(), "d_model": 64, "num_heads": 4, "num_groups": 2, "qk_dim": 16,
            "v_dim": 16, "num_layers": 4, "layer_group_size": 2, "variate_layer_first": True,
            "qk_norm": True, "norm_include_weight": True, "per_dim_scale": False, "use_xpos": False,
            "attn_bias": False, "mlp_bias": True, "patch_size": 16}


CONFIGS = {"4m": size_config("4m"), "tiny": tiny_toto2_config(), "switches": _switches()}


def _upstream(config: dict, seed: int) -> Upstream:
    torch.manual_seed(seed)
    model = Upstream(Toto2ModelConfig(**Toto2Config.from_dict(config).to_dict())).eval()
    with torch.no_grad():  # upstream inits norm weights and per-dim scales at identity: move them
        for name, tensor in model.state_dict().items():
            module = name.rsplit(".", 2)[-2]
            if module.startswith(("norm", "q_norm", "k_norm", "out_norm")) and name.endswith(".weight"):
                tensor.copy_(1.0 + 0.3 * torch.randn_like(tensor))
            elif name.endswith("_pds.per_dim_scale"):
                tensor.copy_(0.5 * torch.randn_like(tensor))
    return model


def _prices(windows: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 100.0 * torch.exp(torch.cumsum(0.01 * torch.randn(windows, length, generator=g), -1))


def _upstream_quantiles(up: Upstream, x: torch.Tensor, horizon: int, pad_patches: int = 0) -> torch.Tensor:
    """Upstream forecast of (W, L) closes left-padded (and ``pad_patches`` more) → (W, 9, horizon)."""
    p = up.config.patch_size
    w, length = x.shape
    padded = -(-length // p) * p + pad_patches * p
    target = torch.zeros(w, 1, padded)
    target[..., padded - length :] = x[:, None]
    mask = torch.zeros(w, 1, padded, dtype=torch.bool)
    mask[..., padded - length :] = True
    inputs = {"target": target, "target_mask": mask, "series_ids": torch.zeros(w, 1, dtype=torch.long)}
    return up.forecast(inputs, horizon=horizon)[:, :, 0].transpose(0, 1)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory) -> tuple[Upstream, object]:
    """Upstream at random init and ours loaded from its state dict through our on-disk format."""
    config = CONFIGS[request.param]
    up = _upstream(config, seed=7)
    folder = save_checkpoint(tmp_path_factory.mktemp(request.param), Toto2Config.from_dict(config).to_dict(),
                             up.state_dict(), tiny=True)
    return up, load_toto2(folder)


@pytest.mark.parametrize(("length", "horizon"), [(128, 1), (100, 1), (300, 7), (75, 40)])
def test_when_same_weights_then_quantiles_match_upstream(pair, length: int, horizon: int) -> None:
    up, ours = pair
    x = _prices(3, length, seed=length)
    with torch.no_grad():
        want = _upstream_quantiles(up, x, horizon)
    got = forecast_toto2(ours, x, horizon=horizon)
    assert got.shape == (3, 9, horizon)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    # The test has power: the outputs vary with the context (not a constant both sides share).
    assert float((want[0] - want[1]).abs().max()) > 1e-3


def test_when_a_context_patch_is_wholly_unobserved_then_masking_matches_upstream(pair) -> None:
    up, ours = pair
    p = ours.config.patch_size
    x = _prices(2, 3 * p + 5, seed=3)
    with torch.no_grad():
        want = _upstream_quantiles(up, x, 1, pad_patches=2)
    series = torch.zeros(2, 1, 6 * p)
    series[..., -x.shape[1] :] = x[:, None]
    observed = series != 0
    with torch.inference_mode():
        got = ours(series, observed, 1)[:, :, 0].transpose(0, 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_when_our_tiny_checkpoint_is_written_then_upstream_loads_it_strictly(tmp_path: Path) -> None:
    folder = write_tiny_toto2(tmp_path / "tiny", seed=2)
    up = Upstream.from_pretrained(str(folder))  # strict=True: every key and shape
    ours = load_toto2(folder)
    assert sorted(up.state_dict()) == sorted(ours.state_dict())
    x = _prices(2, 50, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(forecast_toto2(ours, x, horizon=3), _upstream_quantiles(up, x, 3),
                                   rtol=1e-5, atol=1e-4)
