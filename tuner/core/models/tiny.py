"""``tuner models make-tiny DIR``: tiny random-init checkpoints of every model.

They are written in the official on-disk format (``config.json`` + ``model.safetensors``) and
marked with :data:`~tuner.core.models.checkpoint.TINY_MARKER`, so they load through the same code
path as the published weights and every result made with them says so. For tests and offline
dry runs only: their forecasts are noise.
"""

from __future__ import annotations

from pathlib import Path

from tuner.core.models.checkpoint import BUNDLE_FOLDERS

TINY_SIZES = ("tiny", "tiny-wide")
"""The tiny sizes :func:`make_tiny` writes: ``tiny`` (the default) and ``tiny-wide``, wider and
deeper Toto 2.0 and Kronos (model and tokenizer) checkpoints, so that tests can search two
checkpoint sizes of different shapes."""


def make_tiny(folder: str | Path, seed: int = 0, only_if_missing: bool = False, size: str = "tiny") -> Path:
    """Write ``toto/``, ``kronos/``, ``kronos-tokenizer/`` and ``toto2/`` under ``folder``; return it.

    Files are replaced atomically, so a run reading them meanwhile never sees half a file;
    ``only_if_missing`` leaves complete tiny checkpoints as they are (the offline fallback).
    ``size`` is one of :data:`TINY_SIZES` (Toto 1.0 has one size: its shape is the same in both).
    """
    if size not in TINY_SIZES:
        raise ValueError(f"size {size!r}: one of {', '.join(TINY_SIZES)}")
    from tuner.core.models.checkpoint import WEIGHTS_FILE, is_tiny
    from tuner.core.models.kronos import tiny_kronos_configs, write_tiny_kronos
    from tuner.core.models.toto import write_tiny_toto
    from tuner.core.models.toto2 import tiny_toto2_config, write_tiny_toto2

    folder = Path(folder)
    parts = [folder / name for name in BUNDLE_FOLDERS.values()]
    if only_if_missing and all(is_tiny(p) and (p / WEIGHTS_FILE).is_file() for p in parts):
        return folder
    toto2_config, kronos_configs = tiny_toto2_config(), tiny_kronos_configs()
    if size == "tiny-wide":
        toto2_config = {**toto2_config, "d_model": 64, "num_heads": 4, "num_layers": 4, "d_ff": 96}
        model, tokenizer = kronos_configs
        kronos_configs = ({**model, "d_model": 64, "n_layers": 3, "ff_dim": 128},
                          {**tokenizer, "d_model": 48, "ff_dim": 96})
    write_tiny_toto(folder / BUNDLE_FOLDERS["toto"], seed=seed)
    write_tiny_kronos(folder / BUNDLE_FOLDERS["kronos"], folder / BUNDLE_FOLDERS["kronos_tokenizer"],
                      seed=seed, configs=kronos_configs)
    write_tiny_toto2(folder / BUNDLE_FOLDERS["toto2"], seed=seed, config=toto2_config)
    return folder
