"""Which checkpoint each model comes from: hub ids (optionally ``id@revision``) or local folders.

``--weights`` accepts:

* nothing: the published checkpoints (:data:`DEFAULTS`);
* a folder holding ``toto/``, ``kronos/`` and ``kronos-tokenizer/`` (what ``tuner models
  make-tiny DIR`` writes): every family gets its checkpoints from there;
* ``toto=ID,kronos=ID,kronos_tokenizer=ID`` (any subset; the rest keep their defaults);
* one hub id or folder: the checkpoint of the evaluated family's main model (Toto, or the Kronos
  predictor; the Kronos tokenizer keeps its default).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from tuner.errors import ConfigError

DEFAULTS = {
    "toto": "Datadog/Toto-Open-Base-1.0",
    "kronos": "NeoQuasar/Kronos-small",
    "kronos_tokenizer": "NeoQuasar/Kronos-Tokenizer-base",
}
BUNDLE_FOLDERS = {"toto": "toto", "kronos": "kronos", "kronos_tokenizer": "kronos-tokenizer"}
FAMILY_MODEL = {"toto": "toto", "kronos_standard": "kronos", "kronos_ensemble": "kronos"}


@dataclass(frozen=True)
class WeightsSource:
    """One source per model; each a hub id, ``id@revision`` or a local folder."""

    toto: str = DEFAULTS["toto"]
    kronos: str = DEFAULTS["kronos"]
    kronos_tokenizer: str = DEFAULTS["kronos_tokenizer"]

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
        return cls(**{k: str(v) for k, v in data.items()})

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def split_revision(source: str) -> tuple[str, str | None]:
    """``'owner/name@rev'`` → ``('owner/name', 'rev')``; folders and plain ids get ``None``."""
    if "@" in source and not Path(source).expanduser().exists():
        ident, _, revision = source.rpartition("@")
        return ident, revision or None
    return source, None
