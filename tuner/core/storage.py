"""Where experiments live: a local folder, a shared filesystem path, or a URI (s3://, gs://).

Every path is built by :func:`contained`, which refuses to leave its root: names that come from
data (symbols) never become paths outside the experiment. Writes are atomic: a file is written
under a temporary name and renamed into place (local and shared filesystems), or uploaded in one
PUT (object stores, where an object appears whole or not at all; a streamed write, under a
temporary key then moved). Temporary names are unique per writer, so parallel writers never race on a rename.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from tuner.core.errors import ConfigError, DamagedFile, UnsafePath

# The files of an experiment folder (Ray Tune's own files live under _tune/).
CONFIG_FILE = "tuner-experiment.json"
"""The experiment config as run (what ``tuner resume`` and ``tuner status`` read)."""
PROGRESS_FILE = "progress.json"
"""Live per-study progress, rewritten during the run."""
SUMMARY_FILE = "summary.json"
"""The collated summary, written when the run ends: short, experiment-level facts and tallies
with pointers to the two tables beside it (see :mod:`tuner.core.summary_tables`)."""
SYMBOLS_FILE = "symbols.parquet"
"""One row per symbol with a winner: key columns and the symbol's whole summary entry as JSON."""
STUDIES_FILE = "studies.parquet"
"""One row per study: trial counts against the budget and, without a winner, why."""
TRIALS_FILE = "trials.parquet"
"""One row per Optuna trial."""
TUNE_DIR = "_tune"
"""Ray Tune's own files (experiment state, trial folders), apart from the product's."""
REBUILT_BY_RESUME = (SUMMARY_FILE, SYMBOLS_FILE, STUDIES_FILE, PROGRESS_FILE, TRIALS_FILE)
"""Outputs that ``tuner resume`` rebuilds from the journal when they are damaged."""


DEFAULT_ROOT = "results"
"""Where experiments live when no ``--storage`` is given (relative to the working directory)."""
TEMP_NAME = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")
"""A temporary file of :meth:`Storage.write_bytes` (``.<name>.<pid>.<8 hex>.tmp``)."""

Relative = str | tuple[str, ...]
"""A path inside a storage: a string of ``/``-separated names written by the code itself
(``journal/chunk-000001.jsonl``), or a tuple of names, each ONE name, for any name that comes
from data (``("toto", f"{symbol}.json")``): a ``/`` inside a tuple's name is refused, not followed."""


def _temp_name(target: Path) -> Path:
    """Where ``target`` is written before it is renamed into place (:data:`TEMP_NAME`): unique
    per writer, so parallel writers never race on a rename."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def is_uri(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def contained(root: str, *names: str) -> str:
    """``root/name/name/...``: the one way every path forecast-tuner writes (and reads) is built.

    Each name must be one plain file or folder name: not empty, not ``.`` or ``..``, with no
    ``/`` or ``\\`` inside and no control character (newline, tab, NUL...). For a local ``root``
    the result is also resolved, symbolic links followed, and must lie inside the resolved root,
    so a link inside the storage cannot lead out either. For a URI (``s3://``, ``gs://``: no
    links) the check on the names is the whole check.

    Returns:
        the path as a string: local paths absolute, under the resolved ``root``.

    Raises:
        UnsafePath: naming the root, the path asked for and the offending name.
    """
    for name in names:
        why = _bad_name(name)
        if why is not None:
            shown = "/".join(n if isinstance(n, str) else repr(n) for n in names)
            raise UnsafePath(f"{root}: refusing the path {shown!r}: the name {name!r} {why}; every "
                             "file forecast-tuner writes stays inside its storage (or configs/best/)")
    if is_uri(root):
        return "/".join([root.rstrip("/"), *names])
    base = Path(root.removeprefix("file://")).expanduser().resolve()
    target = base.joinpath(*names)
    real = target.resolve()
    if real != base and base not in real.parents:
        raise UnsafePath(f"{root}: refusing the path {'/'.join(names)!r}: it leads to {real} through a "
                         "symbolic link, outside the storage")
    return str(target)


def _bad_name(name: object) -> str | None:
    """Why ``name`` is not one plain path name, or None."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if name == "":
        return "is empty (an absolute path, or '//')"
    if name in (".", ".."):
        return "points at a folder above or at its own"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character (newline, tab, NUL...)"
    return None


def _names(relative: Relative) -> tuple[str, ...]:
    """The names of a :data:`Relative` path: a string split at ``/``, a tuple as it is."""
    return tuple(relative.split("/")) if isinstance(relative, str) else tuple(relative)


def _json_text(data: Any) -> str:
    """How every JSON file is written (:meth:`Storage.write_json`, :meth:`Storage.add_json_key`)."""
    from tuner.core.strict_json import dumps

    return dumps(data, indent=2, default=str)


class Storage:
    """An experiment root (``<storage>/<name>``) that files are read from and written to.

    Every path goes through :func:`contained`: ``name`` must be one plain name, and no path
    asked of a storage can leave its root (:class:`~tuner.core.errors.UnsafePath`).
    """

    def __init__(self, root: str, name: str) -> None:
        base = root if is_uri(root) else str(Path(root.removeprefix("file://")).expanduser().resolve())
        self._open(base, contained(base, name), name)

    @classmethod
    def at(cls, folder: str | Path) -> Storage:
        """A storage whose root is ``folder`` itself, e.g. ``configs/best`` or a report's folder."""
        folder = str(folder)
        root = folder.rstrip("/") if is_uri(folder) else str(Path(folder.removeprefix("file://")).expanduser().resolve())
        self = cls.__new__(cls)
        self._open(root.rsplit("/", 1)[0] or "/", root, root.rsplit("/", 1)[-1])
        return self

    def _open(self, base: str, root: str, name: str) -> None:
        self.base, self.root, self.name = base, root, name
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

    def command(self, verb: str, *options: str) -> str:
        """``tuner VERB NAME [options]``, with ``--storage ROOT`` when this storage is not the
        default ``results`` folder of the working directory: a command that works where pasted."""
        words = ["tuner", verb, shlex.quote(self.name)]
        if self.base != str(Path(DEFAULT_ROOT).resolve()):
            words += ["--storage", shlex.quote(self.base)]
        return " ".join([*words, *options])

    def path(self, *relative: Relative) -> str:
        """The full path (or URI) of ``relative`` (see :data:`Relative`), checked by :func:`contained`."""
        return contained(self.root, *(n for r in relative for n in _names(r)))

    def _fs_path(self, relative: Relative) -> str:
        """The path pyarrow's filesystem takes (``bucket/prefix/...``), checked like :meth:`path`."""
        names = _names(relative)
        contained(self.root, *names)
        return "/".join([self._path, *names])

    def _local(self, *relative: Relative) -> Path:
        return Path(self.path(*relative))

    def exists(self, *relative: Relative) -> bool:
        if self.fs is None:
            return self._local(*relative).exists()
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self._fs_path(tuple(n for r in relative for n in _names(r))))
        return info.type != pafs.FileType.NotFound

    def write_bytes(self, relative: Relative, data: bytes) -> str:
        if self.fs is None:
            target = self._local(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_name(target)
            try:
                tmp.write_bytes(data)
                os.replace(tmp, target)
            except OSError:
                tmp.unlink(missing_ok=True)  # a full disk must not leave half-written temp files
                raise
            return str(target)
        path = self._fs_path(relative)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:
            out.write(data)
        return self.path(relative)

    @contextlib.contextmanager
    def write_stream(self, relative: Relative) -> Iterator[BinaryIO]:
        """A file written piece by piece (``with storage.write_stream(name) as out:
        out.write(...)``), so a large one is never whole in memory; like :meth:`write_bytes` it
        appears only once complete: written under a temporary name and renamed (an object
        store: uploaded under a temporary key and moved), and on an error removed, not left."""
        if self.fs is None:
            target = self._local(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_name(target)
            try:
                with tmp.open("wb") as out:
                    yield out
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return
        path = self._fs_path(relative)
        folder, name = path.rsplit("/", 1)
        tmp_path = f"{folder}/{_temp_name(Path(name)).name}"
        self.fs.create_dir(folder, recursive=True)
        try:
            with self.fs.open_output_stream(tmp_path) as out:
                yield out
            self.fs.move(tmp_path, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp_path)
            raise

    def remove_temp_files(self) -> int:
        """Delete the temporary files a write cut short left behind (a process killed between
        writing and renaming: :meth:`write_bytes`); returns how many. Only for a caller that
        holds the experiment's lock, when nothing else writes here. On object stores only a
        streamed write (:meth:`write_stream`) uses a temporary key; one a kill left is not
        looked for."""
        root = Path(self.root)
        if self.fs is None and root.is_dir():
            stale = [p for p in root.rglob(".*.tmp") if p.is_file() and TEMP_NAME.match(p.name)]
            for path in stale:
                path.unlink(missing_ok=True)
            return len(stale)
        return 0

    def list(self, relative: Relative) -> list[str]:
        """Names of the files in a folder of the experiment (none when it does not exist)."""
        if self.fs is None:
            folder = self._local(relative)
            return [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self._fs_path(relative), allow_not_found=True)
        return [info.base_name for info in self.fs.get_file_info(selector)
                if info.type == pafs.FileType.File]

    def delete(self, relative: Relative) -> None:
        if self.fs is None:
            self._local(relative).unlink(missing_ok=True)
        else:
            self.fs.delete_file(self._fs_path(relative))

    def read_bytes(self, relative: Relative) -> bytes:
        if self.fs is None:
            return self._local(relative).read_bytes()
        with self.fs.open_input_stream(self._fs_path(relative)) as f:
            return f.read()

    def write_json(self, relative: Relative, data: Any) -> str:
        """Strict JSON: NaN/Infinity become null with a reason beside them (never invalid JSON)."""
        return self.write_bytes(relative, (_json_text(data) + "\n").encode())

    def add_json_key(self, relative: Relative, key: str, value: Mapping[str, Any]) -> str:
        """Give the JSON object :meth:`write_json` wrote at ``relative`` one more key, last: the
        same bytes as writing the object with it, but the file's text is extended rather than
        parsed and written again (that round trip was a quarter of the collation tasks' CPU).

        Raises:
            DamagedFile: the file does not end as ``write_json`` ends an object.
            ValueError: the object has ``key`` already."""
        if not isinstance(value, Mapping):  # a non-finite scalar would need a reason key beside it
            raise TypeError(f"add_json_key takes a mapping, not {type(value).__name__}")
        text, end = self.read_bytes(relative), b"\n}\n"
        if not (text.startswith(b"{\n") and text.endswith(end)):
            raise DamagedFile(self._damaged(relative, "not a JSON object as forecast-tuner writes one"))
        name = json.dumps(key)
        if f"\n  {name}: ".encode() in text:  # only a top-level key sits two spaces in
            raise ValueError(f"{self.path(relative)} has {name} already")
        member = f"{name}: " + _json_text(value).replace("\n", "\n  ")
        return self.write_bytes(relative, text[:-len(end)] + b",\n  " + member.encode() + end)

    def read_json(self, relative: Relative) -> Any:
        data = self.read_bytes(relative)
        try:
            return json.loads(data)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise DamagedFile(self._damaged(relative, f"not valid JSON ({e})")) from e

    def write_parquet(self, relative: Relative, frame, row_group_size: int | None = None) -> str:
        """A pandas DataFrame, or a pyarrow Table (its schema metadata kept), as one Parquet file."""
        with self.write_stream(relative) as out:
            if hasattr(frame, "to_parquet"):
                frame.to_parquet(out, index=False, row_group_size=row_group_size)
            else:
                import pyarrow.parquet as pq

                pq.write_table(frame, out, row_group_size=row_group_size)
        return self.path(relative)

    def write_parquet_parts(self, relative: Relative, schema, parts: Iterable) -> str:
        """pyarrow Tables of ``schema`` (its metadata kept), made and written one at a time, each
        as its own row group(s), into one Parquet file: the whole table is never in memory."""
        import pyarrow.parquet as pq

        with self.write_stream(relative) as out, pq.ParquetWriter(out, schema) as writer:
            for part in parts:
                writer.write_table(part)
        return self.path(relative)

    def read_table(self, relative: Relative, columns: list[str] | None = None, filters=None):
        """A Parquet file as a pyarrow Table, only ``columns`` (None: all) and the rows
        ``filters`` keep (pyarrow's DNF filters): the other columns are never decoded and row
        groups the filters rule out never read.

        Raises:
            FileNotFoundError: no such file.
            DamagedFile: not a readable Parquet file, or a column asked for is not in it.
        """
        import pyarrow.parquet as pq

        with self._parquet_errors(relative):
            if self.fs is None:
                return pq.read_table(self.path(relative), columns=columns, filters=filters)
            return pq.read_table(self._fs_path(relative), filesystem=self.fs, columns=columns, filters=filters)

    def iter_batches(self, relative: Relative, columns: list[str], batch_size: int):
        """A Parquet file's ``columns``, ``batch_size`` rows at a time (pyarrow RecordBatches): one
        row group in memory at once, not the whole table.

        Raises:
            FileNotFoundError: no such file.
            DamagedFile: not a readable Parquet file.
        """
        import pyarrow.parquet as pq

        with self._parquet_errors(relative):
            source = self.path(relative) if self.fs is None else self.fs.open_input_file(self._fs_path(relative))
            yield from pq.ParquetFile(source).iter_batches(batch_size=batch_size, columns=columns)

    def read_schema(self, relative: Relative):
        """A Parquet file's schema (with its metadata), reading only the footer."""
        import pyarrow.parquet as pq

        with self._parquet_errors(relative):
            if self.fs is None:
                return pq.read_schema(self.path(relative))
            return pq.read_schema(self._fs_path(relative), filesystem=self.fs)

    @contextlib.contextmanager
    def _parquet_errors(self, relative: Relative):
        """A missing file stays FileNotFoundError; anything pyarrow cannot read becomes
        DamagedFile naming the file."""
        import pyarrow as pa

        try:
            yield
        except FileNotFoundError:
            raise
        except (ValueError, OSError, KeyError, pa.ArrowException) as e:
            raise DamagedFile(self._damaged("/".join(_names(relative)),
                                            f"not a readable Parquet file ({e})")) from e

    def read_parquet(self, relative: Relative):
        import pandas as pd
        import pyarrow as pa

        data = self.read_bytes(relative)
        try:
            return pd.read_parquet(io.BytesIO(data))
        except (ValueError, OSError, pa.ArrowException) as e:  # ArrowInvalid: not a Parquet file
            raise DamagedFile(self._damaged(relative, f"not a readable Parquet file ({e})")) from e

    def _damaged(self, relative: str, what: str) -> str:
        """A damaged file's message: which file, what is wrong, and the way back."""
        resume = self.command("resume")
        if relative in REBUILT_BY_RESUME:
            way = f"`{resume}` rebuilds it from the experiment's journal"
        elif relative == CONFIG_FILE:
            way = "it holds the experiment's settings: restore it from a backup"
        else:
            way = (f"restore it from a backup, or move {SUMMARY_FILE} aside and run `{resume}`, which "
                   "rebuilds every output from the experiment's journal")
        return f"{self.path(relative)}: {what}: the file is damaged; {way}."
