"""Kronos (shiyu-coder/Kronos), inference only: the K-line tokenizer and the autoregressive model.

Two modules whose parameter names equal upstream's state-dict keys, so the official
``PyTorchModelHubMixin`` checkpoints (``config.json`` + ``model.safetensors``) load unchanged:

* :class:`KronosTokenizer` -- a causal transformer encoder, binary spherical quantisation (BSQ) of
  each bar into ``s1_bits + s2_bits`` sign bits split into a coarse id ``s1`` and a fine id ``s2``,
  and a causal transformer decoder back to the 6 bar features.
* :class:`KronosModel` -- embeds ``(s1, s2)`` pairs plus calendar features, runs RoPE transformer
  blocks, predicts ``s1`` from the last hidden state and then ``s2`` through a "dependency-aware"
  cross-attention layer conditioned on the sampled ``s1``.

:func:`sample_kronos` draws many paths per window with prefix sharing: the context is tokenised and
run through the model once per window, and only the per-sample continuation is computed per sample
(shared keys/values of the context, per-sample keys/values of the generated bars). It samples the
same distribution as upstream's ``KronosPredictor`` / ``auto_regressive_inference``, which instead
copies the whole context once per sample.

Input conventions for :func:`sample_kronos`:

* bars are ``[open, high, low, close, volume, amount]`` in price/volume units. Upstream fills a
  missing volume *and* amount with 0, and a missing amount alone with ``volume * mean(OHLC)``;
  :func:`complete_bars` does the same, the caller must pass complete 6-column bars.
* timestamps are int64 nanoseconds since the epoch of the bars' *wall-clock* time, i.e.
  ``index.as_unit("ns").asi8`` of a tz-naive ``DatetimeIndex`` (pandas 3 defaults to other units,
  so convert first; for a tz-aware index use ``index.tz_localize(None).as_unit("ns").asi8`` to keep
  the local wall time, which is what upstream's ``.dt.hour`` etc. see). Minute, hour, weekday (Monday = 0), day and month are taken from them.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tuner.core.errors import ConfigError, WeightsError
from tuner.core.models.checkpoint import (
    load_strict,
    read_config,
    read_state_dict,
    resolve_checkpoint,
    save_checkpoint,
)

__all__ = [
    "KronosModel",
    "KronosModelConfig",
    "KronosTokenizer",
    "KronosTokenizerConfig",
    "calendar_features",
    "complete_bars",
    "load_kronos",
    "normalize_context",
    "official_model_config",
    "official_tokenizer_config",
    "random_kronos",
    "sample_kronos",
    "tiny_kronos_configs",
    "write_tiny_kronos",
]

NORM_EPS = 1e-5
"""Added to the per-window std before dividing, as upstream's predictor does."""
DEP_LAYER_HEADS = 4
"""Upstream builds the dependency-aware layer with its default 4 heads, whatever ``n_heads`` is."""
ROPE_TABLES_KEPT = 64
"""Rotary cos/sin tables kept per attention layer (a handful of position ranges recur)."""
MIN_SAMPLE_ROWS = 16
"""Sample chunks smaller than this are padded: CPU BLAS takes another code path (with other
rounding) for matrices of 1-3 rows, which would make results depend on ``samples_per_batch``."""


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _from_mapping(cls: type, config: Mapping[str, Any], source: object) -> Any:
    """Build dataclass ``cls`` from ``config``; unknown keys ignored, missing required keys fail."""
    kwargs = {}
    for f in fields(cls):
        if f.name in config:
            kwargs[f.name] = config[f.name]
        elif f.default is _REQUIRED:
            raise WeightsError(f"{source}: config has no required key {f.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{source}: invalid config: {e}") from e


class _Required:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()


@dataclass(frozen=True)
class KronosTokenizerConfig:
    """Constructor kwargs of upstream ``KronosTokenizer`` (its ``config.json``)."""

    d_in: int = _REQUIRED
    d_model: int = _REQUIRED
    n_heads: int = _REQUIRED
    ff_dim: int = _REQUIRED
    n_enc_layers: int = _REQUIRED
    n_dec_layers: int = _REQUIRED
    s1_bits: int = _REQUIRED
    s2_bits: int = _REQUIRED
    group_size: int = _REQUIRED
    # Training-only values, kept so a written config.json is complete.
    beta: float = 0.05
    gamma0: float = 1.0
    gamma: float = 1.1
    zeta: float = 0.05
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} even-sized heads")
        if self.s1_bits != self.s2_bits:
            # Upstream's decode extracts codebook_dim // 2 bits from each id.
            raise ValueError(f"s1_bits={self.s1_bits} must equal s2_bits={self.s2_bits}")
        if (self.s1_bits + self.s2_bits) % self.group_size:
            raise ValueError(f"s1_bits + s2_bits must be divisible by group_size={self.group_size}")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, source: object = "config") -> KronosTokenizerConfig:
        return _from_mapping(cls, config, source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class KronosModelConfig:
    """Constructor kwargs of upstream ``Kronos`` (its ``config.json``)."""

    s1_bits: int = _REQUIRED
    s2_bits: int = _REQUIRED
    n_layers: int = _REQUIRED
    d_model: int = _REQUIRED
    n_heads: int = _REQUIRED
    ff_dim: int = _REQUIRED
    learn_te: bool = _REQUIRED
    # Training-only values, kept so a written config.json is complete.
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    token_dropout_p: float = 0.0

    def __post_init__(self) -> None:
        for heads in (self.n_heads, DEP_LAYER_HEADS):
            if self.d_model % heads or (self.d_model // heads) % 2:
                raise ValueError(f"d_model={self.d_model} must split into {heads} even-sized heads")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], *, source: object = "config") -> KronosModelConfig:
        return _from_mapping(cls, config, source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Official shapes, from the NeoQuasar config.json files (Tokenizer-base as published on the hub;
# the others as mirrored in public code, consistent with the hub's 4.1M / 24.7M / 102.3M counts).
_OFFICIAL_MODELS: dict[str, dict[str, Any]] = {
    "mini": dict(s1_bits=10, s2_bits=10, n_layers=4, d_model=256, n_heads=4, ff_dim=512,
                 learn_te=True, ffn_dropout_p=0.2, attn_dropout_p=0.0, resid_dropout_p=0.2,
                 token_dropout_p=0.0),
    "small": dict(s1_bits=10, s2_bits=10, n_layers=8, d_model=512, n_heads=8, ff_dim=1024,
                  learn_te=True, ffn_dropout_p=0.25, attn_dropout_p=0.1, resid_dropout_p=0.25,
                  token_dropout_p=0.1),
    "base": dict(s1_bits=10, s2_bits=10, n_layers=12, d_model=832, n_heads=16, ff_dim=2048,
                 learn_te=True, ffn_dropout_p=0.2, attn_dropout_p=0.0, resid_dropout_p=0.2,
                 token_dropout_p=0.0),
}
_OFFICIAL_TOKENIZERS: dict[str, dict[str, Any]] = {
    "base": dict(d_in=6, d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4,
                 s1_bits=10, s2_bits=10, group_size=4, beta=0.05, gamma0=1.0, gamma=1.1,
                 zeta=0.05, ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0),
    "2k": dict(d_in=6, d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4,
               s1_bits=10, s2_bits=10, group_size=5, beta=0.05, gamma0=1.0, gamma=1.1,
               zeta=0.05, ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0),
}
OFFICIAL_PAIRS = {
    "NeoQuasar/Kronos-mini": "NeoQuasar/Kronos-Tokenizer-2k",
    "NeoQuasar/Kronos-small": "NeoQuasar/Kronos-Tokenizer-base",
    "NeoQuasar/Kronos-base": "NeoQuasar/Kronos-Tokenizer-base",
}
"""Which tokenizer each official model was trained with (mini: 2048-bar context, others: 512)."""


def official_model_config(size: str) -> dict[str, Any]:
    """The official ``config.json`` of ``NeoQuasar/Kronos-{size}``, ``size`` in mini/small/base."""
    if size not in _OFFICIAL_MODELS:
        raise ConfigError(f"Kronos size {size!r} unknown; allowed: {sorted(_OFFICIAL_MODELS)}")
    return dict(_OFFICIAL_MODELS[size])


def official_tokenizer_config(name: str) -> dict[str, Any]:
    """The official ``config.json`` of ``NeoQuasar/Kronos-Tokenizer-{name}``, ``name`` in base/2k."""
    if name not in _OFFICIAL_TOKENIZERS:
        raise ConfigError(f"Kronos tokenizer {name!r} unknown; allowed: {sorted(_OFFICIAL_TOKENIZERS)}")
    return dict(_OFFICIAL_TOKENIZERS[name])


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

KV = tuple[Tensor, Tensor]
"""Keys and values of one attention layer, each (batch, heads, positions, head_dim)."""


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Rotary(nn.Module):
    """RoPE on the two halves of each head (``rotate_half`` convention), base 10000."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        # (start, length, device, dtype) -> (cos, sin): a window's prefix and every decode step
        # ask for the same few position ranges, and recomputing them was ~15 % of a CPU forecast.
        self._tables: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _table(self, start: int, length: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (start, length, device, dtype)
        table = self._tables.get(key)
        if table is None:
            # Built as ordinary constants, so a table made during inference also serves a
            # forward pass outside it (inference tensors cannot enter autograd).
            with torch.inference_mode(False), torch.no_grad():
                pos = torch.arange(start, start + length, device=device, dtype=self.inv_freq.dtype)
                angles = torch.outer(pos, self.inv_freq)
                angles = torch.cat((angles, angles), dim=-1)
                table = (angles.cos().to(dtype), angles.sin().to(dtype))
            if len(self._tables) >= ROPE_TABLES_KEPT:
                self._tables.clear()
            self._tables[key] = table
        return table

    def forward(self, x: Tensor, start: int) -> Tensor:
        """Rotate ``x`` (..., T, head_dim) as positions ``start .. start + T - 1``."""
        cos, sin = self._table(start, x.shape[-2], x.device, x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def _prefixed_attention(q: Tensor, prefix: KV, own: KV | None, scale: float) -> Tensor:
    """Attention of per-sample queries over their window's prefix plus each sample's own positions.

    ``prefix`` keys and values are (B, h, P, d): B windows' contexts, each shared by the R = S / B
    samples of that window; ``q`` (S, h, n, d) holds the last ``n`` of each sample's ``m`` own
    positions, window-major (rows ``b * R .. b * R + R - 1`` belong to window ``b``); ``own``
    (S, h, m, d) or None (m = 0). Query j sees its window's whole prefix and own positions
    ``<= m - n + j`` (causal). Returns (S, h, n, d).
    """
    s, h, n, d = q.shape
    pk, pv = prefix
    b, p = pk.shape[0], pk.shape[-2]
    r = s // b
    # Folding a window's samples into rows keeps one GEMM per (window, head) against its prefix
    # (no R copies of the prefix).
    qf = q.reshape(b, r, h, n, d).transpose(1, 2).reshape(b, h, r * n, d)
    scores = [(qf @ pk.transpose(-1, -2)).view(b, h, r, n, p).transpose(1, 2).reshape(s, h, n, p)]
    if own is not None:
        ok, ov = own
        m = ok.shape[-2]
        own_scores = q @ ok.transpose(-1, -2)
        hidden = torch.arange(m, device=q.device)[None, :] > (m - n + torch.arange(n, device=q.device))[:, None]
        scores.append(own_scores.masked_fill(hidden, float("-inf")))
    weights = torch.softmax(torch.cat(scores, dim=-1).float() * scale, dim=-1).to(q.dtype)
    wp = weights[..., :p].reshape(b, r, h, n, p).transpose(1, 2).reshape(b, h, r * n, p)
    out = (wp @ pv).view(b, h, r, n, d).transpose(1, 2).reshape(s, h, n, d)
    if own is not None:
        out = out + weights[..., p:] @ ov
    return out


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with RoPE (upstream ``MultiHeadAttentionWithRoPE``)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, x: Tensor, *, start: int = 0, prefix: KV | None = None, past: KV | None = None
    ) -> tuple[Tensor, KV]:
        """Attend ``x`` (B, T, d_model) at positions ``start..``; return output and x's (k, v).

        Without ``prefix`` this is plain causal attention within ``x`` (window positions from 0).
        With ``prefix`` (W, h, P, d) keys/values of W windows' contexts and ``past`` (B, h, m, d)
        own earlier keys/values, ``x`` continues each of the B sequences after its window's
        prefix (``start = P + m``; B / W sequences per window, window-major).
        """
        q = self.rotary(self._heads(self.q_proj(x)), start)
        k = self.rotary(self._heads(self.k_proj(x)), start)
        v = self._heads(self.v_proj(x))
        if prefix is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            own = (k, v) if past is None else (torch.cat((past[0], k), 2), torch.cat((past[1], v), 2))
            out = _prefixed_attention(q, prefix, own, self.head_dim**-0.5)
        b, t, _ = x.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1)), (k, v)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ff_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: RMSNorm -> causal RoPE attention -> residual; RMSNorm -> SwiGLU -> residual."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = SelfAttention(d_model, n_heads)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim)

    def forward(
        self, x: Tensor, *, start: int = 0, prefix: KV | None = None, past: KV | None = None
    ) -> tuple[Tensor, KV]:
        attn, kv = self.self_attn(self.norm1(x), start=start, prefix=prefix, past=past)
        x = x + attn
        return x + self.ffn(self.norm2(x)), kv


@dataclass
class _Stream:
    """Keys/values of a block stack for S sequences sharing a prefix.

    ``prefix``: per layer (W, h, P, d), computed once per window; ``own``: per layer (S, h, m, d),
    each sequence's positions after its window's prefix (None before the first one), S / W
    sequences per window, window-major.
    """

    prefix: list[KV]
    own: list[KV] | None = None

    @property
    def length(self) -> int:
        p = self.prefix[0][0].shape[-2]
        return p + (0 if self.own is None else self.own[0][0].shape[-2])


def _windowed(*tensors: Tensor) -> tuple[Tensor, ...]:
    """One window's ids (P,) / stamps (P, 5) as a batch of one; batches pass through."""
    ids = tensors[0]
    return tensors if ids.dim() == 2 else tuple(t[None] for t in tensors)


def _run_prefix(blocks: nn.ModuleList, x: Tensor) -> tuple[Tensor, list[KV]]:
    """Run ``x`` (W, P, d) through ``blocks`` from position 0; return output and per-layer (k, v)."""
    kvs = []
    for block in blocks:
        x, kv = block(x)
        kvs.append(kv)
    return x, kvs


def _run_continue(blocks: nn.ModuleList, x: Tensor, stream: _Stream) -> Tensor:
    """Run new positions ``x`` (S, n, d) of S sequences continuing ``stream``; extend its cache."""
    start = stream.length
    new_own = []
    for i, block in enumerate(blocks):
        past = None if stream.own is None else stream.own[i]
        x, kv = block(x, start=start, prefix=stream.prefix[i], past=past)
        new_own.append(kv if past is None else (torch.cat((past[0], kv[0]), 2), torch.cat((past[1], kv[1]), 2)))
    stream.own = new_own
    return x


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


class _BSQBuffers(nn.Module):
    """Holds upstream's persistent BSQ buffers so checkpoints load strictly (not used otherwise)."""

    def __init__(self, codebook_dim: int, group_size: int) -> None:
        super().__init__()
        self.register_buffer("basis", 2 ** torch.arange(codebook_dim - 1, -1, -1))
        self.register_buffer("group_basis", 2 ** torch.arange(group_size - 1, -1, -1))


class _BSQuantizer(nn.Module):
    def __init__(self, codebook_dim: int, group_size: int) -> None:
        super().__init__()
        self.bsq = _BSQBuffers(codebook_dim, group_size)


class KronosTokenizer(nn.Module):
    """Bars (B, T, d_in) <-> token ids ``(s1, s2)``, each (B, T) int64 in ``[0, 2**bits)``."""

    def __init__(self, config: KronosTokenizerConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.codebook_dim = c.s1_bits + c.s2_bits
        self.embed = nn.Linear(c.d_in, c.d_model)
        self.head = nn.Linear(c.d_model, c.d_in)
        # Upstream builds n_layers - 1 blocks for both stacks.
        self.encoder = nn.ModuleList(TransformerBlock(c.d_model, c.n_heads, c.ff_dim) for _ in range(c.n_enc_layers - 1))
        self.decoder = nn.ModuleList(TransformerBlock(c.d_model, c.n_heads, c.ff_dim) for _ in range(c.n_dec_layers - 1))
        self.quant_embed = nn.Linear(c.d_model, self.codebook_dim)
        self.post_quant_embed_pre = nn.Linear(c.s1_bits, c.d_model)  # training only
        self.post_quant_embed = nn.Linear(self.codebook_dim, c.d_model)
        self.tokenizer = _BSQuantizer(self.codebook_dim, c.group_size)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised bars ``x`` (B, T, d_in) -> ``(s1_ids, s2_ids)``, each (B, T) int64.

        BSQ keeps only the sign of each latent dimension (L2 normalisation does not change it);
        bit j of an id is latent dimension j of its half (least significant first).
        """
        z = self.embed(x)
        for block in self.encoder:
            z, _ = block(z)
        bits = (self.quant_embed(z) > 0).long()
        s1b = self.config.s1_bits
        weights = 2 ** torch.arange(max(s1b, self.config.s2_bits), device=x.device)
        s1 = (bits[..., :s1b] * weights[:s1b]).sum(-1)
        s2 = (bits[..., s1b:] * weights[: self.config.s2_bits]).sum(-1)
        return s1, s2

    def _embed_ids(self, s1: Tensor, s2: Tensor) -> Tensor:
        """Ids (..., T) -> decoder input (..., T, d_model) via the +-1/sqrt(dim) BSQ code."""
        def bits(ids: Tensor, n: int) -> Tensor:
            return (ids.unsqueeze(-1) >> torch.arange(n, device=ids.device)) & 1

        code = torch.cat((bits(s1, self.config.s1_bits), bits(s2, self.config.s2_bits)), dim=-1)
        code = (code.to(self.post_quant_embed.weight.dtype) * 2 - 1) / math.sqrt(self.codebook_dim)
        return self.post_quant_embed(code)

    def decode(self, s1: Tensor, s2: Tensor) -> Tensor:
        """Token ids (B, T) -> normalised bars (B, T, d_in)."""
        z = self._embed_ids(s1, s2)
        for block in self.decoder:
            z, _ = block(z)
        return self.head(z)

    def decode_prefix(self, s1: Tensor, s2: Tensor) -> _Stream:
        """Decoder keys/values of shared ids, (P,) for one window or (W, P), for continuing
        with :meth:`decode_continue`."""
        _, kvs = _run_prefix(self.decoder, self._embed_ids(*_windowed(s1, s2)))
        return _Stream(prefix=kvs)

    def decode_continue(self, stream: _Stream, s1: Tensor, s2: Tensor) -> Tensor:
        """Decode ids (S, n) that follow their window's prefix (S / W rows per window,
        window-major) -> (S, n, d_in)."""
        return self.head(_run_continue(self.decoder, self._embed_ids(s1, s2), stream))


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class _HierarchicalEmbedding(nn.Module):
    def __init__(self, s1_bits: int, s2_bits: int, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.emb_s1 = nn.Embedding(2**s1_bits, d_model)
        self.emb_s2 = nn.Embedding(2**s2_bits, d_model)
        self.fusion_proj = nn.Linear(2 * d_model, d_model)

    def forward(self, s1: Tensor, s2: Tensor) -> Tensor:
        scale = math.sqrt(self.d_model)
        return self.fusion_proj(torch.cat((self.emb_s1(s1) * scale, self.emb_s2(s2) * scale), dim=-1))


class _FixedEmbedding(nn.Module):
    """Frozen sinusoid table (upstream ``FixedEmbedding``, used when ``learn_te`` is false)."""

    def __init__(self, size: int, d_model: int) -> None:
        super().__init__()
        pos = torch.arange(size).float()[:, None]
        div = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
        table = torch.zeros(size, d_model)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div)
        self.emb = nn.Embedding(size, d_model)
        self.emb.weight = nn.Parameter(table, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.emb(x)


class _TemporalEmbedding(nn.Module):
    SIZES = {"minute": 60, "hour": 24, "weekday": 7, "day": 32, "month": 13}

    def __init__(self, d_model: int, learn_te: bool) -> None:
        super().__init__()
        make = nn.Embedding if learn_te else _FixedEmbedding
        for name, size in self.SIZES.items():
            setattr(self, f"{name}_embed", make(size, d_model))

    def forward(self, stamp: Tensor) -> Tensor:
        """``stamp`` (..., T, 5): minute, hour, weekday, day, month -> (..., T, d_model)."""
        s = stamp.long()
        return (
            self.hour_embed(s[..., 1]) + self.weekday_embed(s[..., 2]) + self.day_embed(s[..., 3])
            + self.month_embed(s[..., 4]) + self.minute_embed(s[..., 0])
        )


class _CrossAttention(nn.Module):
    """Upstream's cross-attention as used at inference: one query per sequence, so its RoPE
    rotates everything by position 0 (i.e. not at all), and it attends to every position."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = Rotary(self.head_dim)  # only for the checkpoint's inv_freq buffer

    def keys_values(self, hidden: Tensor) -> KV:
        """Hidden states (B, T, d_model) -> keys and values (B, h, T, head_dim)."""
        b, t, _ = hidden.shape
        k = self.k_proj(hidden).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        return k, v

    def attend(self, query: Tensor, prefix: KV, own: KV | None) -> Tensor:
        """``query`` (S, d_model), one per sequence, over shared + own keys -> (S, d_model)."""
        s = query.shape[0]
        q = self.q_proj(query).view(s, self.n_heads, 1, self.head_dim)
        out = _prefixed_attention(q, prefix, own, self.head_dim**-0.5)
        return self.out_proj(out.reshape(s, -1))


class _DependencyAwareLayer(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.cross_attn = _CrossAttention(d_model, DEP_LAYER_HEADS)
        self.norm = RMSNorm(d_model)


class _DualHead(nn.Module):
    def __init__(self, s1_bits: int, s2_bits: int, d_model: int) -> None:
        super().__init__()
        self.proj_s1 = nn.Linear(d_model, 2**s1_bits)
        self.proj_s2 = nn.Linear(d_model, 2**s2_bits)


@dataclass
class _ModelStream:
    """Model state for S sequences sharing a context prefix: the transformer's keys/values plus
    the dependency layer's keys/values of the final hidden states, and each sequence's last one."""

    blocks: _Stream
    dep_prefix: KV
    dep_own: KV | None
    last_hidden: Tensor  # (1 or S, d_model)


class KronosModel(nn.Module):
    """The Kronos decoder: ``(s1, s2)`` ids + calendar stamps -> logits of the next ``s1``/``s2``."""

    def __init__(self, config: KronosModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embedding = _HierarchicalEmbedding(c.s1_bits, c.s2_bits, c.d_model)
        self.time_emb = _TemporalEmbedding(c.d_model, c.learn_te)
        self.transformer = nn.ModuleList(TransformerBlock(c.d_model, c.n_heads, c.ff_dim) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model)
        self.dep_layer = _DependencyAwareLayer(c.d_model)
        self.head = _DualHead(c.s1_bits, c.s2_bits, c.d_model)

    def _inputs(self, s1: Tensor, s2: Tensor, stamp: Tensor) -> Tensor:
        return self.embedding(s1, s2) + self.time_emb(stamp)

    def forward(self, s1: Tensor, s2: Tensor, stamp: Tensor) -> tuple[Tensor, Tensor]:
        """Ids (B, T) and stamps (B, T, 5) -> (s1 logits (B, T, 2**s1_bits), hidden (B, T, d_model)).

        Upstream's ``decode_s1``: ``hidden`` is the final-normed state the s2 head conditions on.
        """
        x = self._inputs(s1, s2, stamp)
        for block in self.transformer:
            x, _ = block(x)
        x = self.norm(x)
        return self.head.proj_s1(x), x

    def s2_logits(self, hidden: Tensor, s1_next: Tensor) -> Tensor:
        """Upstream's ``decode_s2(hidden, s1_next)[:, -1]``: logits (B, 2**s2_bits) of the s2 id of
        the next bar given its s1 id ``s1_next`` (B,) and ``hidden`` (B, T, d_model)."""
        dep = self.dep_layer
        k, v = dep.cross_attn.keys_values(hidden)
        b = hidden.shape[0]
        # Each batch row has its own "prefix": attend row by row through the shared-prefix code.
        attn = torch.cat([
            dep.cross_attn.attend(self.embedding.emb_s1(s1_next[i : i + 1]), (k[i : i + 1], v[i : i + 1]), None)
            for i in range(b)
        ])
        return self.head.proj_s2(dep.norm(hidden[:, -1] + attn))

    # -- prefix-shared decoding ------------------------------------------------------------------

    def start_stream(self, s1: Tensor, s2: Tensor, stamp: Tensor) -> _ModelStream:
        """Run the shared context ids, (P,) with stamps (P, 5) for one window or (W, P) with
        (W, P, 5) for W windows, once."""
        s1, s2, stamp = _windowed(s1, s2, stamp)
        x = self._inputs(s1, s2, stamp)
        x, kvs = _run_prefix(self.transformer, x)
        x = self.norm(x)
        return _ModelStream(
            blocks=_Stream(prefix=kvs),
            dep_prefix=self.dep_layer.cross_attn.keys_values(x),
            dep_own=None,
            last_hidden=x[:, -1],
        )

    def continue_stream(self, stream: _ModelStream, s1: Tensor, s2: Tensor, stamp: Tensor) -> None:
        """Append ids (S, n) to each of S sequences, with stamps (n, 5) shared by all or (S, n, 5)
        per sequence (S / W sequences per window, window-major)."""
        if stamp.dim() == 2:
            stamp = stamp[None].expand(s1.shape[0], -1, -1)
        x = self._inputs(s1, s2, stamp)
        x = self.norm(_run_continue(self.transformer, x, stream.blocks))
        k, v = self.dep_layer.cross_attn.keys_values(x)
        if stream.dep_own is not None:
            k, v = torch.cat((stream.dep_own[0], k), 2), torch.cat((stream.dep_own[1], v), 2)
        stream.dep_own = (k, v)
        stream.last_hidden = x[:, -1]

    def next_s1_logits(self, stream: _ModelStream) -> Tensor:
        """Logits (W or S, 2**s1_bits) of the next s1 id: one row per window before any own
        position, one per sequence after."""
        return self.head.proj_s1(stream.last_hidden)

    def next_s2_logits(self, stream: _ModelStream, s1_next: Tensor) -> Tensor:
        """Logits (S, 2**s2_bits) of the next s2 id given the sampled next s1 ids (S,)."""
        dep = self.dep_layer
        attn = dep.cross_attn.attend(self.embedding.emb_s1(s1_next), stream.dep_prefix, stream.dep_own)
        last = stream.last_hidden
        if last.shape[0] != attn.shape[0]:  # still one row per window: give each sequence its own
            last = last.repeat_interleave(attn.shape[0] // last.shape[0], dim=0)
        return self.head.proj_s2(dep.norm(last + attn))


# --------------------------------------------------------------------------------------------
# Loading and tiny checkpoints
# --------------------------------------------------------------------------------------------


def load_kronos(
    model_source: str | os.PathLike[str],
    tokenizer_source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    tokenizer_revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[KronosModel, KronosTokenizer]:
    """Load a Kronos model and its tokenizer (hub ids or local folders), in eval mode.

    ``dtype`` is the autocast dtype used by :func:`sample_kronos` (bf16/fp16 on CUDA only); weights
    stay float32. Raises ``WeightsError`` for missing files, config keys or mismatched tensors.
    """
    device = torch.device(device or "cpu")
    if dtype not in (None, torch.float32) and device.type != "cuda":
        raise ConfigError(f"dtype={dtype} needs a CUDA device; on {device} only float32 is supported")
    modules: list[nn.Module] = []
    for source, rev, cls, cfg_cls in (
        (model_source, revision, KronosModel, KronosModelConfig),
        (tokenizer_source, tokenizer_revision, KronosTokenizer, KronosTokenizerConfig),
    ):
        folder = resolve_checkpoint(source, revision=rev)
        config = cfg_cls.from_dict(read_config(folder), source=folder / "config.json")
        module = cls(config)
        load_strict(module, read_state_dict(folder), source=source)
        module.autocast_dtype = dtype  # type: ignore[assignment]
        modules.append(module.to(device).eval())
    model, tokenizer = modules
    return model, tokenizer  # type: ignore[return-value]


def tiny_kronos_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_config, tokenizer_config)`` of a tiny Kronos for tests and dry runs."""
    model = dict(s1_bits=4, s2_bits=4, n_layers=2, d_model=32, n_heads=4, ff_dim=64, learn_te=True,
                 ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0, token_dropout_p=0.0)
    tokenizer = dict(d_in=6, d_model=32, n_heads=4, ff_dim=64, n_enc_layers=2, n_dec_layers=2,
                     s1_bits=4, s2_bits=4, group_size=4, beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05,
                     ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0)
    return model, tokenizer


def random_kronos(
    model_config: Mapping[str, Any], tokenizer_config: Mapping[str, Any], *, seed: int = 0
) -> tuple[KronosModel, KronosTokenizer]:
    """Random-init modules (PyTorch default init, seeded) at the given shapes, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = KronosModel(KronosModelConfig.from_dict(model_config))
        tokenizer = KronosTokenizer(KronosTokenizerConfig.from_dict(tokenizer_config))
    return model.eval(), tokenizer.eval()


def write_tiny_kronos(model_folder: Path, tokenizer_folder: Path, *, seed: int = 0,
                      configs: tuple[dict[str, Any], dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write tiny random-init model and tokenizer checkpoints in the official on-disk format
    (``configs``: other ``(model, tokenizer)`` shapes, e.g. a second tiny size)."""
    model_cfg, tok_cfg = configs if configs is not None else tiny_kronos_configs()
    model, tokenizer = random_kronos(model_cfg, tok_cfg, seed=seed)
    save_checkpoint(Path(model_folder), model_cfg, model.state_dict(), tiny=True)
    save_checkpoint(Path(tokenizer_folder), tok_cfg, tokenizer.state_dict(), tiny=True)
    return Path(model_folder), Path(tokenizer_folder)


# --------------------------------------------------------------------------------------------
# Inputs: bars, calendar stamps, normalisation
# --------------------------------------------------------------------------------------------


def complete_bars(ohlc: Tensor, volume: Tensor | None = None, amount: Tensor | None = None) -> Tensor:
    """Six-column bars (..., T, 6) from OHLC (..., T, 4), filling volume/amount as upstream does.

    No volume: volume = amount = 0. Volume without amount: amount = volume * mean(OHLC).
    """
    if volume is None:
        volume = torch.zeros_like(ohlc[..., 0])
        amount = torch.zeros_like(ohlc[..., 0])
    elif amount is None:
        amount = volume * ohlc.mean(-1)
    return torch.cat((ohlc, volume[..., None], amount[..., None]), dim=-1)


def calendar_features(times: Tensor | np.ndarray) -> Tensor:
    """Int64 wall-clock nanoseconds (...,) -> float32 (..., 5): minute, hour, weekday, day, month."""
    ns = np.asarray(times.cpu() if isinstance(times, Tensor) else times, dtype=np.int64)
    idx = pd.DatetimeIndex(ns.reshape(-1).astype("datetime64[ns]"))
    feats = np.stack([idx.minute, idx.hour, idx.day_of_week, idx.day, idx.month], axis=-1)
    return torch.from_numpy(feats.astype(np.float32).reshape(*ns.shape, 5))


def normalize_context(context: Tensor, clip: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-window z-score as upstream's predictor: (x - mean) / (std + 1e-5), clipped to +-clip.

    ``context`` (W, L, 6) -> (normalised float32 (W, L, 6), mean (W, 1, 6), std + 1e-5 (W, 1, 6));
    mean and population std over the L bars, computed in float64.
    """
    x = context.double()
    mean = x.mean(dim=1, keepdim=True)
    scale = x.std(dim=1, keepdim=True, correction=0) + NORM_EPS
    normed = ((x - mean) / scale).clamp(-clip, clip).float()
    return normed, mean, scale


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def _filtered_logits(logits: Tensor, temperatures: Tensor, top_k: int, top_p: float) -> Tensor:
    """Upstream's ``sample_from_logits`` filtering: divide by the temperature, then top-k if
    ``top_k > 0`` (top-p is then ignored, as upstream does) else top-p if ``top_p < 1``."""
    z = logits.float() / temperatures[:, None]
    vocab = z.shape[-1]
    if top_k > 0:
        kth = torch.topk(z, min(top_k, vocab), dim=-1).values[:, -1:]
        return z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        above = torch.softmax(sorted_z, dim=-1).cumsum(-1) > top_p
        # Keep the first token that crosses the threshold (shift right); the top token always stays.
        drop = torch.zeros_like(above)
        drop[:, 1:] = above[:, :-1]
        return z.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return z


def _draw(logits: Tensor, temperatures: Tensor, top_k: int, top_p: float, uniforms: Tensor) -> Tensor:
    """Inverse-CDF sampling: one id (S,) per row of ``logits`` (S, V) from ``uniforms`` (S,) in [0, 1)."""
    probs = torch.softmax(_filtered_logits(logits, temperatures, top_k, top_p), dim=-1)
    cdf = probs.cumsum(-1)
    target = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)
    # right=True skips zero-probability ids (their cdf equals the previous one).
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def _as_1d(values: Any, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(values, dtype=np.float64) if not isinstance(values, Tensor) else values)
    if t.dim() != 1 or t.numel() == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    return t


def sample_kronos(
    model: KronosModel,
    tokenizer: KronosTokenizer,
    context: Tensor,
    context_times: Tensor | np.ndarray,
    target_times: Tensor | np.ndarray,
    *,
    temperatures: Tensor | Sequence[float] | np.ndarray,
    top_p: float,
    top_k: int,
    clip: float,
    seeds: Sequence[int],
    samples_per_batch: int | None = None,
    max_context: int = 512,
    windows_per_call: int | None = None,
) -> Tensor:
    """Draw S sample paths per window, as upstream's ``KronosPredictor`` would, with prefix sharing.

    Args:
        context: (W, L, 6) float bars ``[open, high, low, close, volume, amount]`` of W windows (all
            the same length L; see :func:`complete_bars` for missing volume/amount).
        context_times: (W, L) int64 wall-clock unix nanoseconds of those bars.
        target_times: (W, H) int64 wall-clock unix nanoseconds of the H bars to forecast.
        temperatures: (S,) one temperature per sample path (constant, or a ladder).
        top_p: nucleus threshold, 1.0 = off. top_k: keep the k most likely ids, 0 = off (when on,
            top_p is ignored, as upstream does).
        clip: normalised inputs are clipped to +-clip (upstream's predictor ``clip``).
        seeds: W ints; window i's paths depend only on its inputs and ``seeds[i]``.
        samples_per_batch: how many paths are decoded together (a memory knob; must divide S; the
            result is bit-identical whatever it is on CPU, where chunks under 16 paths are padded
            so BLAS keeps one code path; GPU libraries may round differently per batch size).
            None = all S.
        windows_per_call: how many windows share each model call (a memory knob, like
            ``samples_per_batch``; results do not depend on it). None = all W.
        max_context: upstream's ``max_context``: the model and the final tokenizer decode see at
            most this many latest tokens (the window slides for long horizons). Must be >= H.

    Returns:
        (W, S, H, 6) float32 sampled bars in the input units (denormalised with the window's
        mean and std). Average over S for upstream's ``sample_count`` mean forecast.
    """
    if context.dim() != 3 or context.shape[-1] != 6:
        raise ConfigError(f"context must have shape (W, L, 6), got {tuple(context.shape)}")
    w_count, length, _ = context.shape
    temps = _as_1d(temperatures, "temperatures").float()
    s_count = temps.numel()
    if not bool((temps > 0).all()):
        raise ConfigError(f"temperatures must be > 0, got min {float(temps.min())}")
    ctx_stamps = calendar_features(context_times)
    tgt_stamps = calendar_features(target_times)
    if tuple(ctx_stamps.shape[:2]) != (w_count, length):
        raise ConfigError(f"context_times must have shape {(w_count, length)}, got {tuple(ctx_stamps.shape[:-1])}")
    if tgt_stamps.dim() != 3 or tgt_stamps.shape[0] != w_count or tgt_stamps.shape[1] < 1:
        raise ConfigError(f"target_times must have shape ({w_count}, H >= 1), got {tuple(tgt_stamps.shape[:-1])}")
    horizon = tgt_stamps.shape[1]
    if len(seeds) != w_count:
        raise ConfigError(f"seeds has {len(seeds)} values, expected one per window ({w_count})")
    chunk = s_count if samples_per_batch is None else int(samples_per_batch)
    if chunk < 1 or s_count % chunk:
        raise ConfigError(f"samples_per_batch={samples_per_batch} must be a positive divisor of the sample count {s_count}")
    if not 0 < top_p <= 1 or top_k < 0:
        raise ConfigError(f"top_p={top_p} must be in (0, 1] and top_k={top_k} >= 0")
    if clip <= 0:
        raise ConfigError(f"clip={clip} must be > 0")
    if max_context < horizon:
        raise ConfigError(f"max_context={max_context} must be >= the horizon {horizon}")

    per_call = w_count if windows_per_call is None else int(windows_per_call)
    if per_call < 1:
        raise ConfigError(f"windows_per_call={windows_per_call} must be >= 1")

    device = next(model.parameters()).device
    autocast_dtype = getattr(model, "autocast_dtype", None)
    normed, mean, scale = normalize_context(context.cpu(), clip)
    # Each window's uniforms come from its own seed, so its paths do not depend on which
    # windows share its model call.
    uniforms = torch.stack([torch.rand(s_count, horizon, 2, generator=torch.Generator().manual_seed(int(seed)))
                            for seed in seeds])  # per window, sample, step, level
    stamps = torch.cat((ctx_stamps, tgt_stamps), dim=1)
    out = torch.empty(w_count, s_count, horizon, 6)
    # load_kronos only sets autocast_dtype on CUDA; tests set it on CPU to run this same path.
    use_autocast = autocast_dtype not in (None, torch.float32)
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if use_autocast else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for lo in range(0, w_count, per_call):
            hi = min(w_count, lo + per_call)
            normed_paths = _sample_windows(
                model, tokenizer, normed[lo:hi].to(device), stamps[lo:hi].to(device), temps.to(device),
                uniforms[lo:hi].to(device), top_k=int(top_k), top_p=float(top_p), chunk=chunk,
                max_context=max_context,
            )
            out[lo:hi] = (normed_paths.double().cpu() * scale[lo:hi, None] + mean[lo:hi, None]).float()
    return out


def _sample_windows(
    model: KronosModel,
    tokenizer: KronosTokenizer,
    x: Tensor,
    stamps: Tensor,
    temps: Tensor,
    uniforms: Tensor,
    *,
    top_k: int,
    top_p: float,
    chunk: int,
    max_context: int,
) -> Tensor:
    """W windows at once: ``x`` (W, L, 6) normalised contexts, ``stamps`` (W, L + H, 5), ``temps``
    (S,), ``uniforms`` (W, S, H, 2) -> (W, S, H, 6) normalised sampled bars. Model calls hold
    every window's rows (window-major), so W windows cost one pass per step instead of W."""
    w_count, length = x.shape[:2]
    horizon = uniforms.shape[2]
    ctx_s1, ctx_s2 = tokenizer.encode(x)
    # Shared work is cached per window start, so every chunk of paths reuses the same tensors.
    model_prefixes: dict[int, _ModelStream] = {}

    def model_prefix(start: int) -> _ModelStream:
        if start not in model_prefixes:
            model_prefixes[start] = model.start_stream(ctx_s1[:, start:], ctx_s2[:, start:], stamps[:, start:length])
        return model_prefixes[start]

    dec_start = max(0, length + horizon - max_context)
    dec_prefix = tokenizer.decode_prefix(ctx_s1[:, dec_start:], ctx_s2[:, dec_start:])
    out = []
    for lo in range(0, temps.numel(), chunk):
        rows = torch.arange(lo, lo + chunk, device=temps.device)
        if chunk < MIN_SAMPLE_ROWS:  # pad with copies of the last row (see MIN_SAMPLE_ROWS)
            rows = torch.cat((rows, rows[-1:].expand(MIN_SAMPLE_ROWS - chunk)))
        n = rows.numel()
        t = temps[rows].repeat(w_count)  # row b * n + j: window b, path rows[j]
        u = uniforms[:, rows].reshape(w_count * n, horizon, 2)
        own_stamps = stamps[:, length:].repeat_interleave(n, dim=0)  # (W * n, H, 5)
        gen_s1 = torch.empty(w_count * n, horizon, dtype=torch.long, device=t.device)
        gen_s2 = torch.empty_like(gen_s1)
        stream, built_from = None, -1
        for i in range(horizon):
            start = max(0, length + i - max_context)
            if start != built_from:
                # First step, or the window slid: the shared part changed, redo own positions too.
                base = model_prefix(start)
                stream = _ModelStream(_Stream(prefix=base.blocks.prefix), base.dep_prefix, None, base.last_hidden)
                if i > 0:
                    model.continue_stream(stream, gen_s1[:, :i], gen_s2[:, :i], own_stamps[:, :i])
                built_from = start
            else:
                model.continue_stream(stream, gen_s1[:, i - 1 : i], gen_s2[:, i - 1 : i], own_stamps[:, i - 1 : i])
            s1_logits = model.next_s1_logits(stream)
            if s1_logits.shape[0] != t.numel():  # one row per window before any own position
                s1_logits = s1_logits.repeat_interleave(n, dim=0)
            gen_s1[:, i] = _draw(s1_logits, t, top_k, top_p, u[:, i, 0])
            s2_logits = model.next_s2_logits(stream, gen_s1[:, i])
            gen_s2[:, i] = _draw(s2_logits, t, top_k, top_p, u[:, i, 1])
        decoder = _Stream(prefix=dec_prefix.prefix)
        decoded = tokenizer.decode_continue(decoder, gen_s1, gen_s2).view(w_count, n, horizon, -1)
        out.append(decoded[:, :chunk].float())
    return torch.cat(out, dim=1)
