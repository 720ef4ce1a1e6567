"""Promotion: an experiment's winners → the production configs ``configs/best/<SYMBOL>.json``.

For every symbol of the experiment's ``summary.json`` (or the ones asked for), the winner
(``best_family``) and its result file ``<family>/<SYMBOL>.json`` become a production document
(:func:`production_document`): family, config, validation and test scores, the naive baseline,
the report's flags, experiment, dates, seed, weights id and the tiny-weights flag. A derived
candidate (``blend``, ``regime``) names the families it combines in its config; their configs,
weights ids and trial ids are copied under ``members``, so production can rebuild it.

Safety:

* Results made with tiny random-init weights, and results of unfinished experiments
  (``summary.json`` says ``complete: false``), are refused unless ``force``; an experiment with
  no ``summary.json`` yet has no winners and is refused even then. A dry run writes nothing,
  so it is not refused: it shows the diff and says why the real promotion would be.
* Each change is shown first as a unified diff of the JSON; ``dry_run`` stops there.
* What a write replaces is first copied, byte for byte, to
  ``configs/best/.backup/<SYMBOL>.<UTC timestamp>.json``. Writes are atomic (temporary file +
  rename, :class:`~tuner.core.storage.Storage`), so production code never reads half a file.
* ``only_improvements`` promotes a symbol only where the new validation pct_return_mae is lower
  than the one in its current ``configs/best`` file (no file counts as an improvement). The two
  scores come from the same protocol but possibly different bars (a newer experiment validates
  on later data), so this guards against regressions; it is not an exact comparison.
* A symbol whose production file already holds the same result (ignoring ``promoted_at``) is
  skipped as unchanged, so promoting twice writes nothing.
* **Decisions.** Where the summary gives a symbol a universe-level ``decision`` (issue 18:
  ``own``, ``pooled`` or ``default``, :mod:`tuner.core.statistics.universe`), the decided config is what is
  promoted: the winner itself, or the family's pooled or default config with its scores on the
  same windows (:func:`decided_entry`); the production file records the decision.
* ``only_significant`` writes nothing whose decision is ``default`` (the reason is printed).
  Experiments without decisions: a symbol is promoted only where a winner file's
  ``significance`` section shows it beating both the family's default config and the naive
  baseline on the test period at ``alpha`` (one-sided Diebold–Mariano p-values;
  :func:`significance_hold` says why one is held back); the best such candidate by validation
  is promoted (a blend or regime included, else the best significant family winner). A winner
  without the section is held back: nothing shows it is better.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuner.core import strict_json
from tuner.core.errors import ConfigError, PromotionRefused
from tuner.core.storage import CONFIG_FILE, SUMMARY_FILE, Storage, contained
from tuner.core.summary_tables import ExperimentSummary
from tuner.decisions.flags import SIGNIFICANCE_ALPHA, flags_for, significance_flags
from tuner.decisions.results import without_winner

BEST_DIR = "best"
BACKUP_DIR = ".backup"
PROMOTE, SKIP = "promote", "skip"
VOLATILE_KEYS = ("promoted_at",)
"""Keys that change on every promotion and do not make a result different."""


@dataclass(frozen=True)
class Promotion:
    """What happens (or happened) to one symbol's production config.

    Attributes:
        symbol: the symbol.
        action: ``promote`` or ``skip``.
        reason: why: ``new``, ``replaces <family> from experiment <name>``, or why it was skipped.
        target: ``configs/best/<SYMBOL>.json``.
        document: the production document to write (None when skipped for lack of one).
        diff: unified diff of the current file against the new document ('' when skipped).
        previous_score: validation pct_return_mae of the current production file, if any.
        backup: where the replaced file was copied (set by :func:`apply_promotions`).
        written: True once the new document is in place.
        refused: why a real promotion would be refused without ``force`` (tiny weights,
            incomplete); only a dry run gets this far with reasons and no ``force``.
        changes: the compact diff (:func:`compact_diff`): family, config keys and scores that
            change, a few lines per symbol ('' when skipped).
    """

    symbol: str
    action: str
    reason: str
    target: Path
    document: Mapping[str, Any] | None = None
    diff: str = ""
    previous_score: float | None = None
    backup: Path | None = None
    written: bool = False
    refused: tuple[str, ...] = ()
    changes: str = ""

    @property
    def family(self) -> str | None:
        return (self.document or {}).get("family")

    @property
    def score(self) -> float | None:
        return ((self.document or {}).get("validation") or {}).get("pct_return_mae")

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple((self.document or {}).get("flags") or ())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def member_families(config: Mapping[str, Any], families: Iterable[str], own: str) -> list[str]:
    """The other families a derived candidate's config names (a blend's ``members``, a regime's
    ``fast`` / ``conservative``), in the order they appear; [] for a plain family winner."""
    known, found = set(families) - {own}, []

    def visit(value: Any) -> None:
        if isinstance(value, str) and value in known and value not in found:
            found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    for value in config.values():
        visit(value)
    return found


def production_document(symbol: str, entry: Mapping[str, Any], result: Mapping[str, Any] | None,
                        summary: Mapping[str, Any], source: str, promoted_at: str,
                        members: Mapping[str, Mapping[str, Any] | None] | None = None) -> dict[str, Any]:
    """The production config of one symbol (the ``configs/best/<SYMBOL>.json`` layout).

    Args:
        symbol: the symbol.
        entry: the symbol's ``summary.json`` entry (``best_family``, scores, ``config``).
        result: the winner's result file ``<family>/<SYMBOL>.json``, or None when the family
            wrote none (then the summary's scores are used).
        summary: the experiment's ``summary.json``.
        source: where the result file is, for the record.
        promoted_at: ISO timestamp of the promotion.
        members: for a derived candidate (blend, regime), the result file (or None) of each
            family its config names; their configs, weights and trial ids go into ``members``
            so production can rebuild it.
    """
    result = result or {}
    members = dict(members or {})
    member_docs = {}
    for family, doc in members.items():
        doc = doc or {}
        fallback = ((entry.get("families") or {}).get(family) or {})
        member_config = doc.get("config", fallback.get("config")) or {}
        member_docs[family] = {
            "config": {k: member_config[k] for k in sorted(member_config)},
            "weights": doc.get("weights"),
            "tiny_weights": doc.get("tiny_weights"),
            "trial_id": doc.get("trial_id"),
            "validation_pct_return_mae": (doc.get("validation") or {}).get(
                "pct_return_mae", fallback.get("validation_pct_return_mae")),
        }
    validation = dict(result.get("validation") or {"pct_return_mae": entry.get("validation_pct_return_mae"),
                                                   "skill": entry.get("validation_skill")})
    test = dict(result.get("test") or {"pct_return_mae": entry.get("test_pct_return_mae"),
                                       "skill": entry.get("test_skill")})
    baseline = dict(result.get("baseline") or {
        "validation": {"pct_return_mae": entry.get("baseline_validation_pct_return_mae")},
        "test": {"pct_return_mae": entry.get("baseline_test_pct_return_mae")},
    })
    flags = flags_for(validation.get("pct_return_mae"), test.get("pct_return_mae"),
                      (baseline.get("validation") or {}).get("pct_return_mae"),
                      (baseline.get("test") or {}).get("pct_return_mae"))
    flags += significance_flags(result.get("significance"))
    config = result.get("config", entry.get("config")) or {}
    weights = result.get("weights")
    if weights is None and member_docs:
        weights = {f: m["weights"] for f, m in member_docs.items()}
    tiny = result.get("tiny_weights")
    if tiny is None:
        tiny = summary.get("tiny_weights") or any(m["tiny_weights"] for m in member_docs.values())
    document = {
        "symbol": symbol,
        "family": entry["best_family"],
        "config": {k: config[k] for k in sorted(config)},
        "validation": validation,
        "test": test,
        "baseline": baseline,
        "flags": list(flags),
        "experiment": summary.get("experiment"),
        "experiment_created_at": result.get("created_at", summary.get("created_at")),
        "trial_id": result.get("trial_id"),
        "seed": result.get("seed", summary.get("seed")),
        "weights": weights if weights is not None else summary.get("weights"),
        "tiny_weights": bool(tiny),
        "windows": result.get("windows", summary.get("windows")),
        "data": result.get("data", summary.get("data")),
        "source": source,
        "promoted_at": promoted_at,
    }
    if member_docs:
        document["members"] = member_docs
    if result.get("significance") is not None:
        document["significance"] = result["significance"]
    decision = result.get("decision") or entry.get("decision")
    if decision is not None:
        document["decision"] = {k: decision.get(k) for k in ("choice", "family", "reason", "method",
                                                              "fdr_level", "p_own", "p_own_adjusted")}
    return document


def render_document(document: Mapping[str, Any]) -> str:
    """The exact text written for a production document (also what the diff shows)."""
    return strict_json.dumps(document, indent=2, default=str) + "\n"


def _comparable(document: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in VOLATILE_KEYS}


def _refusals(tables: ExperimentSummary, results: Iterable[Mapping[str, Any] | None]) -> list[str]:
    reasons = []
    summary = tables.document
    if summary.get("tiny_weights") or any((r or {}).get("tiny_weights") for r in results):
        reasons.append("it was made with tiny random-init weights (its scores are noise, not skill)")
    if not summary.get("complete"):
        trials = summary.get("trials") or {}
        detail = [f"{trials.get('failed', 0)} trials failed, {trials.get('never_ran', 0)} never ran"]
        missing = without_winner(tables)
        if missing:
            detail.append("no winner for " + ", ".join(missing))
        reasons.append(f"it is incomplete ({'; '.join(detail)})")
    return reasons


def best_dir(configs: str | Path | None = None) -> Path:
    """``<configs>/best``: ``configs`` as given, or the ``configs/`` folder
    :func:`tuner.core.config.configs_dir` finds (``$TUNER_CONFIGS``, ``./configs``, the repository's)."""
    if configs is None:
        from tuner.core.config import configs_dir

        configs = configs_dir()
    return Path(configs).expanduser().resolve() / BEST_DIR


def _current(target: Path) -> tuple[str | None, dict[str, Any] | None]:
    if not target.is_file():
        return None, None
    text = target.read_text()
    try:
        data = json.loads(text)
    except ValueError:
        return text, None
    return text, data if isinstance(data, dict) else None


def significance_hold(result: Mapping[str, Any] | None, alpha: float = SIGNIFICANCE_ALPHA) -> str | None:
    """Why a winner may not be promoted under ``only_significant``, or None when it beats both
    the default config and the naive baseline on the test period at ``alpha``."""
    section = (result or {}).get("significance")
    if not section:
        return "no significance section in its result file (nothing shows it beats the default and the baseline)"
    problems = []
    for key, what in (("vs_default", "the default config"), ("vs_baseline", "the naive baseline")):
        versus = (section.get(key) or {}).get("test") or {}
        p = versus.get("p_value")
        if not isinstance(p, (int, float)):
            problems.append(f"vs {what}: no test ({versus.get('reason') or 'not computed'})")
        elif not p < alpha:
            problems.append(f"vs {what}: p={p:.3f} >= {alpha:g}")
    if not problems:
        return None
    return "not significant on the test period: " + "; ".join(problems)


def decided_entry(entry: Mapping[str, Any], decision: Mapping[str, Any], winner: Mapping[str, Any] | None,
                  family_doc: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """A symbol's summary entry and result document as its universe-level ``decision`` has them.

    ``own``: the winner's file as it is. ``pooled``/``default``: the family winner file's
    ``pooled``/``default`` section (that config scored on the same windows) with the decision's
    config. Returns ``(entry, result, hold)``: ``hold`` says why ``--only-significant`` keeps the
    symbol back (its decision is ``default``), None for ``own``/``pooled``."""
    choice, family = decision.get("choice"), decision.get("family") or entry["best_family"]
    hold = None if choice in ("own", "pooled") else f"decision: default ({decision.get('reason')})"
    if choice == "own":
        return dict(entry), winner, hold
    section = dict(((family_doc or {}).get(choice)) or {})
    config = decision.get("config") or section.get("config") or {}
    if not config:
        hold = f"decision: {choice}, but no {choice} config is stored ({decision.get('reason')})"
    result = {**{k: (family_doc or {}).get(k) for k in ("created_at", "windows", "data", "weights",
                                                        "tiny_weights", "seed")},
              **section, "config": config, "decision": dict(decision)}
    result = {k: v for k, v in result.items() if v is not None}
    return {**entry, "best_family": family, "config": config}, result, hold


def plan_promotions(experiment: str, storage_root: str = "results", configs: str | Path | None = None,
                    symbols: Iterable[str] | None = None, only_improvements: bool = False,
                    force: bool = False, now: datetime | None = None, dry_run: bool = False, *,
                    only_significant: bool = False, alpha: float = SIGNIFICANCE_ALPHA) -> list[Promotion]:
    """Decide, per symbol, whether its winner replaces the production config, with the diff.

    Nothing is written. Symbols come in sorted order. A ``dry_run`` is never refused: it
    writes nothing, so it shows the diff of what ``force`` would write and sets each
    promotion's ``refused`` to the reasons instead.

    Raises:
        ConfigError: no such experiment, no ``summary.json`` yet, an unknown symbol, or (with
            ``only_improvements``) a production file without a readable validation score.
        PromotionRefused: tiny weights or an incomplete experiment, without ``force`` or
            ``dry_run``.
    """
    storage = Storage(storage_root, experiment)
    if not storage.exists(SUMMARY_FILE):
        if not storage.exists(CONFIG_FILE):
            raise ConfigError(f"no experiment {experiment!r} under {storage.base} (no {CONFIG_FILE})")
        raise ConfigError(f"experiment {experiment!r} has no {SUMMARY_FILE} yet under {storage.root}: it is "
                          f"still running or was interrupted, so it has no winners to promote; finish it "
                          f"with `tuner resume {experiment}`")
    try:
        summary = storage.read_json(SUMMARY_FILE)
    except ValueError as e:
        raise ConfigError(f"{storage.path(SUMMARY_FILE)}: not valid JSON: {e}") from e
    tables = ExperimentSummary(storage, summary)
    known = tables.symbol_names()
    chosen = known if symbols is None else list(dict.fromkeys(symbols))
    known_set = set(known)
    unknown = [s for s in chosen if s not in known_set]
    if unknown:
        raise ConfigError(f"experiment {experiment!r} has no winner for {', '.join(unknown)}; "
                          f"it has: {', '.join(known) or 'none'}")
    entries: dict[str, Any] = tables.entries_dict(None if symbols is None else chosen)  # only those promoted

    def read_result(family: str, symbol: str) -> tuple[str, dict | None]:
        relative = (family, f"{symbol}.json")  # names from summary.json: never a path of their own
        try:
            return storage.path(relative), storage.read_json(relative) if storage.exists(relative) else None
        except ValueError as e:
            raise ConfigError(f"{storage.path(relative)}: not valid JSON: {e}") from e

    results: dict[str, tuple[str, dict | None]] = {}
    members: dict[str, dict[str, dict | None]] = {}
    decided: dict[str, str | None] = {}  # symbol → why it is held back by its decision, or None
    for symbol in chosen:
        family = entries[symbol]["best_family"]
        decision = entries[symbol].get("decision")
        if decision:
            entries[symbol], result, decided[symbol] = decided_entry(
                entries[symbol], decision, read_result(family, symbol)[1],
                read_result(decision.get("family") or family, symbol)[1])
            results[symbol] = (read_result(family, symbol)[0], result)
            family = entries[symbol]["best_family"]
        elif only_significant:
            # Issue 23: the best *significant* candidate (blend/regime included), else the best
            # family winner: ordered by validation pct_return_mae as the summary ranked them.
            ranked = sorted((entries[symbol].get("families") or {}).items(),
                            key=lambda kv: (kv[1].get("validation_pct_return_mae", float("inf")), kv[0]))
            read = {f: read_result(f, symbol) for f, _ in ranked}
            significant = [f for f, _ in ranked if significance_hold(read[f][1], alpha) is None]
            if significant and significant[0] != family:
                family = significant[0]
                entries[symbol] = {**entries[symbol], "best_family": family}
            results[symbol] = read.get(family) or read_result(family, symbol)
        else:
            results[symbol] = read_result(family, symbol)
        config = (results[symbol][1] or {}).get("config", entries[symbol].get("config")) or {}
        names = member_families(config, (entries[symbol].get("families") or {}), family)
        members[symbol] = {m: read_result(m, symbol)[1] for m in names}

    reasons = _refusals(tables, [r for _, r in results.values()]
                        + [m for docs in members.values() for m in docs.values()])
    if reasons and not force and not dry_run:
        raise PromotionRefused(f"refusing to promote experiment {experiment!r}: "
                               f"{' and '.join(reasons)}; pass --force to promote it anyway")

    folder = best_dir(configs)
    stamp = (now or _now()).isoformat(timespec="seconds")
    plan = []
    for symbol in chosen:
        source, result = results[symbol]
        target = Path(contained(str(folder), f"{symbol}.json"))  # never outside configs/best/
        document = production_document(symbol, entries[symbol], result, summary, source, stamp,
                                       members[symbol])
        if reasons:
            document["forced"] = reasons  # what --force would write, so also in a dry run's diff
        old_text, old = _current(target)
        previous = None
        if old is not None:
            previous = (old.get("validation") or {}).get("pct_return_mae")
        if symbol in decided:
            hold = decided[symbol] if (only_significant or document["config"] == {}) else None
        else:
            hold = significance_hold(result, alpha) if only_significant else None
        if hold is not None:
            plan.append(Promotion(symbol, SKIP, hold, target, document, previous_score=previous))
            continue
        if only_improvements and old_text is not None:
            if not isinstance(previous, (int, float)):
                raise ConfigError(f"{target}: no validation.pct_return_mae to compare with "
                                  f"(--only-improvements); fix or remove the file")
            new = document["validation"].get("pct_return_mae")
            if new is None or not new < previous:
                plan.append(Promotion(symbol, SKIP, f"not an improvement: validation pct_return_mae "
                                      f"{_score(new)} is not lower than production's {_score(previous)} "
                                      f"({_origin(old)})", target, document, previous_score=previous))
                continue
        if old is not None and _comparable(old) == _comparable(document):
            plan.append(Promotion(symbol, SKIP, f"unchanged: {target.name} already holds this result",
                                  target, document, previous_score=previous))
            continue
        new_text = render_document(document)
        diff = "".join(difflib.unified_diff(
            (old_text or "").splitlines(keepends=True), new_text.splitlines(keepends=True),
            fromfile=str(target) if old_text is not None else "/dev/null",
            tofile=f"{target} (experiment {experiment})"))
        reason = "new" if old_text is None else f"replaces {_origin(old) if old else 'an unreadable file'}"
        plan.append(Promotion(symbol, PROMOTE, reason, target, document, diff, previous,
                              changes=compact_diff(symbol, target, old, document, reason)))
    refused = tuple(reasons) if not force else ()
    return [replace(p, refused=refused) for p in plan]


COMPACT_SCORES = (("validation", "validation pct_return_mae"), ("test", "test pct_return_mae"))
"""The scores a compact diff shows: (document key, label)."""


def compact_diff(symbol: str, target: Path, old: Mapping[str, Any] | None, new: Mapping[str, Any],
                 reason: str) -> str:
    """What a promotion changes, in a few lines: the family, each config key that is added,
    removed or changed, and the validation and test pct_return_mae (old → new). The full file
    diff (``Promotion.diff``) has everything else (windows, weights, per-window numbers...)."""
    old = old or {}
    lines = [f"{symbol}: {target} ({reason})"]

    def show(label: str, before: Any, after: Any, fmt=lambda v: strict_json.dumps(v, sort_keys=True)) -> None:
        if not old:
            lines.append(f"  {label}: {fmt(after)}")
        elif before != after:
            lines.append(f"  {label}: {'(none)' if before is None else fmt(before)} -> "
                         f"{'(removed)' if after is None else fmt(after)}")

    show("family", old.get("family"), new.get("family"), str)
    before, after = old.get("config") or {}, new.get("config") or {}
    for key in sorted(set(before) | set(after)):
        show(f"config.{key}", before.get(key), after.get(key))
    for part, label in COMPACT_SCORES:
        show(label, (old.get(part) or {}).get("pct_return_mae"), (new.get(part) or {}).get("pct_return_mae"),
             _score)
    if len(lines) == 1:
        lines.append("  family, config and scores unchanged (other fields differ: --verbose shows them)")
    return "\n".join(lines)


def _score(value: Any) -> str:
    return f"{value:.5f}" if isinstance(value, (int, float)) else "none"


def _origin(old: Mapping[str, Any]) -> str:
    return f"{old.get('family', '?')} from experiment {old.get('experiment', '?')}"


def _backup_path(folder: Path, symbol: str, when: datetime) -> Path:
    base = f"{symbol}.{when.strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = Path(contained(str(folder), BACKUP_DIR, f"{base}.json")), 1
    while candidate.exists():
        candidate, n = Path(contained(str(folder), BACKUP_DIR, f"{base}-{n}.json")), n + 1
    return candidate


def apply_promotions(plan: Iterable[Promotion], now: datetime | None = None) -> list[Promotion]:
    """Write every ``promote`` entry of ``plan``: back up the current file, then atomically
    replace it. Returns the plan with ``backup`` and ``written`` filled in."""
    when = now or _now()
    done = []
    for p in plan:
        if p.action != PROMOTE or p.document is None:
            done.append(p)
            continue
        folder = p.target.parent
        store = Storage.at(folder)
        backup = None
        if p.target.exists():
            backup = _backup_path(folder, p.symbol, when)
            store.write_bytes((BACKUP_DIR, backup.name), p.target.read_bytes())
        store.write_bytes((p.target.name,), render_document(p.document).encode())
        done.append(replace(p, backup=backup, written=True))
    return done


def promote_winners(experiment: str, storage_root: str = "results", configs: str | Path | None = None,
                    symbols: Iterable[str] | None = None, only_improvements: bool = False,
                    dry_run: bool = False, force: bool = False,
                    echo: Callable[[str], None] = print, *, only_significant: bool = False,
                    alpha: float = SIGNIFICANCE_ALPHA, verbose: bool = False) -> list[Promotion]:
    """Plan the promotion, ``echo`` each change (compact: family, config keys and scores;
    ``verbose``: the full unified diff of the file), then (unless ``dry_run``) apply it.

    See :func:`plan_promotions` for what is refused and skipped, :func:`apply_promotions` for
    how files are written.
    """
    plan = plan_promotions(experiment, storage_root, configs, symbols, only_improvements, force,
                           dry_run=dry_run, only_significant=only_significant, alpha=alpha)
    for p in plan:
        if p.diff:
            echo(p.diff.rstrip("\n") if verbose else p.changes)
    return plan if dry_run else apply_promotions(plan)
