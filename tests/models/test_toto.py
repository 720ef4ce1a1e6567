"""Unit tests of our Toto: loading through the on-disk format and the sampler's guarantees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tuner.core.errors import ConfigError, DataError, WeightsError
from tuner.core.models.checkpoint import is_tiny
from tuner.core.models.toto import (
    TotoConfig,
    TotoModel,
    base_toto_config,
    load_toto,
    sample_toto,
    tiny_toto_config,
    write_tiny_toto,
)

PATCH = tiny_toto_config()["patch_size"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_toto(tmp_path_factory.mktemp("toto") / "tiny", seed=0)


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> TotoModel:
    return load_toto(tiny_dir)


def _prices(windows: int, length: int, seed: int = 0) -> torch.Tensor:
    """(windows, length) random-walk closes around 100."""
    g = torch.Generator().manual_seed(seed)
    return 100.0 * torch.exp(torch.cumsum(0.01 * torch.randn(windows, length, generator=g), -1))


def _copy_checkpoint(src: Path, dst: Path, *, config=None, state=None) -> Path:
    dst.mkdir()
    (dst / "config.json").write_text(
        json.dumps(config or json.loads((src / "config.json").read_text()))
    )
    save_file(
        state if state is not None else load_file(str(src / "model.safetensors")),
        str(dst / "model.safetensors"),
    )
    return dst


def test_when_tiny_checkpoint_written_then_it_loads_with_identical_tensors(tiny_dir: Path) -> None:
    loaded = load_toto(tiny_dir)
    on_disk = load_file(str(tiny_dir / "model.safetensors"))
    assert is_tiny(tiny_dir)
    assert set(loaded.state_dict()) == set(on_disk)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in on_disk.items())
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.config == TotoConfig.from_dict(tiny_toto_config())


def test_when_config_round_trips_then_official_keys_are_kept() -> None:
    config = TotoConfig.from_dict(base_toto_config())
    again = TotoConfig.from_dict(config.to_dict())
    assert again == config
    assert (config.patch_size, config.embed_dim, config.num_layers, config.k_components) == (
        64,
        768,
        12,
        24,
    )
    assert [config.is_time_layer(i) for i in range(12)] == [False] + [True] * 11


def test_when_config_key_missing_then_weights_error_names_key_and_file(
    tiny_dir: Path, tmp_path: Path
) -> None:
    config = tiny_toto_config()
    del config["embed_dim"]
    bad = _copy_checkpoint(tiny_dir, tmp_path / "bad", config=config)
    with pytest.raises(WeightsError, match=r"'embed_dim'") as info:
        load_toto(bad)
    assert "config.json" in str(info.value)


def test_when_mixture_components_missing_then_weights_error_names_key(
    tiny_dir: Path, tmp_path: Path
) -> None:
    config = {**tiny_toto_config(), "output_distribution_kwargs": {}}
    with pytest.raises(WeightsError, match="k_components"):
        load_toto(_copy_checkpoint(tiny_dir, tmp_path / "bad", config=config))


def test_when_unknown_config_keys_present_then_they_are_ignored(
    tiny_dir: Path, tmp_path: Path
) -> None:
    config = {**tiny_toto_config(), "some_future_key": 3, "pre_xformers_checkpoint": False}
    assert (
        load_toto(_copy_checkpoint(tiny_dir, tmp_path / "extra", config=config)).config.embed_dim
        == 32
    )


def test_when_tensor_missing_then_weights_error_names_key(tiny_dir: Path, tmp_path: Path) -> None:
    state = load_file(str(tiny_dir / "model.safetensors"))
    del state["model.unembed.bias"]
    with pytest.raises(WeightsError, match=r"model\.unembed\.bias"):
        load_toto(_copy_checkpoint(tiny_dir, tmp_path / "bad", state=state))


def test_when_tensor_has_wrong_shape_then_weights_error_names_key(
    tiny_dir: Path, tmp_path: Path
) -> None:
    state = load_file(str(tiny_dir / "model.safetensors"))
    state["model.output_distribution.df.weight"] = torch.zeros(5, 32)
    with pytest.raises(WeightsError, match=r"model\.output_distribution\.df\.weight.*\(5, 32\)"):
        load_toto(_copy_checkpoint(tiny_dir, tmp_path / "bad", state=state))


def test_when_checkpoint_uses_fused_swiglu_names_then_it_loads_the_same(
    tiny_dir: Path, tmp_path: Path, model: TotoModel
) -> None:
    state = load_file(str(tiny_dir / "model.safetensors"))
    fused = {
        k.replace(".mlp.0.", ".mlp.0.w12.").replace(".mlp.2.", ".mlp.0.w3."): v
        for k, v in state.items()
    }
    fused["model.transformer.rotary_emb.freqs"] = torch.zeros(8)  # old checkpoints carry it
    assert any(".mlp.0.w12.weight" in k for k in fused)
    loaded = load_toto(_copy_checkpoint(tiny_dir, tmp_path / "fused", state=fused))
    x = _prices(2, 40)
    args = dict(horizon=3, num_samples=8, seeds=[1, 2])
    assert torch.equal(sample_toto(loaded, x, **args), sample_toto(model, x, **args))


def test_when_folder_absent_then_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError):
        load_toto(tmp_path / "nope")


def test_when_half_precision_asked_on_cpu_then_config_error(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match="bfloat16"):
        load_toto(tiny_dir, dtype=torch.bfloat16)


def test_when_sampling_then_shape_is_windows_samples_horizon_and_finite(model: TotoModel) -> None:
    out = sample_toto(model, _prices(3, 45), horizon=5, num_samples=16, seeds=[0, 1, 2])
    assert out.shape == (3, 16, 5)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.std() > 0


def test_when_same_seeds_then_samples_are_identical(model: TotoModel) -> None:
    x = _prices(2, 40)
    a = sample_toto(model, x, horizon=PATCH, num_samples=32, seeds=[7, 8])
    b = sample_toto(model, x, horizon=PATCH, num_samples=32, seeds=[7, 8])
    c = sample_toto(model, x, horizon=PATCH, num_samples=32, seeds=[7, 9])
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0])
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("horizon", [1, PATCH, 2 * PATCH + 3])
def test_when_other_window_changes_then_this_window_is_bit_identical(
    model: TotoModel, horizon: int
) -> None:
    x = _prices(3, 37)
    y = x.clone()
    y[1] = _prices(1, 37, seed=5)[0]
    a = sample_toto(model, x, horizon=horizon, num_samples=8, seeds=[3, 4, 5])
    b = sample_toto(model, y, horizon=horizon, num_samples=8, seeds=[3, 4, 5])
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[1], b[1])


@pytest.mark.parametrize("horizon", [3, 2 * PATCH + 5])
def test_when_samples_per_batch_changes_then_samples_are_bit_identical(
    model: TotoModel, horizon: int
) -> None:
    x = _prices(2, 40)
    runs = [
        sample_toto(model, x, horizon=horizon, num_samples=16, seeds=[1, 2], samples_per_batch=spb)
        for spb in (None, 16, 8, 4, 1)
    ]
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_when_samples_per_batch_does_not_divide_then_config_error_names_values(
    model: TotoModel,
) -> None:
    with pytest.raises(ConfigError, match=r"samples_per_batch 5.*num_samples 16"):
        sample_toto(
            model, _prices(1, 16), horizon=1, num_samples=16, seeds=[0], samples_per_batch=5
        )


def test_when_horizon_exceeds_patch_then_paths_extend_the_first_patch(model: TotoModel) -> None:
    x = _prices(2, 29)
    long = sample_toto(model, x, horizon=3 * PATCH + 2, num_samples=12, seeds=[4, 5])
    short = sample_toto(model, x, horizon=PATCH, num_samples=12, seeds=[4, 5])
    assert long.shape == (2, 12, 3 * PATCH + 2)
    assert torch.isfinite(long).all()
    # The first patch comes from the same forward pass and the same random numbers.
    assert torch.equal(long[..., :PATCH], short)


def test_when_window_sampled_alone_then_it_matches_the_batch_closely(model: TotoModel) -> None:
    x = _prices(3, 40)
    batch = sample_toto(model, x, horizon=4, num_samples=16, seeds=[1, 2, 3])
    alone = sample_toto(model, x[1:2], horizon=4, num_samples=16, seeds=[2])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-5, atol=1e-4)


def test_when_context_is_not_a_patch_multiple_then_left_padding_is_masked(model: TotoModel) -> None:
    # A context of PATCH+1 closes is padded to 2 patches; the padding must not act like prices.
    x = _prices(1, PATCH + 1)
    out = sample_toto(model, x, horizon=2, num_samples=256, seeds=[0])
    assert torch.isfinite(out).all()
    assert (out.median() - x[0, -1]).abs() < 50 * x.std()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"horizon": 0}, ConfigError, "horizon 0"),
        ({"num_samples": 0}, ConfigError, "num_samples 0"),
        ({"seeds": [1]}, ConfigError, "seeds has 1"),
    ],
)
def test_when_arguments_are_bad_then_errors_name_them(
    model: TotoModel, kwargs, error, match
) -> None:
    args = {"horizon": 2, "num_samples": 4, "seeds": [1, 2], **kwargs}
    with pytest.raises(error, match=match):
        sample_toto(model, _prices(2, 16), **args)


def test_when_context_has_nan_then_data_error(model: TotoModel) -> None:
    x = _prices(1, 16)
    x[0, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        sample_toto(model, x, horizon=1, num_samples=4, seeds=[0])


def test_when_drawing_from_a_known_mixture_then_samples_follow_its_exact_cdf() -> None:
    """The sampler's Student-T mixture draws (heavy df=2 tail included) match scipy's CDF."""
    stats = pytest.importorskip("scipy.stats")
    import numpy as np

    from tuner.core.models.toto import TotoOutput, _draw, _seed_key

    def field(*values: float) -> torch.Tensor:
        return torch.tensor(values).view(1, 1, -1)

    params = TotoOutput(
        weights=field(0.3, 0.7),
        df=field(2.0, 30.0),
        comp_loc=field(-1.0, 0.5),
        comp_scale=field(0.5, 2.0),
        loc=torch.tensor([[100.0]]),
        scale=torch.tensor([[3.0]]),
    )
    draws = _draw(params, _seed_key(123), torch.arange(50_000), 0, 1)[:, 0].double().numpy()

    def cdf(x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x)[:, None] - 100.0) / 3.0
        return (
            np.array([0.3, 0.7]) * stats.t.cdf(z, [2.0, 30.0], loc=[-1.0, 0.5], scale=[0.5, 2.0])
        ).sum(-1)

    assert stats.kstest(draws, cdf).pvalue > 1e-3
