"""``tuner models make-tiny DIR``: tiny random-init checkpoints of every model.

They are written in the official on-disk format (``config.json`` + ``model.safetensors``) and
marked with :data:`~tuner.models.checkpoint.TINY_MARKER`, so they load through the same code
path as the published weights and every result made with them says so. For tests and offline
dry runs only: their forecasts are noise.
"""

from __future__ import annotations

from pathlib import Path

from tuner.weights import BUNDLE_FOLDERS


def make_tiny(folder: str | Path, seed: int = 0) -> Path:
    """Write ``toto/``, ``kronos/`` and ``kronos-tokenizer/`` under ``folder``; return it."""
    from tuner.models.kronos import write_tiny_kronos
    from tuner.models.toto import write_tiny_toto

    folder = Path(folder)
    write_tiny_toto(folder / BUNDLE_FOLDERS["toto"], seed=seed)
    write_tiny_kronos(folder / BUNDLE_FOLDERS["kronos"], folder / BUNDLE_FOLDERS["kronos_tokenizer"],
                      seed=seed)
    return folder
