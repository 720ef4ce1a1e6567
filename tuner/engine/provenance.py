"""Which journal records belong to an experiment: its id, its families, its symbols.

A chunk copied from another experiment, or a record of a study the experiment does not run,
would otherwise be merged into its studies and rewrite its winners; reading refuses both,
naming the file and line (:func:`tuner.engine.journal.read_journal`).

Every experiment gets a random id when it is created, kept in ``tuner-experiment.json``
(``experiment_id``) and written into every journal record. An experiment created before ids
existed gets one on its first resume (``experiment_id_since_session``); its earlier records,
written without an id, are accepted from those earlier sessions only.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

ID_KEY = "experiment_id"
SINCE_KEY = "experiment_id_since_session"
"""Keys of ``tuner-experiment.json``: the id, and the first session whose records carry it."""


@dataclass(frozen=True)
class Provenance:
    """What a journal record must match to be one of this experiment's.

    Attributes:
        experiment_id: the experiment's id (32 hex digits).
        since_session: first session whose records carry the id; a record without an id is
            accepted only from an earlier session (written before experiments had ids).
        families: the experiment's families.
        symbols: its symbols; None = not known yet (every symbol of its data).
        studies: the study keys (``"SYMBOL/family"``) this session runs; None = not checked.
        skipped: why a study or symbol of the data was skipped this session (named in the
            refusal of a record of such a study).
    """

    experiment_id: str
    since_session: int = 1
    families: Collection[str] = ()
    symbols: Collection[str] | None = None
    studies: Collection[str] | None = None
    skipped: Mapping[str, str] | None = None

    def refuses(self, record: Any) -> str | None:
        """Why ``record`` (a :class:`~tuner.engine.journal.JournalRecord`) is not this
        experiment's, or None when it is."""
        if record.experiment is None:
            if record.session >= self.since_session:
                return (f"it carries no experiment id, but this experiment's records carry one from "
                        f"session {self.since_session} (this is session {record.session}'s)")
        elif record.experiment != self.experiment_id:
            return (f"it belongs to another experiment (id {record.experiment}, this one is "
                    f"{self.experiment_id}): a chunk copied from elsewhere")
        symbol, family = record.symbol, record.family
        if family not in self.families:
            return f"family {family!r} is not one of this experiment's ({', '.join(self.families)})"
        if self.symbols is not None and symbol not in self.symbols:
            return f"symbol {symbol!r} is not one of this experiment's symbols"
        if self.studies is not None and record.study not in self.studies:
            why = (self.skipped or {}).get(record.study) or (self.skipped or {}).get(symbol)
            return (f"study {record.study!r} is not among this run's studies"
                    + (f" (skipped: {why})" if why else f" (symbol {symbol!r} is not in the data)"))
        return None


def experiment_identity(stored: Mapping[str, Any] | None, session: int) -> tuple[str, int]:
    """The experiment's (id, first session carrying it): the stored ones, or a new id from this
    session on (a new experiment, or one created before experiments had ids)."""
    if stored and isinstance(stored.get(ID_KEY), str) and stored[ID_KEY]:
        since = stored.get(SINCE_KEY, 1)
        return stored[ID_KEY], since if isinstance(since, int) and since >= 1 else 1
    # A new experiment's records all carry the id; an older one's earlier sessions had none.
    return uuid.uuid4().hex, max(1, session) if stored else 1
