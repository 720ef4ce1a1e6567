"""Writing rebuilt Optuna studies into an Optuna storage all at once, so an export of 1,000
studies takes seconds and an interrupted one leaves nothing behind.

Optuna's own write path (``study.add_trials``) costs one transaction and a query per
attribute for every trial: 1,000 studies × 10 trials took 614 s into SQLite, and an interrupt
left 397 studies behind. Here:

* **a database** (``sqlite:///…``, ``postgresql://…``): :class:`optuna.storages.RDBStorage`
  creates or checks the schema (its own version check), then every study, trial, parameter,
  value and attribute is inserted in **one transaction** with bulk ``INSERT``\\ s into Optuna's
  tables (``optuna.storages._rdb.models``: the installed Optuna's own table definitions and its
  value encodings, e.g. ``TrialValueModel.value_to_stored_repr``). ``--replace`` deletes the
  old studies in that same transaction. A failure or Ctrl-C at any point rolls it all back;
  a killed process leaves an uncommitted transaction, which the database discards.
  ``tests/test_studies.py`` reads every exported trial back through ``optuna.load_study``, so
  a change of Optuna's schema fails there, not in a user's dashboard.
* **a journal file** (``tuning.log``, what ``JournalFileBackend`` reads): the studies are
  written through Optuna's :class:`~optuna.storages.JournalStorage` into an in-memory log that
  starts with the file's existing lines (so study and trial ids continue them), then the file
  is replaced in one step: existing lines + the new ones to a temporary file beside it, fsync,
  ``os.replace``, under the file's own Optuna lock. An interrupted export leaves the old file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from optuna.storages.journal import BaseJournalBackend

from tuner.core.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from sqlalchemy.engine import Connection


# ------------------------------------------------------------------------------------- database


def _utc_naive(moment: datetime | None) -> datetime | None:
    """How RDBStorage stores a trial's datetimes: naive UTC (a naive input is local time)."""
    return None if moment is None else moment.astimezone(timezone.utc).replace(tzinfo=None)


def write_database(storage: optuna.storages.RDBStorage, source: optuna.storages.BaseStorage,
                   replace: bool = False) -> None:
    """Insert every study of ``source`` (any Optuna storage, e.g. in memory) into ``storage`` in
    one transaction. With ``replace``, studies of the same names are deleted first, in the same
    transaction; without it a name that exists violates Optuna's unique constraint and
    nothing is written.

    Raises:
        ConfigError: the database refused the transaction (nothing of it was written).
    """
    from optuna.storages._rdb import models
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    try:
        with Session(storage.engine) as session, session.begin():
            studies = source.get_all_studies()
            if replace:
                names = [s.study_name for s in studies]
                for old in session.scalars(select(models.StudyModel).where(models.StudyModel.study_name.in_(names))):
                    session.delete(old)  # the models' cascades remove its trials and attributes
                session.flush()
            _insert_studies(session.connection(), source, studies)
    except SQLAlchemyError as e:
        raise ConfigError(f"{storage.url if hasattr(storage, 'url') else 'the database'}: the export was "
                          f"rolled back, nothing was written: {type(e).__name__}: {str(e).splitlines()[0]}") from e


def _insert_studies(conn: Connection, source: optuna.storages.BaseStorage,
                    studies: Iterable[optuna.study.FrozenStudy]) -> None:
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    tables = {name: model.__table__ for name, model in (
        ("studies", models.StudyModel), ("directions", models.StudyDirectionModel),
        ("study_user", models.StudyUserAttributeModel), ("study_system", models.StudySystemAttributeModel),
        ("trials", models.TrialModel), ("params", models.TrialParamModel), ("values", models.TrialValueModel),
        ("trial_user", models.TrialUserAttributeModel), ("trial_system", models.TrialSystemAttributeModel),
        ("intermediate", models.TrialIntermediateValueModel))}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
    for study in studies:
        study_id = conn.execute(tables["studies"].insert().values(study_name=study.study_name)
                                ).inserted_primary_key[0]
        rows["directions"] += [{"study_id": study_id, "objective": i, "direction": d}
                               for i, d in enumerate(study.directions)]
        rows["study_user"] += [{"study_id": study_id, "key": k, "value_json": json.dumps(v)}
                               for k, v in study.user_attrs.items()]
        rows["study_system"] += [{"study_id": study_id, "key": k, "value_json": json.dumps(v)}
                                 for k, v in study.system_attrs.items()]
        trials = source.get_all_trials(source.get_study_id_from_name(study.study_name), deepcopy=False)
        ids = _insert_trials(conn, tables["trials"], [
            {"study_id": study_id, "number": t.number, "state": t.state,
             "datetime_start": _utc_naive(t.datetime_start), "datetime_complete": _utc_naive(t.datetime_complete)}
            for t in trials])
        for trial_id, t in zip(ids, trials, strict=True):
            for objective, value in enumerate(t.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                rows["values"].append({"trial_id": trial_id, "objective": objective, "value": stored,
                                       "value_type": kind})
            for name, value in t.params.items():
                dist = t.distributions[name]
                rows["params"].append({"trial_id": trial_id, "param_name": name,
                                       "param_value": dist.to_internal_repr(value),
                                       "distribution_json": distribution_to_json(dist)})
            rows["trial_user"] += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                   for k, v in t.user_attrs.items()]
            rows["trial_system"] += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                     for k, v in t.system_attrs.items()]
            for step, value in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                rows["intermediate"].append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                                             "intermediate_value_type": kind})
    for name, batch in rows.items():
        if batch:
            conn.execute(tables[name].insert(), batch)  # executemany: one statement, many rows


def _insert_trials(conn: Connection, table, trials: list[dict[str, Any]]) -> list[int]:
    """Insert a study's trials; their new ids, in order (one statement where the database
    returns ids for a multi-row insert, else one insert per trial, in the same transaction)."""
    if not trials:
        return []
    if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        result = conn.execute(table.insert().returning(table.c.trial_id, sort_by_parameter_order=True), trials)
        return [row[0] for row in result]
    return [conn.execute(table.insert().values(**t)).inserted_primary_key[0] for t in trials]


# ------------------------------------------------------------------------------------- journal file


class BufferedJournal(BaseJournalBackend):
    """A journal backend that holds a file's existing log lines and collects new ones in
    memory, for :func:`write_journal_file` to write at once."""

    def __init__(self, existing: list[dict[str, Any]]) -> None:
        self.existing = existing
        self.new: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        if log_number_from >= len(self.existing):
            return self.new[log_number_from - len(self.existing):]
        return self.existing[log_number_from:] + self.new

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.new.extend(logs)


def read_journal_file(path: str) -> tuple[BufferedJournal, int]:
    """A :class:`BufferedJournal` holding the file's logs (none when it does not exist yet),
    and the file's size when read (to check nothing was appended meanwhile)."""
    from optuna.storages.journal import JournalFileBackend

    if not os.path.exists(path):
        return BufferedJournal([]), 0
    size = os.path.getsize(path)
    try:
        return BufferedJournal(list(JournalFileBackend(path).read_logs(0))), size
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path}: not an Optuna journal file that can be read: {e}") from e


def write_journal_file(path: str, journal: BufferedJournal, size_read: int) -> None:
    """Replace the file at ``path`` by its old content plus ``journal.new``, atomically, under
    Optuna's lock for that file.

    Raises:
        ConfigError: the file changed since it was read (another writer): nothing written.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"--storage-url {path}: folder {folder} does not exist; nothing was written")
    lock = JournalFileSymlinkLock(path)
    lock.acquire()
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        now = os.path.getsize(path) if os.path.exists(path) else 0
        if now != size_read:
            raise ConfigError(f"{path} changed while exporting ({size_read} → {now} bytes: another process "
                              "writes to it); nothing was written, export again")
        lines = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in journal.new).encode()
        with open(tmp, "wb") as out:
            if size_read:
                with open(path, "rb") as old:
                    out.write(old.read(size_read))
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except OSError as e:  # a full or read-only disk: the old file stands
        raise ConfigError(f"{path}: the export could not be written, nothing was: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)  # interrupted before the rename: the old file stands
        lock.release()
