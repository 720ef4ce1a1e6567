"""Why studies ended without a winner, per family: the last lines of a run that leaves any.

``studies.parquet``'s ``without_winner`` column (``summary.json``'s ``studies_without_winner`` in
experiments collated before the tables) says per study that it has none ("no completed trial"); a user needs the cause (the trials' errors), grouped so a dead family reads as one
line, not hundreds. ``tuner run``/``tuner resume`` print these lines last and exit with a
distinct status (see the CLI).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from tuner.core.summary_tables import ExperimentSummary

ERROR_CHARS = 200
"""An error shown on a cause line is cut to this many characters (its first line only)."""


class FinishedTrial(Protocol):
    """What is read of each trial (a journal record or a collated trial record)."""

    symbol: str
    family: str
    status: str
    error: str | None


def cause_lines(summary: ExperimentSummary | Mapping[str, Any], trials: Iterable[FinishedTrial]) -> list[str]:
    """One line per family with studies without a winner: how many, why (the summary's reason
    and the trials' most common error), and how many trials failed. Empty when every study has
    a winner. ``summary``: the experiment's, or an old-shape summary document (its dicts)."""
    if not isinstance(summary, ExperimentSummary):
        summary = ExperimentSummary(None, summary)  # type: ignore[arg-type]  # an old-shape document
    if not summary.without_winner_count():
        return []
    missing = summary.without_winner()
    by_family: dict[str, list[str]] = {}
    for study in missing:
        by_family.setdefault(study.rsplit("/", 1)[-1], []).append(study)
    studies = summary.study_counts()
    failed: Counter[str] = Counter()
    errors: dict[str, Counter[str]] = {}
    for t in trials:
        if t.status == "failed" and f"{t.symbol}/{t.family}" in missing:
            failed[t.family] += 1
            text = (t.error or "").strip()
            first = text.splitlines()[0] if text else "no error recorded"
            errors.setdefault(t.family, Counter())[first[:ERROR_CHARS]] += 1
    lines = []
    for family, keys in sorted(by_family.items()):
        total = sum(1 for k in studies if k.rsplit("/", 1)[-1] == family) or len(keys)
        reasons = Counter(missing[k] for k in keys).most_common(1)[0][0]
        line = f"NO WINNER {family}: {len(keys)} of {total} studies ({reasons})"
        if failed[family]:
            error, times = errors[family].most_common(1)[0]
            line += f"; {failed[family]} trials failed, {times} with: {error}"
        lines.append(line)
    return lines
