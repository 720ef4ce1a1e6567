"""Parity of our Toto with upstream ``toto-ts`` on identical random-init weights.

Shapes are those of Toto-Open-Base-1.0 (patch 64, embed 768, 12 layers, 12 heads, MLP 3072,
space-wise every 12 layers, 24 Student-T components) except for the long-horizon sampling test,
which uses a narrow model of the same architecture (patch 64) to stay fast on CPU.

Sampling procedures differ (upstream draws from torch's global generator, all 24 components at
every step; we use a counter-based generator), so seeds cannot align. Sample distributions are
compared instead: two-sample Kolmogorov-Smirnov tests between ours and upstream's samples,
one-sample KS tests of many of ours against the exact mixture CDF built from upstream's own
distribution parameters, and quantiles. All seeds are fixed, so the outcome is deterministic; the
KS threshold p > 1e-3 would fail a correct sampler once in a thousand seed choices.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

toto = pytest.importorskip("toto")

with warnings.catch_warnings():  # upstream warns at import that xFormers is absent
    warnings.simplefilter("ignore")
    from scipy import stats
    from toto.data.util.dataset import MaskedTimeseries, pad_array
    from toto.inference.forecaster import TotoForecaster
    from toto.model.toto import Toto

from tuner.core.models.checkpoint import save_checkpoint  # noqa: E402
from tuner.core.models.toto import TotoModel, base_toto_config, load_toto, sample_toto  # noqa: E402

pytestmark = pytest.mark.parity

P_MIN = 1e-3


def _upstream(config: dict, seed: int) -> Toto:
    """Upstream model, random init from ``seed``; CPU has no xFormers, so plain attention."""
    torch.manual_seed(seed)
    return Toto(**{**config, "use_memory_efficient_attention": False}).eval()


def _prices(windows: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 100.0 * torch.exp(torch.cumsum(0.01 * torch.randn(windows, length, generator=g), -1))


def _upstream_params(up: Toto, x: torch.Tensor):
    """Upstream distribution of every step for (W, L) closes, padded the way its forecaster pads."""
    patch = up.model.patch_embed.stride
    series = pad_array(x[:, None], patch)
    observed = pad_array(torch.ones_like(x[:, None], dtype=torch.bool), patch)
    with torch.no_grad():
        return up.model(
            series, observed, torch.zeros_like(series), scaling_prefix_length=series.shape[-1]
        )


def _upstream_samples(
    up: Toto, x: torch.Tensor, horizon: int, n: int, per_batch: int, kv: bool, seed: int
):
    """(n, horizon) upstream forecast samples for one window of closes x (L,)."""
    length = x.shape[-1]
    inputs = MaskedTimeseries(
        series=x[None],
        padding_mask=torch.ones(1, length, dtype=torch.bool),
        id_mask=torch.zeros(1, length),
        timestamp_seconds=torch.zeros(1, length, dtype=torch.long),
        time_interval_seconds=torch.full((1,), 86400),
    )
    torch.manual_seed(seed)
    forecast = TotoForecaster(up.model).forecast(
        inputs,
        prediction_length=horizon,
        num_samples=n,
        samples_per_batch=per_batch,
        use_kv_cache=kv,
    )
    return forecast.samples[0, 0].T  # (n, horizon)


def _mixture_cdf(dist, loc, scale, window: int, step: int):
    """Exact CDF (numpy callable, price units) of upstream's predictive distribution at one step."""
    w = dist.mixture_distribution.probs[window, 0, step].double().numpy()
    comp = dist.component_distribution
    df, mu, sigma = (t[window, 0, step].double().numpy() for t in (comp.df, comp.loc, comp.scale))
    a, b = float(loc[window, 0, step]), float(scale[window, 0, step])

    def cdf(values):
        z = (np.asarray(values, dtype=np.float64)[:, None] - a) / b
        return (w * stats.t.cdf(z, df, loc=mu, scale=sigma)).sum(-1)

    return cdf


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Toto, TotoModel]:
    """Upstream at base shapes and ours loaded from its state dict through our on-disk format."""
    up = _upstream(base_toto_config(), seed=0)
    folder = save_checkpoint(
        tmp_path_factory.mktemp("base"), base_toto_config(), up.state_dict(), tiny=True
    )
    return up, load_toto(folder)


@pytest.mark.parametrize("length", [512, 500])
def test_when_same_weights_then_distribution_parameters_match(base, length: int) -> None:
    up, ours = base
    x = _prices(3, length, seed=1)
    dist, loc, scale = _upstream_params(up, x)
    patch = ours.config.patch_size
    series = pad_array(x[:, None], patch)
    observed = pad_array(torch.ones_like(x[:, None], dtype=torch.bool), patch)
    with torch.inference_mode():
        full = ours(series, observed)
        last = ours(series, observed, last_patch_only=True)
    comp = dist.component_distribution
    expected = {
        "weights": dist.mixture_distribution.probs,
        "df": comp.df,
        "comp_loc": comp.loc,
        "comp_scale": comp.scale,
        "loc": loc,
        "scale": scale,
    }
    for name, want in expected.items():
        torch.testing.assert_close(getattr(full, name), want, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(
            getattr(last, name), want[:, :, -patch:], rtol=1e-5, atol=1e-6, msg=name
        )


def _narrow_config() -> dict:
    """The base architecture (patch 64, same layer kinds) made narrow and shallow, for cheap tests."""
    return {**base_toto_config(), "embed_dim": 64, "num_heads": 4, "mlp_hidden_dim": 128,
            "num_layers": 2, "spacewise_every_n_layers": 2}


def test_when_upstream_state_dict_saved_then_ours_loads_it_unchanged(tmp_path: Path) -> None:
    """Small same-architecture model: both plain and fused-SwiGLU names, as upstream maps them."""
    config = _narrow_config()
    up = _upstream(config, seed=3)
    plain = up.state_dict()
    fused = Toto._map_state_dict_keys(plain, use_fused_swiglu=True)
    assert any(".mlp.0.w12." in k for k in fused)
    x = _prices(2, 200, seed=4)
    dist, _, _ = _upstream_params(up, x)
    for name, state in (("plain", plain), ("fused", fused)):
        ours = load_toto(save_checkpoint(tmp_path / name, config, state, tiny=True))
        assert all(torch.equal(ours.state_dict()[k], v) for k, v in plain.items())
        series = pad_array(x[:, None], 64)
        observed = pad_array(torch.ones_like(x[:, None], dtype=torch.bool), 64)
        with torch.inference_mode():
            out = ours(series, observed)
        torch.testing.assert_close(out.df, dist.component_distribution.df, rtol=1e-5, atol=1e-6)
    # And upstream reads our on-disk format.
    back = Toto.load_from_checkpoint(str(tmp_path / "plain"), strict=True)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in plain.items())


def test_when_horizon_one_then_samples_match_upstream_distribution(base) -> None:
    up, ours = base
    x = _prices(1, 128, seed=2)[0]  # two patches keep upstream's per-sample forward passes cheap
    theirs = _upstream_samples(up, x, horizon=1, n=1024, per_batch=256, kv=True, seed=0)[
        :, 0
    ].numpy()
    mine = sample_toto(ours, x[None], horizon=1, num_samples=40_000, seeds=[11])[0, :, 0].numpy()
    dist, loc, scale = _upstream_params(up, x[None])
    exact = _mixture_cdf(dist, loc, scale, window=0, step=-64)

    assert stats.ks_2samp(mine, theirs).pvalue > P_MIN
    assert stats.kstest(theirs, exact).pvalue > P_MIN  # the exact CDF is upstream's target
    assert stats.kstest(mine, exact).pvalue > P_MIN  # and ours hits it with 40k samples
    # The test has power: a 10% wider distribution is rejected.
    centre = np.median(mine)
    assert stats.kstest(centre + 1.10 * (mine - centre), exact).pvalue < P_MIN
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    spread = np.subtract(*np.quantile(mine, [0.75, 0.25]))
    np.testing.assert_allclose(np.quantile(mine, qs), np.quantile(theirs, qs), atol=0.15 * spread)


@pytest.mark.parametrize("kv", [False, True])
def test_when_horizon_spans_patches_then_marginals_match_upstream(tmp_path: Path, kv: bool) -> None:
    """Horizon 130 = 2 full patches + 2 steps, autoregressive; narrow model with patch 64."""
    config = {**_narrow_config(), "output_distribution_kwargs": {"k_components": 24}}
    up = _upstream(config, seed=5)
    ours = load_toto(save_checkpoint(tmp_path / "narrow", config, up.state_dict(), tiny=True))
    x = _prices(1, 160, seed=6)[0]
    theirs = _upstream_samples(up, x, horizon=130, n=1500, per_batch=500, kv=kv, seed=1).numpy()
    mine = sample_toto(
        ours, x[None], horizon=130, num_samples=3000, seeds=[21], samples_per_batch=1000
    )[0]
    assert mine.shape == (3000, 130)
    mine = mine.numpy()
    for step in (0, 63, 64, 100, 129):
        assert stats.ks_2samp(mine[:, step], theirs[:, step]).pvalue > P_MIN, step
    # Paths are carried along: dependence between steps matches too (mean of a later step given
    # an early one is what makes them paths rather than independent marginals).
    corr_mine = np.corrcoef(mine[:, 63], mine[:, 129])[0, 1]
    corr_theirs = np.corrcoef(theirs[:, 63], theirs[:, 129])[0, 1]
    assert abs(corr_mine - corr_theirs) < 0.12
