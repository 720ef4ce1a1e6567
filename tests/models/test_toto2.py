"""Our Toto 2.0 and the ``toto2`` family on tiny checkpoints (no upstream needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import random_walk_bars
from tuner.core.config import load_family_config
from tuner.core.data import load_bars
from tuner.core.errors import ConfigError, WeightsError
from tuner.core.families import family_class
from tuner.core.families.toto2 import point_reducer
from tuner.core.models.checkpoint import is_tiny
from tuner.core.models.toto2 import (
    Toto2Config,
    forecast_toto2,
    load_toto2,
    size_config,
    tiny_toto2_config,
    write_tiny_toto2,
)
from tuner.core.models.weights import WeightsSource
from tuner.core.windows import WindowSpec, make_periods


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_toto2(tmp_path_factory.mktemp("toto2"), seed=0)


QUANTILES = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 100.0]])


@pytest.mark.parametrize(("spec", "want"), [
    ("median", 5.0), ("mean", 136 / 9), ("trimmed_mean_1", 5.0), ("trimmed_mean_3", 5.0),
    ("quantile_0.1", 1.0), ("quantile_0.9", 100.0), ("quantile_0.3", 3.0),
])
def test_when_a_point_spec_reduces_the_nine_quantiles_then_it_gives_its_value(spec: str, want: float) -> None:
    assert point_reducer(spec)(QUANTILES)[0] == pytest.approx(want)


@pytest.mark.parametrize("spec", ["trimmed_mean_4", "quantile_0.25", "p50", "mean_minus_std_1"])
def test_when_a_point_spec_is_unknown_then_the_error_names_it_and_the_grammar(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"point '{spec}': unknown; one of median"):
        point_reducer(spec)


def test_when_a_tiny_checkpoint_is_written_then_it_has_the_official_layout_and_is_labelled(tiny: Path) -> None:
    assert (tiny / "model.safetensors").is_file() and is_tiny(tiny)
    raw = json.loads((tiny / "config.json").read_text())
    assert {"patch_size", "d_model", "num_layers", "layer_group_size", "residual_attn_ratio"} <= set(raw)
    model = load_toto2(tiny)
    assert "transformer.layers.0.attn_tau" in model.state_dict()
    assert "output_head.param_projection.proj.skip_proj.weight" in model.state_dict()


def test_when_the_published_4m_shape_is_built_then_it_has_its_published_parameter_count() -> None:
    with torch.device("meta"):
        from tuner.core.models.toto2 import Toto2Model

        model = Toto2Model(Toto2Config.from_dict(size_config("4m")))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 4.1


def test_when_a_config_lacks_a_key_or_asks_for_dropout_then_the_error_names_it(tmp_path: Path) -> None:
    raw = tiny_toto2_config()
    with pytest.raises(WeightsError, match="lacks required key 'residual_attn_ratio'"):
        Toto2Config.from_dict({k: v for k, v in raw.items() if k != "residual_attn_ratio"})
    with pytest.raises(WeightsError, match="'dropout_p' = 0.1: must be 0"):
        Toto2Config.from_dict({**raw, "dropout_p": 0.1})
    with pytest.raises(WeightsError, match="'num_layers' = 3: must be divisible by layer_group_size"):
        Toto2Config.from_dict({**raw, "num_layers": 3})


def test_when_windows_are_batched_then_each_window_gets_what_it_gets_alone(tiny: Path) -> None:
    model = load_toto2(tiny)
    g = torch.Generator().manual_seed(0)
    x = 50 * torch.exp(torch.cumsum(0.02 * torch.randn(4, 61, generator=g), -1))
    together = forecast_toto2(model, x, horizon=3)
    alone = torch.cat([forecast_toto2(model, x[i : i + 1], horizon=3) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert together.shape == (4, 9, 3)
    assert bool((together.diff(dim=1) >= 0).all())  # sorted along the quantile axis


def test_when_the_horizon_needs_block_decoding_then_it_is_refused(tiny: Path) -> None:
    model = load_toto2(tiny)
    with pytest.raises(ConfigError, match="block decoding for longer horizons is not implemented"):
        forecast_toto2(model, torch.ones(1, 16) * 10, horizon=33 * 8)


def test_when_the_space_file_loads_then_its_default_is_upstreams_median_and_context() -> None:
    space = load_family_config("toto2")
    assert space.default == {"max_context": 2048, "point": "median"}
    assert space.context_length == 2048


def test_when_requests_are_merged_then_each_gets_its_own_quantiles(tiny_weights, write_csv) -> None:
    family = family_class("toto2")(weights=str(tiny_weights), device="cpu")
    batches = [make_periods(load_bars(write_csv(f"S{s}.csv", random_walk_bars(200, seed=s))),
                            WindowSpec(6, 6), 128).validation for s in (1, 2)]
    requests = [(batches[0], {"max_context": 64, "point": "median"}, []),
                (batches[1], {"max_context": 64, "point": "mean"}, []),
                (batches[0], {"max_context": 96, "point": "median"}, [])]
    family.load()
    merged = family.sample_group(requests)
    for (batch, params, _), (quantiles, seconds) in zip(requests, merged, strict=True):
        np.testing.assert_allclose(quantiles, family.sample(batch, params, []), rtol=1e-6)
        assert quantiles.shape == (6, 9) and seconds >= 0
    forecast = family.forecast(batches[0], {"max_context": 64, "point": "median"}, seed=0)
    np.testing.assert_array_equal(forecast.point, forecast.samples[:, 4])


def test_when_the_experiment_lists_several_toto2_checkpoints_then_they_are_sizes_named_like_upstreams() -> None:
    several = WeightsSource.from_mapping({"toto2": ["Datadog/Toto-2.0-4m", "Datadog/Toto-2.0-22m"]}, "weights")
    assert [c.name for c in several.checkpoints("toto2")] == ["4m", "22m"]  # tests/test_checkpoint_sizes.py
    one = WeightsSource.from_mapping({"toto2": ["Datadog/Toto-2.0-4m"]}, "weights")
    assert one.toto2 == "Datadog/Toto-2.0-4m"


def test_when_all_four_model_families_share_a_gpu_then_one_set_fits_it() -> None:
    from tuner.engine.experiment import GPU_SHARE, _default_gpu_share

    families = ("toto", "kronos_standard", "kronos_ensemble", "toto2")
    assert sum(_default_gpu_share(f, families) for f in families) == pytest.approx(1.0)
    assert _default_gpu_share("toto", families[:3]) == GPU_SHARE["toto"]  # unchanged without toto2


def test_when_toto_and_toto2_both_won_then_the_blend_takes_the_one_better_on_validation(write_csv) -> None:
    from tuner.core.candidates import WinnerForecasts, blend_toto_member

    periods = make_periods(load_bars(write_csv("B.csv", random_walk_bars(200, seed=4))), WindowSpec(8, 8), 64)
    actual = periods.validation.actual_close
    near = WinnerForecasts("toto2", actual * 1.001, periods.test.actual_close, 0.01)
    far = WinnerForecasts("toto", actual * 1.05, periods.test.actual_close, 0.01)
    assert blend_toto_member({"toto": far, "toto2": near}, periods).family == "toto2"
    only_toto = WinnerForecasts("toto", actual * 1.05, periods.test.actual_close, 0.01)
    assert blend_toto_member({"toto": only_toto, "kronos_ensemble": near}, periods) is only_toto
    assert blend_toto_member({"kronos_ensemble": far}, periods) is None


def test_when_reduced_precision_is_asked_for_toto2_then_it_is_refused_not_ignored(tiny_weights) -> None:
    family = family_class("toto2")(weights=str(tiny_weights), device="cuda", autocast_dtype="bf16")
    with pytest.raises(ConfigError, match="toto2 runs in float32 only"):
        family.load()
