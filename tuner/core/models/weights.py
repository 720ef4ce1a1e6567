"""Which checkpoint each model comes from: hub ids (optionally ``id@revision``) or local folders.

``--weights`` accepts:

* nothing: the published checkpoints (:data:`DEFAULTS`);
* a folder holding ``toto/``, ``kronos/``, ``kronos-tokenizer/`` and ``toto2/`` (what ``tuner models
  make-tiny DIR`` writes): every family gets its checkpoints from there;
* ``toto=ID,kronos=ID,kronos_tokenizer=ID,toto2=ID`` (any subset; the rest keep their defaults);
* one hub id or folder: the checkpoint of the evaluated family's main model (Toto, or the Kronos
  predictor; the Kronos tokenizer keeps its default).

Several checkpoints of one model (its **sizes**) are listed in an experiment's ``weights`` (or a
family's space YAML, ``checkpoints:``): ``toto2: [4m, 22m]`` (names of :data:`SIZES`), hub ids or
folders (``toto2: {a: /tiny/a, b: Datadog/Toto-2.0-313m}``); a Kronos size comes with its
tokenizer. Each is a :class:`Checkpoint`; the engine searches them as the ``checkpoint``
dimension, each size on its own model actors.

:func:`resolve_weights` checks that every checkpoint a set of families needs can be found and,
where allowed (the default weights, no explicit source), falls back to tiny random-init
checkpoints when the published ones are unavailable (offline, no cache): ``tuner run`` and
``tuner evaluate`` share it, so both fall back the same way and label it the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError, WeightsError
from tuner.core.models.checkpoint import BUNDLE_FOLDERS

DEFAULTS = {
    "toto": "Datadog/Toto-Open-Base-1.0",
    "kronos": "NeoQuasar/Kronos-small",
    "kronos_tokenizer": "NeoQuasar/Kronos-Tokenizer-base",
    "toto2": "Datadog/Toto-2.0-22m",  # upstream's quick-start size (tuner/core/models/toto2.py: CHECKPOINTS)
}
FAMILY_MODEL = {"toto": "toto", "kronos_standard": "kronos", "kronos_ensemble": "kronos", "toto2": "toto2"}
SIZES: dict[str, dict[str, dict[str, str]]] = {
    # tuner/core/models/toto2.py: CHECKPOINTS (kept torch-free here)
    "toto2": {name: {"toto2": f"Datadog/Toto-2.0-{name}"} for name in ("4m", "22m", "313m", "1B", "2.5B")},
    # Kronos-mini (4.1M, context 2048) has its own 2k tokenizer; small (24.7M) and base (102.3M)
    # share Kronos-Tokenizer-base (upstream's model zoo).
    "kronos": {
        "mini": {"kronos": "NeoQuasar/Kronos-mini", "kronos_tokenizer": "NeoQuasar/Kronos-Tokenizer-2k"},
        "small": {"kronos": "NeoQuasar/Kronos-small", "kronos_tokenizer": "NeoQuasar/Kronos-Tokenizer-base"},
        "base": {"kronos": "NeoQuasar/Kronos-base", "kronos_tokenizer": "NeoQuasar/Kronos-Tokenizer-base"},
    },
}
"""The sizes upstream publishes, by name: model → size → the sources it sets. Toto 1.0 has one."""
DEFAULT_SIZE = {"toto2": "22m", "kronos": "small"}
"""Upstream's default size per model (what :data:`DEFAULTS` load): the ``checkpoint`` of a
family's default config when it is among the sizes searched (else the first listed)."""
SIZE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
CHECKPOINT_PARAM = "checkpoint"
"""The trial parameter naming a trial's size (only when a family searches several)."""


@dataclass(frozen=True)
class Checkpoint:
    """One size of a model: its name (the ``checkpoint`` value trials record) and the sources it
    sets, as ``(model, source)`` pairs (a Kronos size sets ``kronos`` and ``kronos_tokenizer``)."""

    name: str
    sources: tuple[tuple[str, str], ...]

    def to_value(self) -> str | dict[str, str]:
        """What an experiment's ``weights`` holds for it (one source, or the pairs as a mapping)."""
        return self.sources[0][1] if len(self.sources) == 1 else dict(self.sources)


@dataclass(frozen=True)
class WeightsSource:
    """One source per model; each a hub id, ``id@revision`` or a local folder."""

    toto: str = DEFAULTS["toto"]
    kronos: str = DEFAULTS["kronos"]
    kronos_tokenizer: str = DEFAULTS["kronos_tokenizer"]
    toto2: str = DEFAULTS["toto2"]
    sizes: tuple[tuple[str, tuple[Checkpoint, ...]], ...] = ()
    """Model → its sizes, for models listed with several checkpoints (the model's own field is
    then its default size's source)."""

    @classmethod
    def parse(cls, text: str | None, family: str | None = None) -> WeightsSource:
        if text is None or not str(text).strip():
            return cls()
        text = str(text).strip()
        folder = Path(text).expanduser()
        if folder.is_dir() and any((folder / sub).is_dir() for sub in BUNDLE_FOLDERS.values()):
            return cls(**{k: str(folder / sub) for k, sub in BUNDLE_FOLDERS.items()})
        if "=" in text:
            out: dict[str, Any] = {}
            for part in text.split(","):
                key, _, value = part.partition("=")
                key = key.strip().replace("-", "_")
                if key not in DEFAULTS or not value.strip():
                    raise ConfigError(
                        f"--weights: {part.strip()!r} must be MODEL=SOURCE with MODEL one of "
                        f"{', '.join(DEFAULTS)} (several sizes: MODEL=A+B, e.g. toto2=4m+22m)"
                    )
                # MODEL=A+B lists sizes (names of SIZES, hub ids or folders)
                out[key] = [v.strip() for v in value.split("+")] if "+" in value else value.strip()
            return cls.from_mapping(out, "--weights")
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
        singles: dict[str, str] = {}
        sizes: dict[str, tuple[Checkpoint, ...]] = {}
        for key, value in data.items():
            if isinstance(value, (list, tuple, dict)):
                if key == "kronos_tokenizer":
                    raise ConfigError(f"{where}.{key}: one tokenizer; several Kronos sizes are listed under "
                                      "kronos, each with its tokenizer (e.g. kronos: [mini, small])")
                sizes[key] = parse_checkpoints(key, value, f"{where}.{key}",
                                               tokenizer=data.get("kronos_tokenizer"))
                continue
            singles[key] = _one_source(value, f"{where}.{key}")
        source = cls(**singles)
        for key, listed in sizes.items():
            source = source.with_checkpoints(key, listed)
        return source

    def with_checkpoints(self, model: str, listed: tuple[Checkpoint, ...]) -> WeightsSource:
        """A copy searching ``listed`` for ``model`` (one: that checkpoint, as a single source);
        the model's own fields become its default size's (:func:`default_checkpoint`)."""
        others = tuple((m, c) for m, c in self.sizes if m != model)
        if len(listed) == 1:
            return replace(self, sizes=others, **dict(listed[0].sources))
        chosen = default_checkpoint(model, listed)
        ordered = tuple(sorted((*others, (model, tuple(listed))), key=lambda pair: list(DEFAULTS).index(pair[0])))
        return replace(self, sizes=ordered, **dict(chosen.sources))

    def checkpoints(self, model: str) -> tuple[Checkpoint, ...]:
        """The sizes listed for ``model``; empty when it has one checkpoint."""
        return dict(self.sizes).get(model, ())

    def family_checkpoints(self, family: str) -> tuple[Checkpoint, ...]:
        return self.checkpoints(FAMILY_MODEL[family]) if family in FAMILY_MODEL else ()

    def for_checkpoint(self, family: str, name: str) -> WeightsSource:
        """The single-checkpoint source of ``family``'s size ``name``: one of its listed sizes,
        else an upstream size of that name (:data:`SIZES`).

        Raises:
            ConfigError: neither knows ``name``.
        """
        model = FAMILY_MODEL.get(family)
        listed = {c.name: c for c in self.checkpoints(model)} if model else {}
        if name in listed:
            return replace(self, sizes=(), **dict(listed[name].sources))
        if model in SIZES and name in SIZES[model]:
            return replace(self, sizes=(), **SIZES[model][name])
        known = sorted({*listed, *SIZES.get(model or "", {})})
        raise ConfigError(f"checkpoint {name!r}: not a size of {family}"
                          + (f"; known: {', '.join(known)}" if known else " (it has one checkpoint)"))

    def to_dict(self) -> dict[str, Any]:
        """One source per model; a model with sizes maps each size's name to its source(s), as
        an experiment's ``weights`` lists them (:meth:`from_mapping` reads it back)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sizes"}
        for model, listed in self.sizes:
            out[model] = {c.name: c.to_value() for c in listed}
        return out

    def all_sources(self) -> list[tuple[str, str]]:
        """Every ``(model, source)`` a run may load: the single ones and every size's."""
        out = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "sizes"]
        for _, listed in self.sizes:
            out += [pair for c in listed for pair in c.sources]
        return list(dict.fromkeys(out))


def default_checkpoint(model: str, listed: tuple[Checkpoint, ...]) -> Checkpoint:
    """Upstream's default size (:data:`DEFAULT_SIZE`) when listed, else the first listed."""
    by_name = {c.name: c for c in listed}
    return by_name.get(DEFAULT_SIZE.get(model, ""), listed[0])


def parse_checkpoints(model: str, value: object, where: str, tokenizer: object = None) -> tuple[Checkpoint, ...]:
    """Several checkpoints of ``model``: a list of upstream size names (:data:`SIZES`), hub ids,
    folders or make-tiny bundles, or a mapping size name → source (a Kronos size: a source, or
    ``{kronos: ..., kronos_tokenizer: ...}``). A Kronos size given by its own source keeps the
    experiment's ``kronos_tokenizer`` (``tokenizer``), else the default one.

    Raises:
        ConfigError: an empty list, an unknown model, a bad source, a bad or repeated name.
    """
    if model not in DEFAULTS or model == "kronos_tokenizer":
        raise ConfigError(f"{where}: {model!r} has no sizes; models: {', '.join(m for m in DEFAULTS if m != 'kronos_tokenizer')}")
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(None, v) for v in value]
    else:
        raise ConfigError(f"{where}: {value!r} must be a list of checkpoints or a mapping size → checkpoint")
    if not items:
        raise ConfigError(f"{where}: an empty list; give one checkpoint or several")
    tok = _one_source(tokenizer, f"{where}.kronos_tokenizer") if tokenizer is not None else DEFAULTS["kronos_tokenizer"]
    out: list[Checkpoint] = []
    for i, (name, item) in enumerate(items):
        here = f"{where}.{name}" if name is not None else f"{where}[{i}]"
        out.append(_checkpoint(model, name, item, here, tok))
    names = [c.name for c in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: the size name {twice[0]!r} is given twice ({names}); name them "
                          "(a mapping: {name: source, ...})")
    return tuple(out)


def _checkpoint(model: str, name: str | None, item: object, where: str, tokenizer: str) -> Checkpoint:
    if isinstance(item, dict):
        allowed = {model, "kronos_tokenizer"} if model == "kronos" else {model}
        unknown = sorted(set(item) - allowed)
        if unknown or model not in item:
            raise ConfigError(f"{where}: {item!r} must map {' and '.join(sorted(allowed))} to sources")
        sources = tuple((k, _one_source(item[k], f"{where}.{k}")) for k in sorted(allowed, key=[model, "kronos_tokenizer"].index)
                        if k in item)
        if model == "kronos" and len(sources) == 1:
            sources += (("kronos_tokenizer", tokenizer),)
        return Checkpoint(_size_name(name, sources[0][1], where), sources)
    text = _one_source(item, where)
    catalogue = SIZES.get(model, {})
    if text in catalogue:  # an upstream size by name
        return Checkpoint(_size_name(name or text, text, where), tuple(catalogue[text].items()))
    folder = Path(text).expanduser()
    if folder.is_dir() and (folder / BUNDLE_FOLDERS[model]).is_dir():  # a make-tiny bundle
        sources = ((model, str(folder / BUNDLE_FOLDERS[model])),)
        if model == "kronos":
            sources += (("kronos_tokenizer", str(folder / BUNDLE_FOLDERS["kronos_tokenizer"])),)
        return Checkpoint(_size_name(name, folder.name, where), sources)
    for size, known in catalogue.items():  # an upstream hub id: its name and (Kronos) its tokenizer
        if split_revision(text)[0] == known[model]:
            return Checkpoint(_size_name(name or size, text, where), ((model, text), *((k, v) for k, v in known.items() if k != model)))
    sources = ((model, text),) + ((("kronos_tokenizer", tokenizer),) if model == "kronos" else ())
    return Checkpoint(_size_name(name, text, where), sources)


def _size_name(name: str | None, source: str, where: str) -> str:
    """``name``, or one derived from the source's last part (``/w/tiny-b`` → ``tiny-b``)."""
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", split_revision(source)[0].rstrip("/").split("/")[-1]).strip("-.") or "checkpoint"
    if not SIZE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: size name {name!r} must be 1 to 40 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def _one_source(value: object, where: str) -> str:
    """One checkpoint: a hub id, ``id@revision`` or folder (a one-element list is one checkpoint)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
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
    needed = models_needed(families)
    try:
        for key, value in weights.all_sources():
            if key in needed:
                ident, revision = split_revision(value)
                resolve_checkpoint(ident, revision=revision)
        return ResolvedWeights(weights)
    except WeightsError as e:
        if not fallback_allowed:
            raise
        from tuner.core.models.tiny import make_tiny

        folder = tiny_fallback_folder()
        make_tiny(folder, only_if_missing=True)
        return ResolvedWeights(WeightsSource.parse(str(folder)), tiny_fallback=True, reason=str(e))
