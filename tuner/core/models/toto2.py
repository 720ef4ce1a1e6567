"""Inference-only Toto 2.0 (Datadog ``Toto-2.0-4m`` … ``-2.5B``): nine quantiles of the next bars.

The network matches upstream ``toto-2`` (``toto2.model.Toto2Model``) parameter for parameter: the
same state-dict keys and the same maths, so the official ``config.json`` + ``model.safetensors``
load unchanged. Upstream is never imported here. The pieces, in data order:

* a causal patch std scaler (Welford, float64), then ``asinh`` of the scaled values;
* a residual-MLP patch embedding of ``[scaled values, unobserved flags]`` per patch;
* a u-μP transformer: linear layers scale their output by ``1/sqrt(fan_in)`` (the readout by
  ``1/fan_in``), attention by ``1/head_dim``, residual branches are mixed with τ weights stored in
  the checkpoint (``attn_tau``, ``mlp_tau``); time layers are causal with rotary (+ xPos)
  embeddings on the first half of each head, variate layers are bidirectional over variates;
* a residual-MLP head giving, for every patch position, the nine quantiles ``0.1 … 0.9`` of the
  next patch in ``asinh`` units; ``sinh``, unscaled and sorted they are prices.

How it differs from upstream's ``Toto2Model.forecast`` (with ``decode_block_size=None``, the
single pass its leaderboard results use), never what:

* many windows (one series each) go through one forward pass;
* causal attention means the masked future tokens upstream appends after the context never change
  the outputs that are read, so we append only those whose outputs are read (none for a horizon
  within one patch); the results agree to float rounding (``tests/models/test_toto2_parity.py``);
* the attention mask is built only when a context patch is wholly unobserved (else plain causal).

Block decoding with its KV cache (upstream's ``decode_block_size``, for horizons ≳ 1000 steps) is
not implemented: a horizon of more than :data:`MAX_PATCHES_AHEAD` patches is refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuner.core.errors import ConfigError, DataError, WeightsError
from tuner.core.models.checkpoint import (
    CONFIG_FILE,
    bad_key,
    check_positive,
    load_strict,
    read_config,
    read_state_dict,
    resolve_checkpoint,
    save_checkpoint,
)

QUANTILE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The levels of the nine quantiles every Toto 2.0 checkpoint outputs (upstream's fixed knots)."""
MEDIAN_INDEX = QUANTILE_LEVELS.index(0.5)
MAX_PATCHES_AHEAD = 32
"""Longest horizon served in one pass, in patches (beyond it upstream decodes in blocks)."""

_MIN_SCALE = 1e-6  # upstream PatchedCausalStdScaler default
_ROPE_BASE = 10000.0
_ROPE_MAX_LEN = 8192  # upstream's table size: positions beyond it do not exist there either
_XPOS_SCALE_BASE = 256.0
_SOFTPLUS_SCALE = 0.52103  # unit-scaled softplus / per-dim-scale constants (they cancel)
# unit_scaling's silu forward scale at mult=1: a log-interpolation between 2 and sqrt(2/(1-1/pi)).
_U_SILU_SCALE = math.exp(0.8 * math.log((2 / (1 - 1 / math.pi)) ** 0.5) + 0.2 * math.log(2.0))


# --------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class Toto2Config:
    """Architecture of a Toto 2.0 checkpoint, from its official ``config.json`` (upstream's
    ``Toto2ModelConfig`` keys and defaults; derived sizes filled in as upstream fills them)."""

    patch_size: int
    d_model: int
    num_heads: int
    num_layers: int
    layer_group_size: int
    num_variate_layers_per_group: int
    variate_layer_first: bool
    residual_attn_ratio: float
    d_ff: int
    qk_dim: int
    v_dim: int
    num_groups: int
    norm_eps: float = 5e-5
    attn_bias: bool = False
    mlp_bias: bool = False
    residual_mult: float = 1.0
    qk_norm: bool = True
    norm_include_weight: bool = False
    qk_norm_include_weight: bool = False
    per_dim_scale: bool = False
    use_xpos: bool = False

    _REQUIRED = ("patch_size", "d_model", "num_heads", "num_layers", "layer_group_size",
                 "num_variate_layers_per_group", "variate_layer_first", "residual_attn_ratio")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: object = CONFIG_FILE) -> Toto2Config:
        """Build from official ``config.json`` keys; unknown keys are ignored.

        Raises:
            WeightsError: a required key is missing, a value has the wrong type, or a setting
                inference cannot honour (non-zero dropout, several output patches); names the
                key and ``source``.
        """
        for key in cls._REQUIRED:
            if raw.get(key) is None:
                raise WeightsError(f"{source}: Toto 2.0 config lacks required key {key!r}")
        if float(raw.get("dropout_p", 0.0) or 0.0) != 0.0:
            raise WeightsError(f"{source}: key 'dropout_p' = {raw['dropout_p']!r}: must be 0")
        if int(raw.get("num_output_patches", 1) or 1) != 1:
            raise WeightsError(f"{source}: key 'num_output_patches' = {raw['num_output_patches']!r}: "
                               "only 1 is supported (as upstream's forecast)")
        try:
            d_model, heads = int(raw["d_model"]), int(raw["num_heads"])
            qk_dim = int(raw.get("qk_dim") or (d_model // heads if heads else 0))
            norm_weight = bool(raw.get("norm_include_weight", False))
            qk_weight = raw.get("qk_norm_include_weight")
            config = cls(
                patch_size=int(raw["patch_size"]), d_model=d_model, num_heads=heads,
                num_layers=int(raw["num_layers"]), layer_group_size=int(raw["layer_group_size"]),
                num_variate_layers_per_group=int(raw["num_variate_layers_per_group"]),
                variate_layer_first=bool(raw["variate_layer_first"]),
                residual_attn_ratio=float(raw["residual_attn_ratio"]),
                d_ff=int(raw.get("d_ff") or (int(4 * d_model * 2 / 3) + 7) // 8 * 8),
                qk_dim=qk_dim, v_dim=int(raw.get("v_dim") or qk_dim),
                num_groups=int(raw.get("num_groups") or heads),
                norm_eps=float(raw.get("norm_eps", 5e-5)),
                attn_bias=bool(raw.get("attn_bias", False)), mlp_bias=bool(raw.get("mlp_bias", False)),
                residual_mult=float(raw.get("residual_mult", 1.0)),
                qk_norm=bool(raw.get("qk_norm", True)), norm_include_weight=norm_weight,
                qk_norm_include_weight=norm_weight if qk_weight is None else bool(qk_weight),
                per_dim_scale=bool(raw.get("per_dim_scale", False)),
                use_xpos=bool(raw.get("use_xpos", False)),
            )
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise WeightsError(f"{source}: Toto 2.0 config has a value of the wrong type: {e}") from e
        config._check(source)
        return config

    def _check(self, source: object) -> None:
        def bad(key: str, why: str) -> WeightsError:
            return bad_key(source, self, key, why)

        check_positive(source, self, ("patch_size", "d_model", "num_heads", "num_layers", "layer_group_size",
                                      "d_ff", "qk_dim", "v_dim", "num_groups"))
        if self.d_model % self.num_heads:
            raise bad("d_model", f"must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_groups:
            raise bad("num_groups", f"must divide num_heads ({self.num_heads})")
        if self.num_layers % self.layer_group_size:
            raise bad("num_layers", f"must be divisible by layer_group_size ({self.layer_group_size})")
        if self.qk_dim % 4:
            raise bad("qk_dim", "must be a multiple of 4 (rotary embeddings on half of each head)")
        if not 0 <= self.num_variate_layers_per_group <= self.layer_group_size:
            raise bad("num_variate_layers_per_group", f"must be in [0, {self.layer_group_size}]")

    def to_dict(self) -> dict[str, Any]:
        """The official ``config.json`` key names and values (upstream's constructor accepts them)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**out, "dropout_p": 0.0, "num_output_patches": 1, "pre_norm": True}

    def is_variate_layer(self, index: int) -> bool:
        """Whether layer ``index`` attends over variates (else over time), as upstream lays them out."""
        position = index % self.layer_group_size
        if self.variate_layer_first:
            return position < self.num_variate_layers_per_group
        return position >= self.layer_group_size - self.num_variate_layers_per_group


def residual_attn_ratio(context_length: int, patch_size: int) -> float:
    """Upstream's ``compute_residual_attn_ratio``: ``sqrt(S / log S)``, ``S`` patches of context."""
    s = context_length / patch_size
    return math.sqrt(s / math.log(s))


_SHARED = {
    "patch_size": 32, "layer_group_size": 4, "num_variate_layers_per_group": 1,
    "variate_layer_first": False, "norm_eps": 1e-4, "attn_bias": True, "mlp_bias": False,
    "qk_norm": False, "norm_include_weight": False, "per_dim_scale": True, "use_xpos": True,
    "residual_mult": 0.75, "residual_attn_ratio": residual_attn_ratio(4096, 32),
}

CHECKPOINTS = {
    "4m": "Datadog/Toto-2.0-4m",
    "22m": "Datadog/Toto-2.0-22m",
    "313m": "Datadog/Toto-2.0-313m",
    "1B": "Datadog/Toto-2.0-1B",
    "2.5B": "Datadog/Toto-2.0-2.5B",
}
"""The published checkpoints by size name (hub ids)."""


def size_config(size: str) -> dict[str, Any]:
    """``config.json`` of a published size, for benchmarks and tests at full shape.

    ``4m`` is the published config (d_model 256, 4 layers of 4 heads of 64, d_ff 688, u-μP
    residuals 0.75 / sqrt(128/log 128), xPos, per-dim scale, attention bias). The hub cannot be
    reached from here, so ``22m`` and ``313m`` are the 4m's settings at the widths and depths that
    give their parameter counts with 64-wide heads and groups of 4 layers (22.9M: d_model 384, 12
    layers; 312.6M: d_model 1024, 24 layers); the real files may differ in shape, never in kind.
    """
    shapes = {"4m": (256, 4, 4), "22m": (384, 6, 12), "313m": (1024, 16, 24)}
    if size not in shapes:
        raise ConfigError(f"size {size!r}: known full-size shapes are {', '.join(shapes)}")
    d_model, heads, layers = shapes[size]
    return {**_SHARED, "d_model": d_model, "num_heads": heads, "num_layers": layers,
            "qk_dim": 64, "v_dim": 64, "num_groups": heads,
            "d_ff": (int(4 * d_model * 2 / 3) + 7) // 8 * 8}


def tiny_toto2_config() -> dict[str, Any]:
    """A tiny architecture with the official keys and the published kinds of layers."""
    return {**_SHARED, "patch_size": 8, "d_model": 32, "num_heads": 2, "num_layers": 2,
            "layer_group_size": 2, "qk_dim": 16, "v_dim": 16, "num_groups": 2, "d_ff": 48}


# --------------------------------------------------------------------------------------------
# Network (module names mirror upstream so state-dict keys match)


class _Linear(nn.Linear):
    """u-μP linear: ``(x W^T + b) / fan_in ** power`` (power 0.5 hidden, 1 readout)."""

    def __init__(self, fan_in: int, fan_out: int, bias: bool, readout: bool = False) -> None:
        super().__init__(fan_in, fan_out, bias=bias)
        self.output_scale = 1.0 / fan_in ** (1.0 if readout else 0.5)

    def reset_parameters(self) -> None:  # upstream's unit init, so random-init tests mean something
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_scale * F.linear(x, self.weight, self.bias)


def _rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None) -> torch.Tensor:
    rms = (x.float().pow(2).mean(-1, keepdim=True) + eps).sqrt().to(x.dtype)
    out = x / rms
    return out * weight if weight is not None else out


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, weight: bool) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if weight else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _rms_norm(x, self.eps, self.weight)


def _residual_add(residual: torch.Tensor, skip: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """u-μP τ-weighted residual: ``(τ r + s) / sqrt(1 + τ²)`` (its backward split is not needed)."""
    denom = (1 + tau**2) ** 0.5
    return (tau / denom) * residual + (1 / denom) * skip


class _ResidualMLP(nn.Module):
    """Upstream's Input/OutputResidualMLP: ``residual_add(linear2(u_silu(linear1 x)), skip_proj x, 1)``."""

    def __init__(self, fan_in: int, hidden: int, fan_out: int, readout: bool) -> None:
        super().__init__()
        self.linear1 = _Linear(fan_in, hidden, bias=True)
        self.linear2 = _Linear(hidden, fan_out, bias=True, readout=readout)
        self.skip_proj = _Linear(fan_in, fan_out, bias=True, readout=readout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = _U_SILU_SCALE * F.silu(self.linear1(x))
        return _residual_add(self.linear2(hidden), self.skip_proj(x), 1.0)


class _PerDimScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.per_dim_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = (F.softplus(self.per_dim_scale) * (1.0 / _SOFTPLUS_SCALE) / math.log(2.0)).to(x.dtype)
        return _SOFTPLUS_SCALE * (x * factor)


class _Rotary(nn.Module):
    """Interleaved rotary embedding of the first half of each head, with optional xPos scaling
    (queries by ``s ** ((p - c) / 256)``, keys by its inverse, ``c`` the middle position)."""

    def __init__(self, head_dim: int, xpos: bool) -> None:
        super().__init__()
        width = head_dim // 2
        self.width = width
        self.xpos = xpos
        theta = 1.0 / torch.pow(_ROPE_BASE, torch.arange(0, width, 2, dtype=torch.float) / width)
        self.register_buffer("theta", theta, persistent=False)
        base = (torch.arange(0, width, 2).float() + 0.4 * width) / (1.4 * width)
        self.register_buffer("xpos_base", base, persistent=False)

    @staticmethod
    def _rotate(x: torch.Tensor) -> torch.Tensor:
        return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (N, H, S, head_dim); positions 0..S-1."""
        seq = q.shape[-2]
        if seq > _ROPE_MAX_LEN:
            raise DataError(f"{seq} patches exceed the rotary table of {_ROPE_MAX_LEN} (as upstream)")
        position = torch.arange(seq, device=q.device, dtype=self.theta.dtype)
        angles = (position[:, None] * self.theta).repeat_interleave(2, -1)
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        qr, kr = q[..., : self.width], k[..., : self.width]
        qr = cos * qr + sin * self._rotate(qr)
        kr = cos * kr + sin * self._rotate(kr)
        if self.xpos:
            centre = (seq - 1 + 1) // 2
            power = (position - centre) / _XPOS_SCALE_BASE
            scale = (self.xpos_base ** power[:, None]).repeat_interleave(2, -1)
            qr = qr * scale.to(q.dtype)
            kr = kr * (scale**-1.0).to(q.dtype)
        return torch.cat((qr, q[..., self.width :]), -1), torch.cat((kr, k[..., self.width :]), -1)


class _Attention(nn.Module):
    def __init__(self, config: Toto2Config, variate: bool) -> None:
        super().__init__()
        c = config
        self.variate = variate
        self.heads, self.groups, self.qk_dim, self.v_dim = c.num_heads, c.num_groups, c.qk_dim, c.v_dim
        self.q_norm = self.k_norm = None
        if c.qk_norm:
            self.q_norm = _RMSNorm(c.qk_dim, c.norm_eps, c.qk_norm_include_weight)
            self.k_norm = _RMSNorm(c.qk_dim, c.norm_eps, c.qk_norm_include_weight)
        self.split = [c.qk_dim * c.num_heads, c.qk_dim * c.num_groups, c.v_dim * c.num_groups]
        self.in_proj = _Linear(c.d_model, sum(self.split), bias=c.attn_bias)
        self.out_proj = _Linear(c.v_dim * c.num_heads, c.d_model, bias=c.attn_bias)
        self._pds = _PerDimScale(c.qk_dim) if c.per_dim_scale else None
        self.rotary = None if variate else _Rotary(c.qk_dim, c.use_xpos)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (N, S, D); ``mask`` additive (N, 1, S, S) or None (causal over time, full over variates)."""
        n, s, _ = x.shape
        q, k, v = torch.split(self.in_proj(x), self.split, dim=-1)
        q = q.view(n, s, self.heads, self.qk_dim).transpose(1, 2)
        k = k.view(n, s, self.groups, self.qk_dim).transpose(1, 2)
        v = v.view(n, s, self.groups, self.v_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self._pds is not None:
            q = self._pds(q)
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None and not self.variate,
            scale=1.0 / self.qk_dim, enable_gqa=self.heads != self.groups)
        return self.out_proj(out.transpose(1, 2).reshape(n, s, -1))


class _FeedForward(nn.Module):
    def __init__(self, config: Toto2Config) -> None:
        super().__init__()
        self.fc1 = _Linear(config.d_model, 2 * config.d_ff, bias=config.mlp_bias)
        self.fc2 = _Linear(config.d_ff, config.d_model, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)  # upstream: gate * silu(second half)
        return self.fc2(gate * F.silu(value))


class _Layer(nn.Module):
    def __init__(self, config: Toto2Config, index: int) -> None:
        super().__init__()
        c = config
        self.variate = c.is_variate_layer(index)
        self.attn = _Attention(c, self.variate)
        self.ffn = _FeedForward(c)
        self.norm1 = _RMSNorm(c.d_model, c.norm_eps, c.norm_include_weight)
        self.norm2 = _RMSNorm(c.d_model, c.norm_eps, c.norm_include_weight)
        # τ of upstream's transformer_residual_scaling_rule; the checkpoint's values are loaded over them.
        alpha_mlp = c.residual_mult * (2 / (1 + c.residual_attn_ratio**2)) ** 0.5
        alpha_attn = c.residual_attn_ratio * alpha_mlp

        def tau(i: int, depth: int) -> float:
            alpha = alpha_attn if i % 2 == 0 else alpha_mlp
            return alpha / (depth / 2 + (i + 1) // 2 * alpha_attn**2 + i // 2 * alpha_mlp**2) ** 0.5

        self.register_buffer("attn_tau", torch.tensor(tau(2 * index, 2 * c.num_layers)))
        self.register_buffer("mlp_tau", torch.tensor(tau(2 * index + 1, 2 * c.num_layers)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = _residual_add(self.attn(self.norm1(x), mask), x, self.attn_tau)
        return _residual_add(self.ffn(self.norm2(x)), x, self.mlp_tau)


class _Transformer(nn.Module):
    def __init__(self, config: Toto2Config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(config, i) for i in range(config.num_layers))
        self.out_norm = _RMSNorm(config.d_model, config.norm_eps, config.norm_include_weight)

    def forward(self, x: torch.Tensor, time_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, V, S, D) tokens; ``time_mask`` additive (B*V, 1, S, S) or None (plain causal)."""
        b, v, s, d = x.shape
        state = x.reshape(b * v, s, d)
        for layer in self.layers:
            if layer.variate:  # attend across the V series at each time position
                state = state.view(b, v, s, d).transpose(1, 2).reshape(b * s, v, d)
                state = layer(state, None).view(b, s, v, d).transpose(1, 2).reshape(b * v, s, d)
            else:
                state = layer(state, time_mask)
        return self.out_norm(state.view(b, v, s, d))


class _ParamProjection(nn.Module):
    def __init__(self, config: Toto2Config) -> None:
        super().__init__()
        self.proj = _ResidualMLP(config.d_model, 4 * config.d_model,
                                 config.patch_size * len(QUANTILE_LEVELS), readout=True)


class _OutputHead(nn.Module):
    def __init__(self, config: Toto2Config) -> None:
        super().__init__()
        self.param_projection = _ParamProjection(config)


def _causal_patch_stats(series: torch.Tensor, observed: torch.Tensor, patch: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's ``PatchedCausalStdScaler``: per patch, the mean and Bessel-corrected std of all
    observed values up to the patch's last step (float64), floored at 1e-6. Shapes (..., T) →
    (..., T / patch), in ``series`` dtype."""
    x = series.double()
    w = observed
    den = w.cumsum(-1).clamp_min(1)
    mean = (x * w).cumsum(-1) / den
    previous = torch.cat((torch.zeros_like(mean[..., :1]), mean[..., :-1]), -1)
    m2 = ((x - previous) * (x - mean) * w).cumsum(-1)
    std = torch.sqrt(m2 / (den - 1).clamp(min=1)).clamp(min=_MIN_SCALE)
    return mean[..., patch - 1 :: patch].to(series.dtype), std[..., patch - 1 :: patch].to(series.dtype)


class Toto2Model(nn.Module):
    """Toto 2.0 for inference. Its state dict equals upstream ``Toto2Model``'s."""

    def __init__(self, config: Toto2Config) -> None:
        super().__init__()
        self.config = config
        self.patch_proj = _ResidualMLP(2 * config.patch_size, 4 * config.d_model, config.d_model, readout=False)
        self.transformer = _Transformer(config)
        self.output_head = _OutputHead(config)

    @property
    def device(self) -> torch.device:
        return self.patch_proj.linear1.weight.device

    def _embed(self, scaled: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        values = scaled.unflatten(-1, (-1, p))
        missing = (~observed).to(scaled.dtype).unflatten(-1, (-1, p))
        return self.patch_proj(torch.cat((values, missing), -1))

    def forward(self, series: torch.Tensor, observed: torch.Tensor, horizon: int) -> torch.Tensor:
        """Quantiles of the next ``horizon`` steps of each series, in price units.

        Args:
            series: (B, V, T) float32, T a multiple of ``patch_size``; unobserved values (left
                padding) anywhere, flagged in ``observed``.
            observed: (B, V, T) bool. As upstream, the last patch counts as observed whatever it says.
            horizon: steps ahead, 1 .. ``MAX_PATCHES_AHEAD * patch_size``.

        Returns:
            (9, B, V, horizon) float32, sorted along the first axis (levels :data:`QUANTILE_LEVELS`).
        """
        p = self.config.patch_size
        ahead = -(-horizon // p)
        if horizon < 1 or ahead > MAX_PATCHES_AHEAD:
            raise ConfigError(f"horizon {horizon}: must be in [1, {MAX_PATCHES_AHEAD * p}] "
                              "(block decoding for longer horizons is not implemented)")
        if series.shape[-1] % p or series.shape[-1] == 0:
            raise DataError(f"series length {series.shape[-1]} is not a positive multiple of the patch {p}")
        observed = observed.clone()
        observed[..., -p:] = True
        loc, scale = _causal_patch_stats(series, observed, p)  # (B, V, N)
        step_loc, step_scale = loc.repeat_interleave(p, -1), scale.repeat_interleave(p, -1)
        scaled = torch.where(observed, (series - step_loc) / step_scale, torch.zeros_like(series)).asinh()
        tokens = self._embed(scaled, observed)  # (B, V, N, D)
        if ahead > 1:  # masked future tokens whose outputs predict patches 2..ahead
            future = torch.zeros(*series.shape[:-1], (ahead - 1) * p, dtype=series.dtype, device=series.device)
            tokens = torch.cat((tokens, self._embed(future, future.bool())), -2)
        unseen = observed.unflatten(-1, (-1, p)).sum(-1) == 0  # (B, V, N) wholly unobserved patches
        mask = None
        if bool(unseen.any()):  # such patches see only each other, as upstream's group ids -1
            b, v, n = unseen.shape
            if v > 1:
                raise DataError("wholly unobserved patches are supported for one series per window only")
            unseen = torch.cat((unseen, unseen.new_zeros(b, v, ahead - 1)), -1).reshape(b * v, 1, -1)
            same = unseen[..., :, None] == unseen[..., None, :]
            causal = torch.ones(same.shape[-1], same.shape[-1], dtype=torch.bool, device=same.device).tril()
            mask = torch.zeros(same.shape, dtype=tokens.dtype, device=tokens.device)
            mask.masked_fill_(~(same & causal), float("-inf"))
        # The outputs read: the last context token's (next patch), then the masked tokens' but the last.
        hidden = self.transformer(tokens, mask)[..., -ahead:, :]
        raw = self.output_head.param_projection.proj(hidden)  # (B, V, ahead, P*9)
        q = raw.unflatten(-1, (p, len(QUANTILE_LEVELS))).movedim(-1, 0)  # (9, B, V, ahead, P)
        last_loc, last_scale = loc[..., -1:, None], scale[..., -1:, None]  # future patches: context stats
        prices = _finite(q.sinh() * last_scale + last_loc)
        prices = prices.sort(dim=0).values
        return prices.flatten(-2)[..., :horizon]


def _finite(values: torch.Tensor) -> torch.Tensor:
    """Upstream's ``_clamp_nonfinite``: ±inf become the largest/smallest finite value of the patch."""
    top = torch.where(values.isfinite(), values, -torch.inf).amax(-1, keepdim=True)
    bottom = torch.where(values.isfinite(), values, torch.inf).amin(-1, keepdim=True)
    return torch.where(values == torch.inf, top, torch.where(values == -torch.inf, bottom, values))


# --------------------------------------------------------------------------------------------
# Loading, tiny checkpoints, forecasting


def load_toto2(source: str | os.PathLike[str], *, revision: str | None = None,
               device: str | torch.device | None = None) -> Toto2Model:
    """Load a Toto 2.0 checkpoint (hub id or local folder) in eval mode with gradients off.

    Raises:
        WeightsError: missing files, config keys, or mismatched/missing tensors (named).
    """
    folder = resolve_checkpoint(source, revision=revision)
    config = Toto2Config.from_dict(read_config(folder), source=folder / CONFIG_FILE)
    model = Toto2Model(config)
    load_strict(model, read_state_dict(folder), source=source)
    return model.to(torch.device(device) if device is not None else "cpu").eval().requires_grad_(False)


def write_tiny_toto2(folder: str | os.PathLike[str], *, seed: int = 0,
                     config: Mapping[str, Any] | None = None) -> Path:
    """Write a random-init checkpoint (official file layout; tiny unless ``config`` says otherwise)."""
    raw = dict(config) if config is not None else tiny_toto2_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Toto2Model(Toto2Config.from_dict(raw))
    return save_checkpoint(Path(folder), Toto2Config.from_dict(raw).to_dict(), model.state_dict(), tiny=True)


def forecast_toto2(model: Toto2Model, context: torch.Tensor, *, horizon: int) -> torch.Tensor:
    """Nine quantiles of the next ``horizon`` closes of W windows, one forward pass for all.

    Args:
        context: (W, L) close prices, finite; a length that is not a multiple of the patch is
            left-padded and flagged unobserved (as upstream's callers pad).

    Returns:
        (W, 9, horizon) float32 prices on the model's device, sorted along the quantile axis.

    Raises:
        DataError: context not 2-D, empty, or not finite.
        ConfigError: a horizon beyond one pass.
    """
    if context.ndim != 2 or 0 in context.shape:
        raise DataError(f"context has shape {tuple(context.shape)}; expected (windows, length) both >= 1")
    if not torch.isfinite(context).all():
        raise DataError("context holds NaN or infinite closes; Toto 2.0 needs finite prices")
    p = model.config.patch_size
    w, length = context.shape
    padded = -(-length // p) * p
    series = torch.zeros(w, 1, padded, dtype=torch.float32, device=model.device)
    series[..., padded - length :] = context.to(device=model.device, dtype=torch.float32)[:, None]
    observed = torch.zeros(w, 1, padded, dtype=torch.bool, device=model.device)
    observed[..., padded - length :] = True
    with torch.inference_mode():
        return model(series, observed, horizon)[:, :, 0].transpose(0, 1)
