"""Parity of our Kronos with upstream (kronos-finance's vendored shiyu-coder/Kronos code).

Both sides get the SAME random-init weights at the official architecture shapes (no download).
Deterministic parts (tokenizer ids, decoded bars, s1/s2 logits, prefix-shared decoding) must agree
within float tolerance; sampling is compared by distribution, because upstream draws with
``torch.multinomial`` from the global RNG and we draw by inverse CDF from per-window generators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("kronos_finance")
from kronos_finance._vendor.kronos_model import Kronos as UpKronos  # noqa: E402
from kronos_finance._vendor.kronos_model import KronosPredictor  # noqa: E402
from kronos_finance._vendor.kronos_model import KronosTokenizer as UpTokenizer  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402

from tuner.core.models.kronos import (  # noqa: E402
    KronosModel,
    KronosModelConfig,
    KronosTokenizer,
    KronosTokenizerConfig,
    calendar_features,
    complete_bars,
    load_kronos,
    normalize_context,
    official_model_config,
    official_tokenizer_config,
    sample_kronos,
)

pytestmark = pytest.mark.parity

PAIRS = {"mini": "2k", "small": "base", "base": "base"}
KS_ALPHA = 1e-3
"""Same distribution: KS p-value must exceed this. Wrong temperature: p-value must fall below it."""


def _upstream(size: str, seed: int = 0, sharpen: float = 1.0):
    torch.manual_seed(seed)
    model = UpKronos(**official_model_config(size)).eval()
    tokenizer = UpTokenizer(**official_tokenizer_config(PAIRS[size])).eval()
    if sharpen != 1.0:
        # Random init gives near-uniform next-token distributions; sharpen them so temperature,
        # top-p and top-k matter and a mistake in any of them shows in the samples.
        with torch.no_grad():
            model.head.proj_s1.weight.mul_(sharpen)
            model.head.proj_s2.weight.mul_(sharpen)
    return model, tokenizer


def _ours(size: str, up_model, up_tokenizer):
    model = KronosModel(KronosModelConfig.from_dict(official_model_config(size))).eval()
    tokenizer = KronosTokenizer(KronosTokenizerConfig.from_dict(official_tokenizer_config(PAIRS[size]))).eval()
    model.load_state_dict(up_model.state_dict(), strict=True)
    tokenizer.load_state_dict(up_tokenizer.state_dict(), strict=True)
    return model, tokenizer


def _bars(length: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, length)))
    open_ = np.concatenate([[50.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, length))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, length))
    volume = rng.uniform(1e5, 2e5, length)
    df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})
    df["amount"] = df["volume"] * df[["open", "high", "low", "close"]].mean(axis=1)
    stamps = pd.Series(pd.date_range("2024-01-02 09:30", periods=length + 4, freq="30min"))
    return df, stamps


@pytest.mark.parametrize("size", ["mini", "small", "base"])
def test_when_same_weights_then_deterministic_outputs_match_upstream(size):
    up_model, up_tok = _upstream(size)
    model, tok = _ours(size, up_model, up_tok)
    df, stamps = _bars(64)
    x, _, _ = normalize_context(torch.tensor(df.to_numpy(), dtype=torch.float32)[None], 2.5)
    stamp = calendar_features(torch.tensor(stamps[:64].dt.as_unit("ns").astype("int64").to_numpy()))[None]
    with torch.no_grad():
        up_s1, up_s2 = up_tok.encode(x, half=True)
        s1, s2 = tok.encode(x)
        assert torch.equal(s1, up_s1) and torch.equal(s2, up_s2)
        torch.testing.assert_close(tok.decode(s1, s2), up_tok.decode([up_s1, up_s2], half=True), atol=1e-5, rtol=1e-5)

        up_logits, up_hidden = up_model.decode_s1(up_s1, up_s2, stamp)
        logits, hidden = model(s1, s2, stamp)
        torch.testing.assert_close(logits, up_logits, atol=1e-4, rtol=1e-4)
        nxt = torch.tensor([[17]])
        up_s2_logits = up_model.decode_s2(up_hidden, nxt)[:, -1]
        torch.testing.assert_close(model.s2_logits(hidden, nxt[:, 0]), up_s2_logits, atol=1e-4, rtol=1e-4)

        # The prefix-shared path (what the sampler runs) gives the same next-token logits.
        stream = model.start_stream(s1[0, :-1], s2[0, :-1], stamp[0, :-1])
        model.continue_stream(stream, s1[:, -1:].expand(2, -1), s2[:, -1:].expand(2, -1), stamp[0, -1:])
        torch.testing.assert_close(model.next_s1_logits(stream), up_logits[:, -1].expand(2, -1), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.next_s2_logits(stream, nxt[0].expand(2)), up_s2_logits.expand(2, -1), atol=1e-4, rtol=1e-4)


def test_when_upstream_saves_checkpoint_then_ours_loads_it_unchanged(tmp_path):
    up_model, up_tok = _upstream("mini", seed=3)
    up_model.save_pretrained(tmp_path / "model")
    up_tok.save_pretrained(tmp_path / "tok")
    model, tok = load_kronos(tmp_path / "model", tmp_path / "tok")
    for ours, theirs in ((model, up_model), (tok, up_tok)):
        theirs_state = theirs.state_dict()
        assert set(ours.state_dict()) == set(theirs_state)
        for key, value in ours.state_dict().items():
            assert torch.equal(value, theirs_state[key]), key


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (0, 0.9), (0, 0.3), (5, 1.0), (5, 0.5), (1, 1.0)])
def test_when_filtering_logits_then_kept_ids_match_upstream(top_k, top_p):
    from kronos_finance._vendor.kronos_model.kronos import top_k_top_p_filtering

    from tuner.core.models.kronos import _filtered_logits

    g = torch.Generator().manual_seed(top_k)
    logits = 3 * torch.randn(64, 1024, generator=g)
    temps = torch.linspace(0.2, 2.0, 64)
    theirs = logits / temps[:, None]
    if top_k > 0 or top_p < 1.0:  # upstream's sample_from_logits filters only then
        theirs = torch.cat([top_k_top_p_filtering(row[None].clone(), top_k=top_k, top_p=top_p) for row in theirs])
    ours = _filtered_logits(logits, temps, top_k, top_p)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    torch.testing.assert_close(torch.softmax(ours, -1), torch.softmax(theirs, -1))


def _upstream_paths(up_model, up_tok, df, stamps, length, horizon, n, *, temperature, top_p, top_k, clip):
    """n independent upstream paths of one window via KronosPredictor.predict_batch (one series
    per path, sample_count=1, so nothing is averaged) -> (n, horizon, 6) in price units."""
    predictor = KronosPredictor(up_model, up_tok, device="cpu", max_context=512, clip=clip)
    x_ts, y_ts = stamps[:length].reset_index(drop=True), stamps[length : length + horizon].reset_index(drop=True)
    torch.manual_seed(1234)
    frames = predictor.predict_batch([df] * n, [x_ts] * n, [y_ts] * n, pred_len=horizon, T=temperature,
                                     top_k=top_k, top_p=top_p, sample_count=1, verbose=False)
    return np.stack([f.to_numpy() for f in frames])


def _our_paths(model, tok, df, stamps, length, horizon, n, *, temperature, top_p, top_k, clip, seed=5):
    ns = stamps.dt.as_unit("ns").astype("int64").to_numpy()
    ohlc = torch.tensor(df[["open", "high", "low", "close"]].to_numpy())[None]
    volume = torch.tensor(df["volume"].to_numpy())[None]
    bars = complete_bars(ohlc, volume)  # amount filled as upstream's predictor does
    out = sample_kronos(model, tok, bars, torch.tensor(ns[:length])[None], torch.tensor(ns[length : length + horizon])[None],
                        temperatures=[temperature] * n, top_p=top_p, top_k=top_k, clip=clip, seeds=[seed])
    return out[0].numpy()


@pytest.fixture(scope="module")
def sharpened_small():
    up_model, up_tok = _upstream("small", seed=1, sharpen=4.0)
    return up_model, up_tok, *_ours("small", up_model, up_tok)


@pytest.mark.parametrize(
    "horizon, temperature, top_p, top_k",
    [(1, 1.0, 0.9, 0), (2, 0.8, 1.0, 20)],
)
def test_when_sampling_then_distribution_matches_upstream(sharpened_small, horizon, temperature, top_p, top_k):
    up_model, up_tok, model, tok = sharpened_small
    length, n, clip = 32, 400, 2.0
    df, stamps = _bars(length, seed=horizon)
    df = df.iloc[:length]
    kw = dict(top_p=top_p, top_k=top_k, clip=clip)
    theirs = _upstream_paths(up_model, up_tok, df, stamps, length, horizon, n, temperature=temperature, **kw)
    ours = _our_paths(model, tok, df, stamps, length, horizon, n, temperature=temperature, **kw)
    wrong = _our_paths(model, tok, df, stamps, length, horizon, n, temperature=temperature * 0.5, **kw)
    for step in range(horizon):
        a, b, c = theirs[:, step, 3], ours[:, step, 3], wrong[:, step, 3]  # close
        assert np.unique(a).size > 5, "the test needs a non-degenerate upstream distribution"
        p_same = ks_2samp(a, b).pvalue
        assert p_same > KS_ALPHA, f"step {step}: KS p={p_same:.2g} (ours vs upstream)"
        q = [0.1, 0.25, 0.5, 0.75, 0.9]
        spread = np.quantile(a, 0.9) - np.quantile(a, 0.1)
        assert np.abs(np.quantile(a, q) - np.quantile(b, q)).max() < 0.35 * spread
        if step == 0:
            # Power check: halving the temperature must be detected by the same test.
            p_wrong = ks_2samp(a, c).pvalue
            assert p_wrong < KS_ALPHA, f"wrong temperature not detected (p={p_wrong:.2g})"
