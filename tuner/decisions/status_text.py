"""What ``tuner status NAME`` prints: by default a summary that fits an 80 × 24 terminal
whatever the number of studies (whether the run is live, totals, families, the best and worst
studies by skill, recent failures, the finished tallies); every study and symbol with ``--all``,
or those that ``--family``/``--symbol`` select.

Input is :func:`tuner.engine.experiment.experiment_status`'s dict (``progress.json``,
``summary.json`` with its tables, read through ``results`` by the columns a section shows,
the lock's holder); no Ray. Each section is its own function, so a section
can change without touching the others.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.core.summary_tables import ExperimentSummary
from tuner.engine.lock import judge

WIDTH, HEIGHT = 80, 24
"""The screen the default view fits (lines are cut to WIDTH, at most HEIGHT of them)."""
TOP = 5
"""Best and worst studies shown at most (fewer when the screen is short of lines)."""
FAILURES = 3
"""Recent failures shown at most."""
STALE_S = 90.0
"""A lock whose heartbeat (every 30 s) is older than this belongs to a run that is gone."""


@dataclass(frozen=True)
class StatusFilter:
    """What the user asked to see.

    Attributes:
        family: only this family's studies (None: all).
        symbols: only these symbols (empty: all).
        show_all: list every selected study and symbol, however many (``--all``).
    """

    family: str | None = None
    symbols: frozenset[str] = frozenset()
    show_all: bool = False

    @property
    def narrowed(self) -> bool:
        return self.family is not None or bool(self.symbols)

    def wants(self, study: str) -> bool:
        symbol, _, family = study.rpartition("/")
        return (self.family is None or family == self.family) and (not self.symbols or symbol in self.symbols)


def status_lines(info: Mapping[str, Any], chosen: StatusFilter = StatusFilter(), width: int = WIDTH,
                 height: int = HEIGHT, now: Callable[[], float] = time.time) -> list[str]:
    """The lines ``tuner status`` prints. Without ``--all`` they fit ``width`` × ``height``:
    the per-study and per-symbol lists appear only when filtered, and are cut to the lines left
    (saying how many more there are and how to see them)."""
    progress, summary = info.get("progress"), info.get("summary")
    name = info.get("experiment", "")
    lines = [f"experiment {name} at {info.get('root', '')}", state_line(info, now())]
    lines += totals_lines(progress, summary, is_live(info, now()))
    lines += family_lines(progress)
    results = _results(info)
    tail = summary_lines(summary, results)
    failures = failure_lines(progress)
    studies = _selected_studies(progress, chosen) if chosen.narrowed or chosen.show_all else []
    symbols = _selected_symbols(results, chosen) if chosen.narrowed or chosen.show_all else []
    if chosen.show_all:
        lines += ranking_lines(progress, TOP) + failures + tail
        lines += study_lines(studies, len(studies)) + symbol_lines(symbols, len(symbols))
        return lines
    hint = [f"{len(studies or _all_studies(progress))} studies: `tuner status {name} --all` lists each; "
            "--family, --symbol select some"]
    room = height - len(lines) - len(failures) - len(tail) - len(hint)
    if studies or symbols:
        listed = study_lines(studies, max(2, room // (2 if symbols else 1)))
        listed += symbol_lines(symbols, max(2, room - len(listed)))
        lines += failures + tail + listed
    else:
        lines += ranking_lines(progress, max(0, min(TOP, room - 1))) + failures + tail + hint
    return [_cut(line, width) for line in lines]


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[:width - 1] + "…"


# ------------------------------------------------------------------------------------- sections


def is_live(info: Mapping[str, Any], now: float) -> bool:
    """A run holds the experiment: its lock's heartbeat is recent, and when the holder ran on
    this host its process still exists (a killed run leaves a fresh-looking lock behind)."""
    lock = info.get("lock")
    beat = lock.get("heartbeat") if isinstance(lock, Mapping) else None
    if not (isinstance(beat, (int, float)) and now - beat <= STALE_S):
        return False
    if lock.get("host") == socket.gethostname():
        return not judge(json.dumps(lock).encode(), now).gone
    return True


def state_line(info: Mapping[str, Any], now: float) -> str:
    """Whether a run is live (:func:`is_live`); else finished, or stopped."""
    lock, summary, name = info.get("lock"), info.get("summary"), info.get("experiment", "")
    beat = lock.get("heartbeat") if isinstance(lock, Mapping) else None
    if is_live(info, now):
        return (f"running: pid {lock.get('pid')} on {lock.get('host')} since {lock.get('since')} "
                f"(heartbeat {max(0.0, now - beat):.0f} s ago)")
    if lock:
        return (f"not running: its lock (pid {lock.get('pid')} on {lock.get('host')}) has no heartbeat "
                f"since {_age(now - beat) if isinstance(beat, (int, float)) else 'ever'}; "
                f"`tuner resume {name}` continues it")
    if summary and summary.get("complete"):
        return "not running: finished, every study complete"
    return f"not running: stopped before it finished; `tuner resume {name}` continues it"


def _age(seconds: float) -> str:
    return f"{seconds / 60:.0f} min ago" if seconds >= 120 else f"{seconds:.0f} s ago"


def totals_lines(progress: Mapping[str, Any] | None, summary: Mapping[str, Any] | None,
                 live: bool = False) -> list[str]:
    if not progress:
        return [] if summary else ["no progress recorded yet"]
    done, total = progress.get("trials_done", 0), progress.get("trials_total", 0)
    failed = sum(f.get("failed", 0) for f in (progress.get("families") or {}).values())
    share = f" ({100 * done / total:.0f} %)" if total else ""
    line = f"trials {done:,}/{total:,}{share}, {failed:,} failed"
    if live:  # rate and ETA mean something only while it runs
        line += f", {progress.get('trials_per_s', 0.0):.1f}/s, ETA {progress.get('eta', '?')}"
    return [line]


def family_lines(progress: Mapping[str, Any] | None) -> list[str]:
    families = (progress or {}).get("families") or {}
    if not families:
        return []
    width = max(len("family"), *map(len, families))
    lines = [f"  {'family':<{width}}  {'studies':>7}  {'finished':>8}  {'trials done':>11}  {'failed':>6}"]
    for name, f in families.items():
        lines.append(f"  {name:<{width}}  {f.get('studies', 0):>7,}  {f.get('finished_studies', 0):>8,}  "
                     f"{f.get('done', 0):>11,}  {f.get('failed', 0):>6,}")
    return lines


def ranking_lines(progress: Mapping[str, Any] | None, top: int) -> list[str]:
    """The best and worst studies by skill (1 − best / naive baseline), side by side."""
    scored = [(s["skill"], key) for key, s in ((progress or {}).get("studies") or {}).items()
              if isinstance(s.get("skill"), (int, float)) and math.isfinite(s["skill"])]
    if top <= 0 or not scored:
        return []
    scored.sort(reverse=True)
    best, worst = scored[:top], scored[::-1][:top]
    key_w = max(len(k) for _, k in best + worst)
    left = [f"{k:<{key_w}} {v:+.3f}" for v, k in best]
    right = [f"{k:<{key_w}} {v:+.3f}" for v, k in worst]
    col = max(len("best studies (skill)"), key_w + 7)
    lines = [f"  {'best studies (skill)':<{col}}   worst studies (skill)"]
    lines += [f"  {a:<{col}}   {b}" for a, b in zip(left, right, strict=True)]
    return lines


def failure_lines(progress: Mapping[str, Any] | None) -> list[str]:
    failures = list((progress or {}).get("recent_failures") or [])[-FAILURES:]
    return ["recent failures:", *(f"  {f}" for f in failures)] if failures else []


def _results(info: Mapping[str, Any]) -> ExperimentSummary | None:
    """The summary's tables: ``info["results"]``, else read from an old-shape summary document."""
    if info.get("results") is not None:
        return info["results"]
    summary = info.get("summary")
    return ExperimentSummary(None, summary) if summary else None


def summary_lines(summary: Mapping[str, Any] | None, results: ExperimentSummary | None = None) -> list[str]:
    """The finished run in words: its counts, and which family won how many symbols (two
    columns of ``symbols.parquet``, not the entries)."""
    if not summary:
        return []
    t = summary.get("trials") or {}
    state = "complete" if summary.get("complete") else "INCOMPLETE"
    lines = [f"finished ({state}): {t.get('completed', 0):,} trials completed, {t.get('failed', 0):,} failed, "
             f"{t.get('never_ran', 0):,} never ran"]
    results = results if results is not None else ExperimentSummary(None, summary)
    symbols = results.symbols(["best_family", "beats_baseline"])
    if len(symbols):
        wins = Counter(symbols["best_family"])
        beats = int(symbols["beats_baseline"].fillna(False).astype(bool).sum())
        lines.append(f"  {len(symbols):,} symbols, {beats:,} of them beat the naive baseline")
        lines.append("  best family: " + ", ".join(f"{f} {n:,}" for f, n in wins.most_common()))
    if summary.get("tiny_weights"):
        lines.append("WARNING: made with tiny random-init weights")
    return lines


def study_lines(studies: Sequence[tuple[str, Mapping[str, Any]]], room: int) -> list[str]:
    """One line per study (aligned to the longest key), at most ``room`` lines with the last
    saying how many more there are."""
    if not studies:
        return []
    key_w = max(len(k) for k, _ in studies)
    lines = []
    for key, s in studies:
        best = s.get("best_pct_return_mae")
        lines.append(f"  {key:<{key_w}} {s.get('done', 0):>4}/{s.get('total', 0):<4} "
                     f"best {'-' if best is None else f'{best:.5f}'}"
                     + (f"  running {s['running']}" if s.get("running") else "")
                     + (f"  failed {s['failed']}" if s.get("failed") else ""))
    return _limited(lines, room, "studies")


def symbol_lines(symbols: Sequence[tuple[str, Mapping[str, Any]]], room: int) -> list[str]:
    """A finished run's winner per symbol, aligned, at most ``room`` lines."""
    if not symbols:
        return []
    sym_w = max(len(s) for s, _ in symbols)
    fam_w = max(len(str(e.get("best_family"))) for _, e in symbols)
    lines = [f"  {symbol:<{sym_w}} {str(e.get('best_family')):<{fam_w}} "
             f"val {_score(e.get('validation_pct_return_mae'))} test {_score(e.get('test_pct_return_mae'))}"
             for symbol, e in symbols]
    return _limited(lines, room, "symbols")


def _score(value: Any) -> str:
    return f"{value:.5f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _limited(lines: list[str], room: int, what: str) -> list[str]:
    if len(lines) <= room:
        return lines
    shown = max(1, room - 1)
    return [*lines[:shown], f"  ... and {len(lines) - shown:,} more {what} (--all lists them)"]


def _all_studies(progress: Mapping[str, Any] | None) -> Iterable[str]:
    return list((progress or {}).get("studies") or {})


def _selected_studies(progress: Mapping[str, Any] | None, chosen: StatusFilter) -> list[tuple[str, Mapping[str, Any]]]:
    return [(k, s) for k, s in ((progress or {}).get("studies") or {}).items() if chosen.wants(k)]


def _selected_symbols(results: ExperimentSummary | None, chosen: StatusFilter) -> list[tuple[str, Mapping[str, Any]]]:
    if results is None or (chosen.family is not None and not chosen.symbols and not chosen.show_all):
        return []  # a family filter selects studies; the winners per symbol span families
    frame = results.symbols(["best_family", "validation_pct_return_mae", "test_pct_return_mae"],
                            symbols=chosen.symbols or None)
    return [(row.pop("symbol"), row) for row in frame.to_dict(orient="records")]
