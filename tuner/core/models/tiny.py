"""``tuner models make-tiny DIR``: tiny random-init checkpoints of every model.

They are written in the official on-disk format (``config.json`` + ``model.safetensors``) and
marked with :data:`~tuner.core.models.checkpoint.TINY_MARKER`, so they load through the same code
path as the published weights and every result made with them says so. For tests and offline
dry runs only: their forecasts are noise.
"""

from __future__ import annotations

from pathlib import Path

from tuner.core.models.checkpoint import BUNDLE_FOLDERS


def make_tiny(folder: str | Path, seed: int = 0, only_if_missing: bool = False) -> Path:
    """Write ``toto/``, ``kronos/``, ``kronos-tokenizer/`` and ``toto2/`` under ``folder``; return it.

    Files are replaced atomically, so a run reading them meanwhile never sees half a file;
    ``only_if_missing`` leaves complete tiny checkpoints as they are (the offline fallback).
    """
    from tuner.core.models.checkpoint import WEIGHTS_FILE, is_tiny
    from tuner.core.models.kronos import write_tiny_kronos
    from tuner.core.models.toto import write_tiny_toto
    from tuner.core.models.toto2 import write_tiny_toto2

    folder = Path(folder)
    parts = [folder / name for name in BUNDLE_FOLDERS.values()]
    if only_if_missing and all(is_tiny(p) and (p / WEIGHTS_FILE).is_file() for p in parts):
        return folder
    write_tiny_toto(folder / BUNDLE_FOLDERS["toto"], seed=seed)
    write_tiny_kronos(folder / BUNDLE_FOLDERS["kronos"], folder / BUNDLE_FOLDERS["kronos_tokenizer"],
                      seed=seed)
    write_tiny_toto2(folder / BUNDLE_FOLDERS["toto2"], seed=seed)
    return folder
