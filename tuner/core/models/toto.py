"""Inference-only Toto (Datadog ``Toto-Open-Base-1.0``) and a fast sampler of future closes.

The network matches upstream ``toto-ts`` parameter for parameter (same state-dict keys, same maths:
causal patch std-mean scaler, patch embedding, causal time-wise and bidirectional space-wise
attention with xPos rotary embeddings, RMSNorm, SwiGLU MLPs, Student-T mixture head), so official
checkpoints load unchanged. Upstream is never imported here.

Sampling differs from upstream's ``TotoForecaster`` in how, not in what, it draws:

* The context is run once per window. For ``horizon <= patch_size`` that one forward pass gives the
  distribution of the whole next patch, and all samples are drawn from it (upstream repeats the
  context once per sample and reruns the model for every chunk of samples).
* Longer horizons go patch by patch like upstream, every sample path carried along; the first
  patch still comes from the shared forward pass. Each step recomputes the full sequence (no KV
  cache), which is what the model saw in training.
* Random numbers come from a counter-based hash of ``(seed, sample index, future step, slot)``,
  not from a stateful generator. So a window's samples depend only on its context and seed, and
  ``samples_per_batch`` (a memory knob) cannot change them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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

SCALER_CAUSAL_PATCH = "<class 'model.scaler.CausalPatchStdMeanScaler'>"
OUTPUT_STUDENT_T_MIXTURE = "<class 'model.distribution.MixtureOfStudentTsOutput'>"

_MIN_SCALE = 0.1  # upstream CausalPatchStdMeanScaler default
_RMS_EPS = 1e-8  # upstream RMSNorm default
_ROPE_THETA = 10000.0  # rotary-embedding-torch defaults, as upstream constructs it
_XPOS_SCALE_BASE = 512.0


# --------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class TotoConfig:
    """Architecture of a Toto checkpoint, read from its official ``config.json``."""

    patch_size: int
    stride: int
    embed_dim: int
    num_layers: int
    num_heads: int
    mlp_hidden_dim: int
    spacewise_every_n_layers: int
    k_components: int
    spacewise_first: bool = True
    stabilize_with_global: bool = True
    scale_factor_exponent: float = 10.0
    dropout: float = 0.0  # kept for round trips; inference never drops out

    _REQUIRED = (
        "patch_size",
        "stride",
        "embed_dim",
        "num_layers",
        "num_heads",
        "mlp_hidden_dim",
        "spacewise_every_n_layers",
        "scaler_cls",
        "output_distribution_classes",
    )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: object = CONFIG_FILE) -> TotoConfig:
        """Build from official ``config.json`` keys; unknown keys are ignored.

        Raises:
            WeightsError: a required key is missing, or a value is not supported (names both the
                key and ``source``).
        """
        for key in cls._REQUIRED:
            if key not in raw:
                raise WeightsError(f"{source}: Toto config lacks required key {key!r}")
        if raw["scaler_cls"] != SCALER_CAUSAL_PATCH:
            raise WeightsError(
                f"{source}: key 'scaler_cls' is {raw['scaler_cls']!r}; only "
                f"{SCALER_CAUSAL_PATCH!r} is supported"
            )
        outputs = list(raw["output_distribution_classes"])
        if outputs[:1] != [OUTPUT_STUDENT_T_MIXTURE]:
            raise WeightsError(
                f"{source}: key 'output_distribution_classes' is {outputs!r}; only "
                f"[{OUTPUT_STUDENT_T_MIXTURE!r}] is supported"
            )
        kwargs = raw.get("output_distribution_kwargs") or {}
        if "k_components" not in kwargs:
            raise WeightsError(
                f"{source}: Toto config lacks required key 'output_distribution_kwargs.k_components'"
            )
        try:
            config = cls(
                patch_size=int(raw["patch_size"]),
                stride=int(raw["stride"]),
                embed_dim=int(raw["embed_dim"]),
                num_layers=int(raw["num_layers"]),
                num_heads=int(raw["num_heads"]),
                mlp_hidden_dim=int(raw["mlp_hidden_dim"]),
                spacewise_every_n_layers=int(raw["spacewise_every_n_layers"]),
                k_components=int(kwargs["k_components"]),
                spacewise_first=bool(raw.get("spacewise_first", True)),
                stabilize_with_global=bool(raw.get("stabilize_with_global", True)),
                scale_factor_exponent=float(raw.get("scale_factor_exponent", 10.0)),
                dropout=float(raw.get("dropout", 0.0)),
            )
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{source}: Toto config has a value of the wrong type: {e}") from e
        config._check(source)
        return config

    def _check(self, source: object) -> None:
        def bad(key: str, why: str) -> WeightsError:
            return bad_key(source, self, key, why)

        if self.stride != self.patch_size:
            raise bad(
                "stride",
                f"must equal patch_size ({self.patch_size}); overlapping patches are not supported",
            )
        if self.embed_dim % self.num_heads:
            raise bad("embed_dim", f"must be divisible by num_heads ({self.num_heads})")
        if (self.embed_dim // self.num_heads) % 2:
            raise bad("num_heads", "embed_dim / num_heads must be even for rotary embeddings")
        n = self.spacewise_every_n_layers
        if n != -1 and (n < 1 or self.num_layers % n):
            raise bad(
                "spacewise_every_n_layers", f"must be -1 or divide num_layers ({self.num_layers})"
            )
        check_positive(source, self, ("patch_size", "embed_dim", "num_layers", "num_heads",
                                      "mlp_hidden_dim", "k_components"))

    def to_dict(self) -> dict[str, Any]:
        """The official ``config.json`` key names and values."""
        return {
            "patch_size": self.patch_size,
            "stride": self.stride,
            "embed_dim": self.embed_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_hidden_dim": self.mlp_hidden_dim,
            "dropout": self.dropout,
            "spacewise_every_n_layers": self.spacewise_every_n_layers,
            "spacewise_first": self.spacewise_first,
            "scaler_cls": SCALER_CAUSAL_PATCH,
            "output_distribution_classes": [OUTPUT_STUDENT_T_MIXTURE],
            "output_distribution_kwargs": {"k_components": self.k_components},
            "use_memory_efficient_attention": False,
            "stabilize_with_global": self.stabilize_with_global,
            "scale_factor_exponent": self.scale_factor_exponent,
        }

    def is_time_layer(self, index: int) -> bool:
        """Whether layer ``index`` attends over time (else over variates), as upstream lays them out."""
        n = self.spacewise_every_n_layers
        if n == -1:
            return True
        position = index % n
        return position != (0 if self.spacewise_first else n - 1)


def base_toto_config() -> dict[str, Any]:
    """``config.json`` of ``Datadog/Toto-Open-Base-1.0`` (shapes of the real 151M model)."""
    return {
        "patch_size": 64,
        "stride": 64,
        "embed_dim": 768,
        "num_layers": 12,
        "num_heads": 12,
        "mlp_hidden_dim": 3072,
        "dropout": 0.1,
        "spacewise_every_n_layers": 12,
        "spacewise_first": True,
        "scaler_cls": SCALER_CAUSAL_PATCH,
        "output_distribution_classes": [OUTPUT_STUDENT_T_MIXTURE],
        "output_distribution_kwargs": {"k_components": 24},
        "use_memory_efficient_attention": True,
        "stabilize_with_global": True,
        "scale_factor_exponent": 10.0,
    }


def tiny_toto_config() -> dict[str, Any]:
    """A tiny architecture with the official keys, for tests and dry runs."""
    return {
        **base_toto_config(),
        "patch_size": 8,
        "stride": 8,
        "embed_dim": 32,
        "num_layers": 2,
        "num_heads": 2,
        "mlp_hidden_dim": 64,
        "spacewise_every_n_layers": 2,
        "output_distribution_kwargs": {"k_components": 4},
        "use_memory_efficient_attention": False,
    }


# --------------------------------------------------------------------------------------------
# Network (module names mirror upstream so state-dict keys match)


def _causal_patch_scaler(
    series: torch.Tensor,
    observed: torch.Tensor,
    config: TotoConfig,
    prefix_length: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's ``CausalPatchStdMeanScaler`` (Welford, Bessel-corrected, clamped by global stats).

    Args:
        series: (B, V, T) float, T a multiple of the patch size.
        observed: (B, V, T) bool, False on left padding.
        prefix_length: global statistics use only the first ``prefix_length`` steps (the real
            context during autoregressive decoding); None means all.

    Returns:
        scaled (B, V, T) in series dtype; loc and scale (B, V, T/P), the statistics of each
        patch (those of its last step), in series dtype.
    """
    patch = config.patch_size
    weights = observed.to(series.dtype)
    # float64: cumulative sums of prices over long contexts lose precision in float32.
    x = series.double()
    w = weights.double()
    den = w.cumsum(-1).clamp_min(1.0)
    mean = (w * x).cumsum(-1) / den
    previous = F.pad(mean[..., :-1], (1, 0))
    m2 = ((x - previous) * (x - mean) * w).cumsum(-1)
    scale = torch.sqrt(m2 / (den - 1.0).clamp_min(1.0) + _MIN_SCALE)
    if config.stabilize_with_global:
        if prefix_length is not None:
            prefix = torch.zeros_like(weights)
            prefix[..., :prefix_length] = 1.0
            weights = weights * prefix
            w = weights.double()
        gden = weights.sum(-1, keepdim=True).clamp_min(1.0)
        gmean = torch.nan_to_num((w * x).sum(-1, keepdim=True) / gden)
        gscale = torch.sqrt((((x - gmean) * w) ** 2).sum(-1, keepdim=True) / gden + _MIN_SCALE)
        factor = 10.0**config.scale_factor_exponent
        # The float32 floor mirrors upstream's torch.tensor(minimum_scale) exactly.
        floor = torch.maximum(torch.tensor(_MIN_SCALE, device=x.device), gscale / factor)
        scale = torch.clamp(scale, min=floor, max=gscale * factor)
    loc = mean.to(series.dtype)[..., patch - 1 :: patch]
    scale = scale.to(series.dtype)[..., patch - 1 :: patch]
    scaled = (series - loc.repeat_interleave(patch, -1)) / scale.repeat_interleave(patch, -1)
    return scaled, loc, scale


class _RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True) + _RMS_EPS) * self.scale


class _XPosRotary(nn.Module):
    """Rotary embedding with xPos scaling, as upstream's ``TimeAwareRotaryEmbedding`` applies it.

    Two upstream quirks are kept on purpose (the weights were trained with them): the query/key
    layout pairs channels (2i, 2i+1) for rotation, while the xPos scale vector is the half-size
    scale concatenated with itself rather than interleaved; and the xPos centre is
    ``max_position // 2`` of the positions in the call.
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        half = torch.arange(0, head_dim, 2).float()
        self.register_buffer("freqs", 1.0 / _ROPE_THETA ** (half / head_dim), persistent=False)
        self.register_buffer("scale", (half + 0.4 * head_dim) / (1.4 * head_dim), persistent=False)

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k, both (N, H, S, head_dim); positions are 0..S-1."""
        seq = torch.arange(q.shape[-2], device=q.device, dtype=q.dtype)
        angles = (seq.float()[:, None] * self.freqs).repeat_interleave(2, -1)  # (S, head_dim)
        power = (seq - seq.max() // 2) / _XPOS_SCALE_BASE
        scale = self.scale ** power[:, None]
        scale = torch.cat((scale, scale), dim=-1).to(q.dtype)
        cos, sin = angles.cos(), angles.sin()

        def rotate(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return ((t * cos * s) + (self._rotate_half(t) * sin * s)).type(t.dtype)

        return rotate(q, scale), rotate(k, scale**-1)


class _Attention(nn.Module):
    def __init__(self, config: TotoConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.embed_dim // config.num_heads
        self.wQKV = nn.Linear(config.embed_dim, 3 * config.embed_dim)
        self.wO = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x: torch.Tensor, rotary: _XPosRotary | None, causal: bool) -> torch.Tensor:
        """x: (N, S, D) sequences to attend within; returns (N, S, D)."""
        n, s, _ = x.shape
        # Upstream packs the projection as (qkv, head_dim, heads): heads vary fastest.
        qkv = self.wQKV(x).view(n, s, 3, self.head_dim, self.num_heads).permute(2, 0, 4, 1, 3)
        q, k, v = qkv.unbind(0)
        if rotary is not None:
            q, k = rotary(q, k)
        out = F.scaled_dot_product_attention(
            q.contiguous(), k.contiguous(), v.contiguous(), is_causal=causal
        )
        return self.wO(out.transpose(1, 2).reshape(n, s, -1))


class _SwiGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = x.chunk(2, dim=-1)  # gate first, the xFormers order upstream follows
        return F.silu(gate) * value


class _Layer(nn.Module):
    def __init__(self, config: TotoConfig, time_wise: bool) -> None:
        super().__init__()
        self.time_wise = time_wise
        self.norm1 = _RMSNorm(config.embed_dim)
        self.norm2 = _RMSNorm(config.embed_dim)
        self.attention = _Attention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.embed_dim, 2 * config.mlp_hidden_dim),
            _SwiGLU(),
            nn.Linear(config.mlp_hidden_dim, config.embed_dim),
        )

    def forward(self, x: torch.Tensor, rotary: _XPosRotary) -> torch.Tensor:
        """x: (B, V, S, D) -> (B, V, S, D)."""
        b, v, s, d = x.shape
        h = self.norm1(x)
        if self.time_wise:  # causal over patches, each variate on its own
            a = self.attention(h.reshape(b * v, s, d), rotary, causal=True).view(b, v, s, d)
        else:  # bidirectional over variates, each patch on its own, no positions
            a = self.attention(h.transpose(1, 2).reshape(b * s, v, d), None, causal=False)
            a = a.view(b, s, v, d).transpose(1, 2)
        x = x + a
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, config: TotoConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.projection = nn.Linear(config.patch_size, config.embed_dim)

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        """(B, V, T) -> (B, V, T/P, D)."""
        return self.projection(scaled.unflatten(-1, (-1, self.patch_size)))


class _Transformer(nn.Module):
    def __init__(self, config: TotoConfig) -> None:
        super().__init__()
        self.rotary_emb = _XPosRotary(config.embed_dim // config.num_heads)
        self.layers = nn.ModuleList(
            _Layer(config, config.is_time_layer(i)) for i in range(config.num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, self.rotary_emb)
        return x


class _MixtureHead(nn.Module):
    def __init__(self, config: TotoConfig) -> None:
        super().__init__()
        d, k = config.embed_dim, config.k_components
        self.df = nn.Linear(d, k)
        self.loc_proj = nn.Linear(d, k)
        self.scale_proj = nn.Linear(d, k)
        self.mixture_weights = nn.Linear(d, k)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """h: (..., D) -> weights, df, loc, scale, each (..., K), in scaled units."""
        eps = torch.finfo(h.dtype).eps
        df = 2.0 + F.softplus(self.df(h)).clamp_min(eps)
        scale = F.softplus(self.scale_proj(h)).clamp_min(eps)
        weights = F.softmax(self.mixture_weights(h), dim=-1)
        return weights, df, self.loc_proj(h), scale


class _Backbone(nn.Module):
    def __init__(self, config: TotoConfig) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(config)
        self.transformer = _Transformer(config)
        self.unembed = nn.Linear(config.embed_dim, config.embed_dim * config.patch_size)
        self.output_distribution = _MixtureHead(config)


class TotoOutput(NamedTuple):
    """Predictive distribution per output step: a Student-T mixture, then ``loc + scale * y``.

    ``weights``/``df``/``comp_loc``/``comp_scale`` are (B, V, N, K) in scaled units; ``loc`` and
    ``scale`` are (B, V, N), the scaler's statistics in input units. Output step ``j`` of a patch
    predicts step ``j`` of the following patch.
    """

    weights: torch.Tensor
    df: torch.Tensor
    comp_loc: torch.Tensor
    comp_scale: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor


class TotoModel(nn.Module):
    """Toto for inference. Keys under ``model.`` equal upstream ``Toto``'s state dict."""

    def __init__(self, config: TotoConfig) -> None:
        super().__init__()
        self.config = config
        self.model = _Backbone(config)
        self.autocast_dtype: torch.dtype | None = None  # set by load_toto (CUDA only)

    @property
    def device(self) -> torch.device:
        return self.model.unembed.weight.device

    def forward(
        self,
        series: torch.Tensor,
        observed: torch.Tensor,
        *,
        prefix_length: int | None = None,
        last_patch_only: bool = False,
    ) -> TotoOutput:
        """Distribution of each next step.

        Args:
            series: (B, V, T) float, T a multiple of ``patch_size``, left-padded.
            observed: (B, V, T) bool, False on padding.
            prefix_length: steps of real context, for the scaler's global statistics.
            last_patch_only: only the last patch's outputs (N = P) instead of all (N = T).
        """
        cfg = self.config
        scaled, loc, scale = _causal_patch_scaler(series, observed, cfg, prefix_length)
        # load_toto only sets autocast_dtype on CUDA; tests set it on CPU to run this same path.
        use_autocast = self.autocast_dtype is not None
        with torch.autocast(series.device.type, dtype=self.autocast_dtype, enabled=use_autocast):
            hidden = self.model.transformer(self.model.patch_embed(scaled))
            if last_patch_only:  # causal: the last token alone predicts the next patch
                hidden, loc, scale = hidden[:, :, -1:], loc[..., -1:], scale[..., -1:]
            out = self.model.unembed(hidden)
        # The head runs in float32 even under autocast: its softplus/softmax feed the sampler.
        with torch.autocast(series.device.type, enabled=False):
            out = out.float().unflatten(-1, (cfg.patch_size, cfg.embed_dim)).flatten(2, 3)
            weights, df, comp_loc, comp_scale = self.model.output_distribution(out)
        return TotoOutput(
            weights,
            df,
            comp_loc,
            comp_scale,
            loc.repeat_interleave(cfg.patch_size, -1),
            scale.repeat_interleave(cfg.patch_size, -1),
        )


# --------------------------------------------------------------------------------------------
# Loading and tiny checkpoints


def _canonical_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map fused xFormers SwiGLU names to upstream's plain ones and drop derived rotary buffers."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith("rotary_emb.freqs"):  # recomputed from the shapes; upstream drops it too
            continue
        key = key.replace(".mlp.0.w12.", ".mlp.0.").replace(".mlp.0.w3.", ".mlp.2.")
        out[key] = tensor
    return out


def load_toto(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> TotoModel:
    """Load a Toto checkpoint (hub id or local folder) in eval mode with gradients off.

    ``dtype`` is the autocast dtype for the transformer: bfloat16/float16 on CUDA only; None or
    float32 runs in float32. Weights always stay float32.

    Raises:
        WeightsError: missing files, config keys, or mismatched/missing tensors (named).
        ConfigError: a dtype that the device cannot run.
    """
    target = torch.device(device) if device is not None else torch.device("cpu")
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise ConfigError(f"dtype {dtype}: Toto runs in float32, bfloat16 or float16")
    if dtype in (torch.bfloat16, torch.float16) and target.type != "cuda":
        raise ConfigError(f"dtype {dtype} needs a CUDA device; device is {target}: use float32")
    folder = resolve_checkpoint(source, revision=revision)
    config = TotoConfig.from_dict(read_config(folder), source=folder / CONFIG_FILE)
    model = TotoModel(config)
    load_strict(model, _canonical_keys(read_state_dict(folder)), source=source)
    model.to(target).eval().requires_grad_(False)
    model.autocast_dtype = None if dtype in (None, torch.float32) else dtype
    return model


def write_tiny_toto(folder: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-init checkpoint (official file layout) to ``folder``; return it."""
    config = tiny_toto_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TotoModel(TotoConfig.from_dict(config))
    return save_checkpoint(Path(folder), config, model.state_dict(), tiny=True)


# --------------------------------------------------------------------------------------------
# Counter-based random numbers: a pure function of (seed, sample, step, slot)

_M32 = 0xFFFFFFFF
_GAMMA_TRIES = 6  # Marsaglia-Tsang accepts >= 95% for shape >= 1: all 6 fail w.p. < 2e-8
_SLOTS = 2 + 2 * _GAMMA_TRIES  # component, numerator normal, per try: a normal and a uniform


def _mul32(x: Any, m: int) -> Any:
    """(x * m) mod 2**32 for x in [0, 2**32), split so int64 never overflows."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x: Any) -> Any:
    """A 32-bit integer hash (lowbias32); works on ints and int64 tensors alike."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _absorb(h: Any, word: Any) -> Any:
    return _mix32(((h ^ word) + 0x9E3779B9) & _M32)


def _seed_key(seed: int) -> int:
    seed &= (1 << 64) - 1
    return _absorb(_absorb(0x2545F491, seed & _M32), seed >> 32)


def _uniforms(key: int, samples: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1), float64, shape (C, n, _SLOTS) for sample indices (C,) and steps (n,)."""
    slots = torch.arange(_SLOTS, device=samples.device)
    h = _absorb(key, samples.long()[:, None, None])
    h = _absorb(h, steps.long()[None, :, None])
    h = _absorb(h, slots)
    return (h.double() + 0.5) / 2.0**32


def _draw(
    params: TotoOutput, key: int, samples: torch.Tensor, first_step: int, n: int
) -> torch.Tensor:
    """Draw the first ``n`` steps of one window's next patch for the given samples.

    Args:
        params: one window's distribution, fields (1 or C, >=n, K) and (1 or C, >=n).
        key: the window's seed key.
        samples: (C,) sample indices; with ``first_step`` they fix the random numbers.
        first_step: index of the first drawn step within the forecast (0 for the first patch).

    Returns:
        (C, n) float32 draws in input units; non-finite or huge values become 0 like upstream.
    """
    weights, df, comp_loc, comp_scale, loc, scale = (t[:, :n].double() for t in params)
    steps = torch.arange(first_step, first_step + n, device=samples.device)
    u = _uniforms(key, samples, steps)  # (C, n, SLOTS)
    # Component: inverse CDF of the mixture weights.
    cdf = weights.cumsum(-1)
    comp = (u[..., :1] * cdf[..., -1:] > cdf).sum(-1, keepdim=True).clamp_max(weights.shape[-1] - 1)
    c = u.shape[0]

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.expand(c, -1, -1).gather(-1, comp).squeeze(-1)

    nu, mu, sigma = pick(df), pick(comp_loc), pick(comp_scale)
    # Standard normals by inverse CDF, one uniform each.
    normals = torch.special.ndtri(u[..., 1 : 2 + _GAMMA_TRIES])
    z, x = normals[..., 0], normals[..., 1:]
    accept_u = u[..., 2 + _GAMMA_TRIES :]
    # Gamma(nu/2) by Marsaglia-Tsang (shape >= 1 since df >= 2): first accepted of fixed tries.
    shape = nu / 2.0
    d = (shape - 1.0 / 3.0)[..., None]
    v = (1.0 + x / torch.sqrt(9.0 * d)) ** 3
    ok = (v > 0) & (
        torch.log(accept_u) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-300))
    )
    # If all tries fail (p < 2e-8) keep the last proposal: its d*v is the Wilson-Hilferty
    # approximation of a gamma draw, very close to exact for these shapes.
    choice = torch.where(ok.any(-1), ok.int().argmax(-1), _GAMMA_TRIES - 1)[..., None]
    gamma = (d * v).gather(-1, choice).squeeze(-1)
    gamma = torch.where(gamma > 0, gamma, shape)
    student = z / torch.sqrt(gamma / shape)  # z / sqrt(chi2(nu) / nu)
    draws = (loc + scale * (mu + sigma * student)).float()
    extreme = ~torch.isfinite(draws) | (draws.abs() >= torch.finfo(draws.dtype).max / 2)
    return torch.where(extreme, torch.zeros_like(draws), draws)


# --------------------------------------------------------------------------------------------
# Sampling


def _left_pad(context: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, L) -> series and observed mask (W, 1, L') with L' the next multiple of ``patch``."""
    w, length = context.shape
    padded = -(-length // patch) * patch
    series = torch.zeros(w, 1, padded, dtype=context.dtype, device=context.device)
    series[..., padded - length :] = context[:, None]
    observed = torch.zeros(w, 1, padded, dtype=torch.bool, device=context.device)
    observed[..., padded - length :] = True
    return series, observed


def _window(params: TotoOutput, index: slice) -> TotoOutput:
    """Rows ``index`` of a (B, 1, ...) output, with the variate axis dropped."""
    return TotoOutput(*(t[index, 0] for t in params))


def first_patch_distribution(model: TotoModel, context: torch.Tensor) -> TotoOutput:
    """The next-patch distribution of W windows (one forward pass): fields (W, 1, P, ...).

    It depends on the context only, never on sampling parameters, so requests of many trials
    (and symbols) with the same context length can share one pass; rows are independent.
    """
    series, observed = _left_pad(context.to(device=model.device, dtype=torch.float32),
                                 model.config.patch_size)
    with torch.inference_mode():
        return model(series, observed, last_patch_only=True)


def sample_toto(
    model: TotoModel,
    context: torch.Tensor,
    *,
    horizon: int,
    num_samples: int,
    seeds: Sequence[int],
    samples_per_batch: int | None = None,
    timestamps: torch.Tensor | None = None,
    first_patch: TotoOutput | None = None,
) -> torch.Tensor:
    """Sample future closes of W windows of one symbol.

    Args:
        context: (W, L) close prices, no NaN; contexts not a multiple of the patch size are
            left-padded and masked like upstream.
        horizon: future steps per path (> patch size goes autoregressively, patch by patch).
        num_samples: sample paths per window; never reduced.
        seeds: W ints; window i's samples depend only on ``context[i]`` and ``seeds[i]``.
        samples_per_batch: sample paths per forward pass for long horizons (memory only: the
            result is the same whatever it is); must divide ``num_samples``. None: all at once.
        timestamps: accepted for interface symmetry and ignored: Toto-Open-Base-1.0 does not
            use timestamps (upstream's time-aware RoPE uses plain positions too).
        first_patch: the windows' next-patch distribution from :func:`first_patch_distribution`
            when the caller already has it (e.g. computed for many requests in one pass).

    Returns:
        (W, num_samples, horizon) float32 prices, on the model's device.

    Raises:
        ConfigError: bad horizon, num_samples, seeds or samples_per_batch (values named).
        DataError: context not 2-D, empty, or not finite.
    """
    del timestamps
    if context.ndim != 2 or context.shape[0] == 0 or context.shape[1] == 0:
        raise DataError(
            f"context has shape {tuple(context.shape)}; expected (windows, length) both >= 1"
        )
    if not torch.isfinite(context).all():
        raise DataError("context holds NaN or infinite closes; Toto needs finite prices")
    if int(horizon) < 1:
        raise ConfigError(f"horizon {horizon}: must be >= 1")
    if int(num_samples) < 1:
        raise ConfigError(f"num_samples {num_samples}: must be >= 1")
    if len(seeds) != context.shape[0]:
        raise ConfigError(
            f"seeds has {len(seeds)} values for {context.shape[0]} windows; need one per window"
        )
    chunk = num_samples if samples_per_batch is None else int(samples_per_batch)
    if chunk < 1 or num_samples % chunk:
        raise ConfigError(
            f"samples_per_batch {samples_per_batch} must be a positive divisor of num_samples {num_samples}"
        )
    patch = model.config.patch_size
    device = model.device
    keys = [_seed_key(int(s)) for s in seeds]
    n_windows = context.shape[0]
    series, observed = _left_pad(context.to(device=device, dtype=torch.float32), patch)
    prefix = series.shape[-1]
    out = torch.empty(n_windows, num_samples, horizon, device=device)
    with torch.inference_mode():
        # One pass over all windows gives every sample path's first patch.
        first = model(series, observed, last_patch_only=True) if first_patch is None else first_patch
        for start in range(0, num_samples, chunk):
            samples = torch.arange(start, start + chunk, device=device)
            paths = torch.stack(
                [
                    _draw(_window(first, slice(i, i + 1)), keys[i], samples, 0, min(horizon, patch))
                    for i in range(n_windows)
                ]
            )  # (W, C, min(horizon, P))
            done = paths.shape[-1]
            if horizon > patch:  # autoregressive: each path extends its own sequence
                seq = torch.cat((series.expand(-1, chunk, -1), paths), dim=-1).flatten(0, 1)[
                    :, None
                ]
                while done < horizon:
                    seen = torch.ones_like(seq, dtype=torch.bool)
                    seen[..., :prefix] = observed.repeat_interleave(chunk, 0)
                    step = model(seq, seen, prefix_length=prefix, last_patch_only=True)
                    n = min(patch, horizon - done)
                    draws = torch.stack(
                        [
                            _draw(
                                _window(step, slice(i * chunk, (i + 1) * chunk)),
                                keys[i],
                                samples,
                                done,
                                n,
                            )
                            for i in range(n_windows)
                        ]
                    )  # (W, C, n)
                    paths = torch.cat((paths, draws), dim=-1)
                    done += n
                    if done < horizon:
                        seq = torch.cat((seq, draws.flatten(0, 1)[:, None]), dim=-1)
            out[:, start : start + chunk] = paths
    return out
