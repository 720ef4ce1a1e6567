"""Which checkpoint each model comes from: hub ids (optionally ``id@revision``) or local folders.

``--weights`` accepts:

* nothing: the published checkpoints (:data:`DEFAULTS`);
* a folder holding ``toto/``, ``kronos/``, ``kronos-tokenizer/`` and ``toto2/`` (what ``tuner models
  make-tiny DIR`` writes): every family gets its checkpoints from there;
* ``toto=ID,kronos=ID,kronos_tokenizer=ID,toto2=ID`` (any subset; the rest keep their defaults);
* one hub id or folder: the checkpoint of the evaluated family's main model (Toto, or the Kronos
  predictor; the Kronos tokenizer keeps its default).

:func:`resolve_weights` checks that every checkpoint a set of families needs can be found and,
where allowed (the default weights, no explicit source), falls back to tiny random-init
checkpoints when the published ones are unavailable (offline, no cache): ``tuner run`` and
``tuner evaluate`` share it, so both fall back the same way and label it the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from tuner.core.errors import ConfigError, WeightsError
from tuner.core.models.checkpoint import BUNDLE_FOLDERS

DEFAULTS = {
    "toto": "Datadog/Toto-Open-Base-1.0",
    "kronos": "NeoQuasar/Kronos-small",
    "kronos_tokenizer": "NeoQuasar/Kronos-Tokenizer-base",
    "toto2": "Datadog/Toto-2.0-22m",  # upstream's quick-start size (tuner/core/models/toto2.py: CHECKPOINTS)
}
FAMILY_MODEL = {"toto": "toto", "kronos_standard": "kronos", "kronos_ensemble": "kronos", "toto2": "toto2"}


@dataclass(frozen=True)
class WeightsSource:
    """One source per model; each a hub id, ``id@revision`` or a local folder."""

    toto: str = DEFAULTS["toto"]
    kronos: str = DEFAULTS["kronos"]
    kronos_tokenizer: str = DEFAULTS["kronos_tokenizer"]
    toto2: str = DEFAULTS["toto2"]

    @classmethod
    def parse(cls, text: str | None, family: str | None = None) -> WeightsSource:
        if text is None or not str(text).strip():
            return cls()
        text = str(text).strip()
        folder = Path(text).expanduser()
        if folder.is_dir() and any((folder / sub).is_dir() for sub in BUNDLE_FOLDERS.values()):
            return cls(**{k: str(folder / sub) for k, sub in BUNDLE_FOLDERS.items()})
        if "=" in text:
            out = {}
            for part in text.split(","):
                key, _, value = part.partition("=")
                key = key.strip().replace("-", "_")
                if key not in DEFAULTS or not value.strip():
                    raise ConfigError(
                        f"--weights: {part.strip()!r} must be MODEL=SOURCE with MODEL one of "
                        f"{', '.join(DEFAULTS)}"
                    )
                out[key] = value.strip()
            return cls(**out)
        if family is None or family not in FAMILY_MODEL:
            raise ConfigError(
                f"--weights {text!r}: a single checkpoint needs a family to apply to; use a "
                "make-tiny folder or toto=...,kronos=...,kronos_tokenizer=..."
            )
        return replace(cls(), **{FAMILY_MODEL[family]: text})

    @classmethod
    def from_mapping(cls, data: dict, where: str) -> WeightsSource:
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown model; known: {', '.join(DEFAULTS)}")
        return cls(**{k: _one_source(v, f"{where}.{k}") for k, v in data.items()})

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _one_source(value: object, where: str) -> str:
    """One checkpoint per model. A list of several (the checkpoint size as a searched dimension,
    e.g. ``toto2: [Datadog/Toto-2.0-4m, Datadog/Toto-2.0-22m]``) is not implemented yet."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ConfigError(
                f"{where}: {list(value)!r}: several checkpoints of one model (the checkpoint size as "
                "a searched dimension) is not implemented yet; give one checkpoint")
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {value!r} must be a hub id, id@revision or a folder")
    return value.strip()


def split_revision(source: str) -> tuple[str, str | None]:
    """``'owner/name@rev'`` → ``('owner/name', 'rev')``; folders and plain ids get ``None``."""
    if "@" in source and not Path(source).expanduser().exists():
        ident, _, revision = source.rpartition("@")
        return ident, revision or None
    return source, None


TINY_FALLBACK_ENV = "TUNER_TINY_WEIGHTS"
"""Where the offline fallback writes its tiny checkpoints (default ~/.cache/forecast-tuner/tiny-weights)."""


def tiny_fallback_folder() -> Path:
    default = Path.home() / ".cache" / "forecast-tuner" / "tiny-weights"
    return Path(os.environ.get(TINY_FALLBACK_ENV, default)).expanduser()


@dataclass(frozen=True)
class ResolvedWeights:
    """The checkpoints a run will load.

    Attributes:
        source: the checkpoint of every model (the tiny folder's after a fallback).
        tiny_fallback: True when the published weights were unavailable and tiny random-init
            ones replace them (every score is then noise).
        reason: why the published weights were unavailable (the WeightsError's message).
    """

    source: WeightsSource
    tiny_fallback: bool = False
    reason: str | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """The lines a command prints about a fallback (none without one)."""
        if not self.tiny_fallback:
            return ()
        folder = Path(self.source.toto).parent
        return (f"WARNING: published weights unavailable ({self.reason})",
                f"WARNING: falling back to TINY RANDOM-INIT weights in {folder}: the pipeline runs end "
                "to end but every score is noise. Results are labelled tiny_weights=true.")


def models_needed(families: Iterable[str]) -> list[str]:
    """The checkpoints (``toto``, ``kronos``, ``kronos_tokenizer``, ``toto2``) that ``families`` load."""
    needed = {FAMILY_MODEL[f] for f in families if f in FAMILY_MODEL}
    if "kronos" in needed:
        needed.add("kronos_tokenizer")
    return sorted(needed)


def resolve_weights(source: WeightsSource | None, families: Iterable[str],
                    fallback_allowed: bool) -> ResolvedWeights:
    """Check that every checkpoint ``families`` need can be found (downloading it if needed).

    Args:
        source: the checkpoints asked for; None = the published ones.
        families: the families that will run (weights-free ones need nothing).
        fallback_allowed: when a checkpoint cannot be found, write (once) and use tiny
            random-init checkpoints in :func:`tiny_fallback_folder` instead of failing. Callers
            allow it only for the default weights: an explicit source never falls back.

    Raises:
        WeightsError: a checkpoint cannot be found and no fallback is allowed.
    """
    from tuner.core.models.checkpoint import resolve_checkpoint

    weights = source or WeightsSource()
    try:
        for key in models_needed(families):
            ident, revision = split_revision(getattr(weights, key))
            resolve_checkpoint(ident, revision=revision)
        return ResolvedWeights(weights)
    except WeightsError as e:
        if not fallback_allowed:
            raise
        from tuner.core.models.tiny import make_tiny

        folder = tiny_fallback_folder()
        make_tiny(folder, only_if_missing=True)
        return ResolvedWeights(WeightsSource.parse(str(folder)), tiny_fallback=True, reason=str(e))
