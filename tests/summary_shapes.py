"""Test helpers for the summary's two shapes: the tables (``summary.json`` short, ``symbols.parquet``
and ``studies.parquet`` beside it) and the old one (every dict inside ``summary.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner.core.storage import STUDIES_FILE, SUMMARY_FILE, SYMBOLS_FILE, Storage
from tuner.core.summary_tables import ExperimentSummary


def tables(folder: str | Path) -> ExperimentSummary:
    """The experiment at ``folder`` (``<storage>/<name>``), read through the one reader."""
    folder = Path(folder)
    return ExperimentSummary.read(Storage(str(folder.parent), folder.name))


def entries(folder: str | Path) -> dict[str, dict[str, Any]]:
    """What ``summary["symbols"]`` held: symbol → its entry."""
    return tables(folder).entries_dict()


def to_legacy(folder: str | Path, edit=None) -> dict[str, Any]:
    """Rewrite the experiment at ``folder`` in the old shape (what experiments collated before
    the tables hold): the dicts back inside ``summary.json``, the tables gone. ``edit(entries)``
    may change the entries first. Returns the old-shape summary."""
    folder = Path(folder)
    read = tables(folder)
    symbols = read.entries_dict()
    if edit is not None:
        edit(symbols)
    summary = {k: v for k, v in read.document.items() if k not in ("tables", "counts")}
    summary.update(symbols=symbols, studies=read.study_counts(), studies_without_winner=read.without_winner(),
                   windows_used=read.windows_used())
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    (folder / SYMBOLS_FILE).unlink()
    (folder / STUDIES_FILE).unlink()
    return summary


def rewrite_entries(folder: str | Path, edit) -> None:
    """Rewrite ``symbols.parquet`` of the experiment at ``folder`` with ``edit(entries)`` applied
    (a planted, hostile table: the same collation's stamp, so readers take it)."""
    from tuner.core.summary_tables import ROW_GROUP, symbols_table

    folder = Path(folder)
    read = tables(folder)
    symbols = read.entries_dict()
    edit(symbols)
    Storage(str(folder.parent), folder.name).write_parquet(
        SYMBOLS_FILE, symbols_table(symbols, read.document.get("created_at")), ROW_GROUP)
