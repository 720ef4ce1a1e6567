"""Unit tests of our Kronos implementation with tiny random-init checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tuner.core.errors import ConfigError, WeightsError
from tuner.core.models.checkpoint import is_tiny
from tuner.core.models.kronos import (
    KronosModel,
    KronosTokenizer,
    calendar_features,
    complete_bars,
    load_kronos,
    sample_kronos,
    write_tiny_kronos,
)

L, W, S = 24, 2, 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny matrices: thread hand-offs cost more than the maths on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("kronos")
    return write_tiny_kronos(root / "model", root / "tokenizer", seed=0)


@pytest.fixture(scope="module")
def loaded(folders):
    return load_kronos(*folders)


def _times(start: str, n: int, windows: int) -> torch.Tensor:
    base = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(90, "m")
    return torch.tensor(np.stack([base.astype(np.int64) + w * 86_400_000_000_000 for w in range(windows)]))


def _inputs(horizon: int = 1, windows: int = W, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    walk = 100 + torch.randn(windows, L, 1, generator=g).cumsum(1)
    ohlc = walk + torch.rand(windows, L, 4, generator=g)
    bars = complete_bars(ohlc, volume=1000 + 100 * torch.rand(windows, L, generator=g))
    times = _times("2024-03-04T09:30", L + horizon, windows)
    return bars, times[:, :L], times[:, L:]


def _sample(loaded, horizon=1, temps=None, **kw):
    model, tokenizer = loaded
    bars, ct, tt = _inputs(horizon)
    args = dict(temperatures=temps if temps is not None else [1.0] * S, top_p=1.0, top_k=0, clip=2.0, seeds=[7, 8])
    args.update(kw)
    return sample_kronos(model, tokenizer, bars, ct, tt, **args)


def test_when_tiny_checkpoint_written_then_it_loads_in_official_format(folders, loaded):
    model_dir, tok_dir = folders
    assert is_tiny(model_dir) and is_tiny(tok_dir)
    assert {"s1_bits", "n_layers", "learn_te"} <= set(json.loads((model_dir / "config.json").read_text()))
    model, tokenizer = loaded
    assert isinstance(model, KronosModel) and isinstance(tokenizer, KronosTokenizer)
    assert not model.training and not tokenizer.training
    again, _ = load_kronos(*folders)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_when_config_key_missing_then_weights_error_names_key_and_file(folders, tmp_path):
    model_dir, tok_dir = folders
    broken = tmp_path / "model"
    broken.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    del config["n_layers"]
    config["some_unknown_key"] = 1
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    with pytest.raises(WeightsError, match=r"n_layers") as info:
        load_kronos(broken, tok_dir)
    assert "config.json" in str(info.value)


def _broken_copy(source, target, edit):
    """A copy of checkpoint folder ``source`` at ``target`` whose tensors ``edit(state)`` changed."""
    from safetensors.torch import load_file, save_file

    target.mkdir()
    (target / "config.json").write_text((source / "config.json").read_text())
    state = load_file(str(source / "model.safetensors"))
    edit(state)
    save_file(state, str(target / "model.safetensors"))
    return target


def test_when_tensor_has_wrong_shape_then_weights_error_names_key(folders, tmp_path):
    model_dir, tok_dir = folders
    broken = _broken_copy(model_dir, tmp_path / "model",
                          lambda state: state.update({"head.proj_s1.weight": torch.zeros(3, 3)}))
    with pytest.raises(WeightsError, match=r"head\.proj_s1\.weight"):
        load_kronos(broken, tok_dir)


def test_when_tensor_missing_then_weights_error_names_key(folders, tmp_path):
    model_dir, tok_dir = folders
    broken = _broken_copy(tok_dir, tmp_path / "tok", lambda state: state.pop("quant_embed.bias"))
    with pytest.raises(WeightsError, match=r"quant_embed\.bias"):
        load_kronos(model_dir, broken)


def test_when_sampling_then_shape_is_windows_samples_horizon_bars_and_finite(loaded):
    out = _sample(loaded, horizon=3)
    assert out.shape == (W, S, 3, 6) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    bars, _, _ = _inputs()
    # Decoded bars live near the window's own scale (normalised output is bounded by the decoder).
    assert (out[..., 3].mean(dim=(1, 2)) - bars[..., 3].mean(1)).abs().max() < 10 * bars[..., 3].std(1).max()


def test_when_same_seeds_then_samples_are_identical(loaded):
    assert torch.equal(_sample(loaded, horizon=2), _sample(loaded, horizon=2))
    assert not torch.equal(_sample(loaded), _sample(loaded, seeds=[9, 10]))


def test_when_window_sampled_alone_then_it_matches_the_batch_bit_for_bit(loaded):
    model, tokenizer = loaded
    bars, ct, tt = _inputs(horizon=2)
    kw = dict(temperatures=[1.0] * S, top_p=0.9, top_k=0, clip=2.0)
    both = sample_kronos(model, tokenizer, bars, ct, tt, seeds=[3, 4], **kw)
    alone = sample_kronos(model, tokenizer, bars[1:], ct[1:], tt[1:], seeds=[4], **kw)
    assert torch.equal(both[1:], alone)
    other = bars.clone()
    other[0] *= 1.5  # changing window 0 must not change window 1
    assert torch.equal(sample_kronos(model, tokenizer, other, ct, tt, seeds=[3, 4], **kw)[1], both[1])


@pytest.mark.parametrize("horizon", [1, 3])
def test_when_windows_share_a_model_call_then_each_gets_what_it_gets_alone(loaded, horizon):
    model, tokenizer = loaded
    bars, ct, tt = _inputs(horizon=horizon, windows=5)
    kw = dict(temperatures=torch.linspace(0.5, 1.5, 8), top_p=0.9, top_k=0, clip=2.0, seeds=[7, 1, 5, 3, 9],
              max_context=L + 1, samples_per_batch=4)  # horizon 3 slides the window past L + 1
    one_by_one = sample_kronos(model, tokenizer, bars, ct, tt, windows_per_call=1, **kw)
    for per_call in (2, 5, None):
        assert torch.equal(sample_kronos(model, tokenizer, bars, ct, tt, windows_per_call=per_call, **kw),
                           one_by_one), per_call
    with pytest.raises(ConfigError, match="windows_per_call"):
        sample_kronos(model, tokenizer, bars, ct, tt, windows_per_call=0, **kw)


@pytest.mark.parametrize("horizon", [1, 3])
def test_when_samples_per_batch_changes_then_result_is_bit_identical(loaded, horizon):
    full = _sample(loaded, horizon=horizon, top_p=0.9)
    for spb in (1, 2, 8, 16):
        assert torch.equal(_sample(loaded, horizon=horizon, top_p=0.9, samples_per_batch=spb), full), spb


def test_when_samples_per_batch_does_not_divide_samples_then_config_error(loaded):
    with pytest.raises(ConfigError, match=r"samples_per_batch=5.*32"):
        _sample(loaded, samples_per_batch=5)


def test_when_top_k_top_p_or_temperature_change_then_samples_change(loaded):
    base = _sample(loaded, horizon=2)
    assert not torch.equal(_sample(loaded, horizon=2, top_k=2), base)
    assert not torch.equal(_sample(loaded, horizon=2, top_p=0.3), base)
    assert not torch.equal(_sample(loaded, horizon=2, temps=[0.3] * S), base)
    # top_k=1 is greedy: all paths equal whatever the temperature.
    greedy = _sample(loaded, horizon=2, top_k=1, temps=np.linspace(0.5, 2.0, S))
    assert torch.equal(greedy, greedy[:, :1].expand_as(greedy))
    # Lower temperature narrows the spread of the paths.
    cold = _sample(loaded, horizon=1, temps=[0.05] * S)[..., 3].std(dim=1).mean()
    hot = _sample(loaded, horizon=1, temps=[3.0] * S)[..., 3].std(dim=1).mean()
    assert cold < hot


def test_when_temperature_ladder_then_each_sample_uses_its_own_temperature(loaded):
    ladder = np.linspace(0.05, 3.0, S)
    mixed = _sample(loaded, horizon=2, temps=ladder)
    # Sample j of a ladder equals sample j drawn with a constant temperature ladder[j].
    for j in (0, S // 2, S - 1):
        alone = _sample(loaded, horizon=2, temps=[float(ladder[j])] * S)
        assert torch.allclose(mixed[:, j], alone[:, j], atol=1e-4), j


def test_when_horizon_exceeds_max_context_window_then_it_slides_and_stays_invariant(loaded):
    slid = _sample(loaded, horizon=4, max_context=L + 1)
    assert slid.shape == (W, S, 4, 6) and torch.isfinite(slid).all()
    assert torch.equal(_sample(loaded, horizon=4, max_context=L + 1, samples_per_batch=4), slid)
    assert not torch.equal(_sample(loaded, horizon=4), slid)
    with pytest.raises(ConfigError, match="max_context"):
        _sample(loaded, horizon=4, max_context=3)


def test_when_prefix_shared_decoding_then_it_matches_full_recomputation(loaded):
    model, tokenizer = loaded
    g = torch.Generator().manual_seed(1)
    s1 = torch.randint(0, 16, (L,), generator=g)
    s2 = torch.randint(0, 16, (L,), generator=g)
    stamp = calendar_features(_times("2024-01-01", L, 1)[0])
    logits, hidden = model(s1[None], s2[None], stamp[None])
    stream = model.start_stream(s1[:-2], s2[:-2], stamp[:-2])
    model.continue_stream(stream, s1[None, -2:-1].expand(3, -1), s2[None, -2:-1].expand(3, -1), stamp[-2:-1])
    model.continue_stream(stream, s1[None, -1:].expand(3, -1), s2[None, -1:].expand(3, -1), stamp[-1:])
    torch.testing.assert_close(model.next_s1_logits(stream), logits[0, -1].expand(3, -1), atol=1e-5, rtol=1e-5)
    nxt = torch.tensor([5, 5, 5])
    torch.testing.assert_close(model.next_s2_logits(stream, nxt), model.s2_logits(hidden, nxt[:1]).expand(3, -1), atol=1e-5, rtol=1e-5)
    full = tokenizer.decode(s1[None], s2[None])
    dec = tokenizer.decode_continue(tokenizer.decode_prefix(s1[:-3], s2[:-3]), s1[None, -3:], s2[None, -3:])
    torch.testing.assert_close(dec, full[:, -3:], atol=1e-5, rtol=1e-5)


def test_when_timestamps_given_then_calendar_features_match_pandas():
    import pandas as pd

    idx = pd.date_range("2023-12-31 23:59", periods=5, freq="37min")
    feats = calendar_features(torch.tensor(idx.as_unit("ns").asi8))
    expected = np.stack([idx.minute, idx.hour, idx.day_of_week, idx.day, idx.month], -1)
    assert np.array_equal(feats.numpy(), expected.astype(np.float32))


def test_when_volume_or_amount_missing_then_filled_as_upstream():
    ohlc = torch.tensor([[[1.0, 3.0, 1.0, 3.0]]])
    assert complete_bars(ohlc)[0, 0, 4:].tolist() == [0.0, 0.0]
    assert complete_bars(ohlc, volume=torch.tensor([[10.0]]))[0, 0, 4:].tolist() == [10.0, 20.0]
