"""Where experiments live: a local folder, a shared filesystem path, or a URI (s3://, gs://).

Writes are atomic: a file is written under a temporary name and renamed into place (local and
shared filesystems), or uploaded in one PUT (object stores, where an object appears whole or not
at all). Temporary names are unique per writer, so parallel writers never race on a rename.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

from tuner.core.errors import ConfigError, DamagedFile

# The files of an experiment folder (Ray Tune's own files live under _tune/).
CONFIG_FILE = "tuner-experiment.json"
"""The experiment config as run (what ``tuner resume`` and ``tuner status`` read)."""
PROGRESS_FILE = "progress.json"
"""Live per-study progress, rewritten during the run."""
SUMMARY_FILE = "summary.json"
"""The collated summary, written when the run ends."""
TRIALS_FILE = "trials.parquet"
"""One row per Optuna trial."""
TUNE_DIR = "_tune"
"""Ray Tune's own files (experiment state, trial folders), apart from the product's."""
REBUILT_BY_RESUME = (SUMMARY_FILE, PROGRESS_FILE, TRIALS_FILE)
"""Outputs that ``tuner resume`` rebuilds from the journal when they are damaged."""


def is_uri(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


class Storage:
    """An experiment root (``<storage>/<name>``) that files are read from and written to."""

    def __init__(self, root: str, name: str) -> None:
        self.base = root if is_uri(root) else str(Path(root.removeprefix("file://")).expanduser().resolve())
        self.name = name
        self.root = f"{self.base.rstrip('/')}/{name}"
        if is_uri(self.root):
            import pyarrow.fs as pafs

            try:
                self.fs, self._path = pafs.FileSystem.from_uri(self.root)
            except Exception as e:  # pyarrow raises ArrowInvalid / OSError for bad URIs
                raise ConfigError(f"storage: cannot use {self.root!r}: {e}") from e
        else:
            self.fs, self._path = None, self.root

    @property
    def tune_storage_path(self) -> str:
        """What Ray Tune's ``RunConfig(storage_path=...)`` gets: its runs live under ``_tune/``."""
        return self.path(TUNE_DIR)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _local(self, *parts: str) -> Path:
        return Path(self._path, *parts)

    def exists(self, *parts: str) -> bool:
        if self.fs is None:
            return self._local(*parts).exists()
        import pyarrow.fs as pafs

        info = self.fs.get_file_info("/".join([self._path, *parts]))
        return info.type != pafs.FileType.NotFound

    def write_bytes(self, relative: str, data: bytes) -> str:
        if self.fs is None:
            target = self._local(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)  # a full disk must not leave half-written temp files
                raise
            return str(target)
        path = f"{self._path}/{relative}"
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        return self.path(relative)

    def list(self, relative: str) -> list[str]:
        """Names of the files in a folder of the experiment (none when it does not exist)."""
        if self.fs is None:
            folder = self._local(relative)
            return [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(f"{self._path}/{relative}", allow_not_found=True)
        return [info.base_name for info in self.fs.get_file_info(selector)
                if info.type == pafs.FileType.File]

    def delete(self, relative: str) -> None:
        if self.fs is None:
            self._local(relative).unlink(missing_ok=True)
        else:
            self.fs.delete_file(f"{self._path}/{relative}")

    def read_bytes(self, relative: str) -> bytes:
        if self.fs is None:
            return self._local(relative).read_bytes()
        with self.fs.open_input_stream(f"{self._path}/{relative}") as f:
            return f.read()

    def write_json(self, relative: str, data: Any) -> str:
        """Strict JSON: NaN/Infinity become null with a reason beside them (never invalid JSON)."""
        from tuner.core.strict_json import dumps

        return self.write_bytes(relative, (dumps(data, indent=2, default=str) + "\n").encode())

    def read_json(self, relative: str) -> Any:
        data = self.read_bytes(relative)
        try:
            return json.loads(data)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise DamagedFile(self._damaged(relative, f"not valid JSON ({e})")) from e

    def write_parquet(self, relative: str, frame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(relative, buffer.getvalue())

    def read_parquet(self, relative: str):
        import pandas as pd
        import pyarrow as pa

        data = self.read_bytes(relative)
        try:
            return pd.read_parquet(io.BytesIO(data))
        except (ValueError, OSError, pa.ArrowException) as e:  # ArrowInvalid: not a Parquet file
            raise DamagedFile(self._damaged(relative, f"not a readable Parquet file ({e})")) from e

    def _damaged(self, relative: str, what: str) -> str:
        """A damaged file's message: which file, what is wrong, and the way back."""
        resume = f"tuner resume {self.name} --storage {self.base}"
        if relative in REBUILT_BY_RESUME:
            way = f"`{resume}` rebuilds it from the experiment's journal"
        elif relative == CONFIG_FILE:
            way = "it holds the experiment's settings: restore it from a backup"
        else:
            way = (f"restore it from a backup, or move {SUMMARY_FILE} aside and run `{resume}`, which "
                   "rebuilds every output from the experiment's journal")
        return f"{self.path(relative)}: {what}: the file is damaged; {way}."
