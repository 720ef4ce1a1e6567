"""Finding and reading checkpoints: Hugging Face hub ids or local folders, safetensors only.

A checkpoint is a folder holding the official ``config.json`` and ``model.safetensors`` (as
written by ``PyTorchModelHubMixin.save_pretrained``). Hub ids go through ``huggingface_hub``, so
its cache, ``HF_HOME``, ``HF_HUB_OFFLINE`` and revision pinning all apply. Pickle files
(``pytorch_model.bin``) are never loaded: they can execute code.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.core import strict_json
from tuner.core.errors import WeightsError

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TINY_MARKER = "TINY_RANDOM_WEIGHTS"
"""A file written next to tiny random-init checkpoints so every result made with them says so."""
BUNDLE_FOLDERS = {"toto": "toto", "kronos": "kronos", "kronos_tokenizer": "kronos-tokenizer", "toto2": "toto2"}
"""Sub-folders of a weights bundle (``make-tiny`` writes one; ``--weights FOLDER`` reads one)."""


def bad_key(source: object, config: object, key: str, why: str) -> WeightsError:
    """A checkpoint config value refused: names the file, the key and its value."""
    return WeightsError(f"{source}: key {key!r} = {getattr(config, key)!r}: {why}")


def check_positive(source: object, config: object, keys: tuple[str, ...]) -> None:
    """Refuse the first of ``keys`` whose value in ``config`` is below 1."""
    for key in keys:
        if getattr(config, key) < 1:
            raise bad_key(source, config, key, "must be positive")


def resolve_checkpoint(source: str | os.PathLike[str], *, revision: str | None = None) -> Path:
    """Return a local folder holding ``config.json`` and ``model.safetensors`` for ``source``.

    ``source`` is a local folder, or a hub id such as ``Datadog/Toto-Open-Base-1.0``; ``revision``
    pins a hub commit, branch or tag (ignored for local folders).

    Raises:
        WeightsError: the folder lacks a file, the hub id is unknown, or the hub cannot be reached
            and nothing is cached (the message says how to point at a local folder instead).
    """
    path = Path(source).expanduser()
    if path.exists():
        return _checked_folder(path, source)
    text = str(source)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise WeightsError(
            f"weights {text!r}: no such folder, and it is not a hub id of the form 'owner/name'"
        )
    return _checked_folder(_download(text, revision), source)


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = [CONFIG_FILE, "*.safetensors", "*.safetensors.index.json", TINY_MARKER]
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError as e:
        raise WeightsError(f"weights {repo_id!r}: revision {revision!r} not found on the hub") from e
    except RepositoryNotFoundError as e:
        raise WeightsError(f"weights {repo_id!r}: no such repository on the Hugging Face hub") from e
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise WeightsError(
            f"weights {repo_id!r}: {why} and the checkpoint is not in the local cache. "
            f"Download it on a machine with access (huggingface-cli download {repo_id}) and copy "
            "the folder here, then pass it as --weights /path/to/folder; or make tiny random-init "
            "checkpoints for a dry run with `tuner models make-tiny DIR` and pass --weights DIR."
        ) from e


def _checked_folder(path: Path, source: object) -> Path:
    if not path.is_dir():
        raise WeightsError(f"weights {source!s}: {path} is not a folder")
    if not (path / CONFIG_FILE).is_file():
        raise WeightsError(f"weights {source!s}: {path} has no {CONFIG_FILE}")
    if not (path / WEIGHTS_FILE).is_file() and not list(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.glob("*.bin"))
        hint = f" (found {', '.join(pickles)}: pickle files are never loaded)" if pickles else ""
        raise WeightsError(f"weights {source!s}: {path} has no {WEIGHTS_FILE}{hint}")
    return path


def read_config(folder: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict."""
    file = folder / CONFIG_FILE
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{file}: cannot read config: {e}") from e


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint's safetensors file(s), on the CPU."""
    from safetensors.torch import load_file

    files = [folder / WEIGHTS_FILE] if (folder / WEIGHTS_FILE).is_file() else sorted(
        folder.glob("*.safetensors")
    )
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(str(file), device="cpu"))
        except Exception as e:  # safetensors raises its own SafetensorError and OSError
            raise WeightsError(f"{file}: cannot read safetensors: {e}") from e
    return state


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: object) -> None:
    """Copy ``state`` into ``module``; a missing, unexpected or mis-shaped key is an error naming it."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise WeightsError(f"weights {source!s}: checkpoint does not match the model: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"weights {source!s}: key {key!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(dict(state), strict=True)


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def save_checkpoint(
    folder: Path, config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, tiny: bool
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` the way the official checkpoints are laid out.

    Each file is written under a unique temporary name and renamed into place, so a process
    loading the folder meanwhile sees the old file or the new one, never half of one.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)

    def atomic(name: str, write) -> None:
        temp = folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            write(temp)
            os.replace(temp, folder / name)
        finally:
            temp.unlink(missing_ok=True)

    atomic(CONFIG_FILE, lambda p: p.write_text(strict_json.dumps(dict(config), indent=2, sort_keys=True) + "\n"))
    atomic(WEIGHTS_FILE, lambda p: save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(p)))
    if tiny:
        atomic(TINY_MARKER, lambda p: p.write_text(
            "Random-init weights made by `tuner models make-tiny`. Forecasts from them are noise.\n"))
    return folder


def is_tiny(folder: Path) -> bool:
    """Whether ``folder`` holds tiny random-init weights (made by ``tuner models make-tiny``)."""
    return (folder / TINY_MARKER).is_file()
