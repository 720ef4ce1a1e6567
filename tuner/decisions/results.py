"""An experiment's stored results read into one value: a row per study's winner, the run's
facts and its labels.

Reads only what ``tuner run`` stores under ``<storage>/<experiment>/`` (``summary.json``, the
``<family>/<SYMBOL>.json`` winner files, ``trials.parquet``, ``progress.json`` and
``tuner-experiment.json``), through :class:`~tuner.core.storage.Storage`, so URIs work; no Ray.

Labels: results made with tiny random-init weights say so in every output (a header line and
banner, and a ``tiny_weights`` column in CSV/Parquet); so do experiments that are incomplete
(``summary.json`` says ``complete: false``: failed or never-run trials, studies without a
winner) or still running (no ``summary.json`` yet: the report then shows each study's best
validation score so far from ``progress.json``), through the ``state`` column and a header line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.core import strict_json
from tuner.core.errors import ConfigError
from tuner.core.models.checkpoint import TINY_MARKER
from tuner.core.storage import CONFIG_FILE, PROGRESS_FILE, SUMMARY_FILE, TRIALS_FILE, Storage
from tuner.core.summary_tables import ExperimentSummary
from tuner.decisions.flags import as_float, flags_for, significance_flags

if TYPE_CHECKING:
    import pandas as pd


COMPLETE, INCOMPLETE, RUNNING = "complete", "incomplete", "running"
TINY_LABEL = ("TINY RANDOM-INIT WEIGHTS: these scores are noise, not a model's skill; "
              "do not promote them")

FAMILY_ORDER = ("toto", "kronos_standard", "kronos_ensemble", "toto2")


@dataclass(frozen=True)
class StudyRow:
    """One (symbol, family) study's winner, as the report shows it.

    Scores are pct_return_mae (mean absolute error of the predicted one-bar return, a
    fraction), price_mae (price units), latency in seconds per forecast; ``skill`` is
    ``1 - pct_return_mae / baseline pct_return_mae`` (> 0 beats the naive baseline).
    ``stability_spread`` is max − min pct_return_mae over the validation period and the earlier
    stability folds (None when the experiment scored no folds). ``winner`` marks the symbol's
    chosen family (``summary.json``'s ``best_family``; while a
    run is going on, the family leading so far). Values not stored are None.
    """

    symbol: str
    family: str
    winner: bool
    validation_pct_return_mae: float | None
    test_pct_return_mae: float | None = None
    validation_price_mae: float | None = None
    test_price_mae: float | None = None
    validation_latency_per_forecast_s: float | None = None
    test_latency_per_forecast_s: float | None = None
    baseline_validation_pct_return_mae: float | None = None
    baseline_test_pct_return_mae: float | None = None
    validation_skill: float | None = None
    test_skill: float | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    trials_completed: int | None = None
    trials_failed: int | None = None
    trials_never_ran: int | None = None
    trials_budget: int | None = None
    trial_id: str | None = None
    stability_spread: float | None = None
    flags: tuple[str, ...] = ()
    p_vs_baseline: float | None = None
    """Test period, one-sided Diebold–Mariano p-value against the naive baseline."""
    p_vs_default: float | None = None
    """Test period, one-sided Diebold–Mariano p-value against the family's default config."""
    spa_p_value: float | None = None
    pbo: float | None = None
    in_mcs: bool | None = None
    """Whether the Model Confidence Set of the symbol's candidates (test period) holds this family."""


@dataclass(frozen=True)
class ExperimentReport:
    """Everything a report shows about one experiment.

    Attributes:
        experiment: the experiment name.
        root: where it is stored (``<storage>/<experiment>``).
        state: ``complete``, ``incomplete`` (summary says ``complete: false``) or ``running``
            (no ``summary.json`` yet: still running, or interrupted before collating).
        tiny_weights: True when made with tiny random-init weights; None when not known yet
            (a running experiment whose weights carry no tiny marker visible from here).
        notes: why the experiment is incomplete (failed / never-ran trials, studies without a
            winner, a stop message), one line each.
        rows: one per study, sorted by symbol then family.
        trials: ``trials.parquet`` as a DataFrame (None when not written yet).
        seed, created_at, weights, trial_counts: run facts from the summary (None when absent).
    """

    experiment: str
    root: str
    state: str
    tiny_weights: bool | None
    notes: tuple[str, ...]
    rows: tuple[StudyRow, ...]
    trials: Any = None
    seed: int | None = None
    created_at: str | None = None
    weights: Any = None
    trial_counts: Mapping[str, int] | None = None
    decisions: Mapping[str, Any] | None = None
    """summary.json's ``decisions`` tallies (issue 18); None for older experiments."""
    symbol_decisions: Mapping[str, Mapping[str, Any]] | None = None
    """symbol → its ``decision`` from summary.json; None for older experiments."""
    panel: Mapping[str, Any] | None = None
    """summary.json's ``panel`` tests; None for older experiments."""
    max_latency_s: float | None = None
    """The run's ``max_latency_s`` (trials slower per forecast could not win); None: no limit."""

    @property
    def winners(self) -> tuple[StudyRow, ...]:
        return tuple(r for r in self.rows if r.winner)

    @property
    def labels(self) -> tuple[str, ...]:
        """Warning lines every output carries: tiny weights, incomplete or running."""
        out = []
        if self.tiny_weights:
            out.append(f"WARNING: {TINY_LABEL}")
        elif self.tiny_weights is None:
            out.append("NOTE: whether the weights are tiny random-init ones is known when the run finishes")
        if self.state == INCOMPLETE:
            out.append("WARNING: INCOMPLETE EXPERIMENT: " + ("; ".join(self.notes) or "see summary.json"))
        elif self.state == RUNNING:
            out.append("WARNING: NOT FINISHED: no summary.json yet (still running, or interrupted: "
                       f"`tuner resume {self.experiment}`); scores are the best validation values so far")
        return tuple(out)

    def to_frame(self) -> pd.DataFrame:
        """One row per study with every score, the flags (';'-joined), the config (JSON) and
        the labels as columns: ``experiment``, ``state``, ``tiny_weights``."""
        import pandas as pd

        records = []
        for r in self.rows:
            rec = {"experiment": self.experiment, "state": self.state, "tiny_weights": self.tiny_weights}
            rec.update({k: v for k, v in r.__dict__.items() if k not in ("config", "flags")})
            rec["flags"] = ";".join(r.flags)
            rec["config"] = strict_json.dumps(dict(r.config), sort_keys=True)
            records.append(rec)
        columns = ["experiment", "state", "tiny_weights", *StudyRow.__dataclass_fields__]
        frame = pd.DataFrame(records, columns=columns)
        # Nullable types: a blend row has no trial counts, and a plain int column holding None
        # would turn into float (CSV "8.0").
        counts = {c: "Int64" for c in ("trials_completed", "trials_failed", "trials_never_ran", "trials_budget")}
        return frame.astype({"tiny_weights": "boolean", **counts})


# ------------------------------------------------------------------------------------- loading


def _sort_key(row: StudyRow) -> tuple:
    rank = FAMILY_ORDER.index(row.family) if row.family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (row.symbol, rank, row.family)


def _row_from_documents(symbol: str, family: str, winner: bool, entry: Mapping[str, Any],
                        doc: Mapping[str, Any] | None, counts: Mapping[str, int] | None) -> StudyRow:
    """A study row from its winner file (``doc``), falling back to the summary's family entry."""
    doc = doc or {}
    val, test = doc.get("validation") or {}, doc.get("test") or {}
    base = doc.get("baseline") or {}
    base_val, base_test = base.get("validation") or {}, base.get("test") or {}
    v = as_float(val.get("pct_return_mae", entry.get("validation_pct_return_mae")))
    t = as_float(test.get("pct_return_mae", entry.get("test_pct_return_mae")))
    bv = as_float(base_val.get("pct_return_mae", entry.get("baseline_validation_pct_return_mae")))
    bt = as_float(base_test.get("pct_return_mae", entry.get("baseline_test_pct_return_mae")))
    counts = counts or doc.get("trials") or {}
    return StudyRow(
        symbol=symbol, family=family, winner=winner,
        validation_pct_return_mae=v, test_pct_return_mae=t,
        validation_price_mae=as_float(val.get("price_mae")), test_price_mae=as_float(test.get("price_mae")),
        validation_latency_per_forecast_s=as_float(val.get("latency_per_forecast_s",
                                                       entry.get("latency_per_forecast_s"))),
        test_latency_per_forecast_s=as_float(test.get("latency_per_forecast_s")),
        baseline_validation_pct_return_mae=bv, baseline_test_pct_return_mae=bt,
        validation_skill=as_float(val.get("skill", entry.get("validation_skill"))),
        test_skill=as_float(test.get("skill", entry.get("test_skill"))),
        config=dict(doc.get("config", entry.get("config")) or {}),
        trials_completed=counts.get("completed"), trials_failed=counts.get("failed"),
        trials_never_ran=counts.get("never_ran"), trials_budget=counts.get("budget"),
        trial_id=doc.get("trial_id"),
        stability_spread=as_float((doc.get("stability") or {}).get("spread")),
        flags=flags_for(v, t, bv, bt) + significance_flags(doc.get("significance")),
        **_significance_fields(family, doc.get("significance")),
    )


def _significance_fields(family: str, section: Mapping[str, Any] | None) -> dict[str, Any]:
    """StudyRow's significance columns from a winner file's section (all None without one)."""
    if not section:
        return {}
    members = (section.get("mcs") or {}).get("members")
    return {
        "p_vs_baseline": as_float(((section.get("vs_baseline") or {}).get("test") or {}).get("p_value")),
        "p_vs_default": as_float(((section.get("vs_default") or {}).get("test") or {}).get("p_value")),
        "spa_p_value": as_float(section.get("spa_p_value")),
        "pbo": as_float(section.get("pbo")),
        "in_mcs": None if members is None else family in members,
    }


def _read_json(storage: Storage, relative: str) -> Any:
    try:
        return storage.read_json(relative)
    except ValueError as e:
        raise ConfigError(f"{storage.path(relative)}: not valid JSON: {e}") from e


def _tiny_from_config(config: Mapping[str, Any]) -> bool | None:
    """Tiny weights as far as the stored config tells (the run has not finished)."""
    if config.get("tiny_fallback"):
        return True
    def sources(value: Any):  # a model's source, or its sizes' (name → source or {model: source})
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            for inner in value.values():
                yield from sources(inner)

    for source in sources(config.get("weights") or {}):
        if (Path(source).expanduser() / TINY_MARKER).is_file():
            return True
    return None


def without_winner(results: ExperimentSummary) -> list[str]:
    """The studies without a winner, as ``SYMBOL/family`` or ``SYMBOL/family (why)``
    (``studies.parquet``; older summaries stored a list of keys, or a mapping key → reason)."""
    return [f"{k} ({why})" if why else str(k) for k, why in results.without_winner().items()]


def _notes(summary: Mapping[str, Any], results: ExperimentSummary) -> tuple[str, ...]:
    notes = []
    trials = summary.get("trials") or {}
    if trials.get("failed") or trials.get("never_ran"):
        notes.append(f"{trials.get('failed', 0)} trials failed, {trials.get('never_ran', 0)} never ran")
    missing = without_winner(results)
    if missing:
        notes.append("studies without a winner: " + ", ".join(missing))
    if summary.get("stopped"):
        notes.append(f"stopped: {summary['stopped']}")
    return tuple(notes)


def load_report(experiment: str, storage_root: str = "results",
                trial_columns: Sequence[str] | None = None) -> ExperimentReport:
    """Read an experiment's stored results into an :class:`ExperimentReport`.

    ``trial_columns``: the columns of ``trials.parquet`` to read into ``trials`` (those the table
    has; None: all, ``()``: none, ``trials`` None). A text report needs none, the HTML's figures
    a few: at 100,000 trials the per-window ``errors`` alone are hundreds of MB in memory.

    Raises:
        ConfigError: no experiment of that name (no ``tuner-experiment.json`` and no
            ``summary.json``), or a stored file that is not valid JSON.
    """
    storage = Storage(storage_root, experiment)
    has_summary = storage.exists(SUMMARY_FILE)
    if not has_summary and not storage.exists(CONFIG_FILE):
        raise ConfigError(f"no experiment {experiment!r} under {storage.base} "
                          f"(no {CONFIG_FILE} or {SUMMARY_FILE}); `tuner run --name {experiment}` creates it")
    trials = _read_trials(storage, trial_columns) if storage.exists(TRIALS_FILE) else None
    if not has_summary:
        return _running_report(storage, experiment, trials)

    summary = _read_json(storage, SUMMARY_FILE)
    results = ExperimentSummary(storage, summary)
    studies = results.study_counts()
    rows = []
    decisions = {}
    for symbol, entry in results.entries():
        if entry.get("decision"):
            decisions[symbol] = entry["decision"]
        for family, fam_entry in (entry.get("families") or {}).items():
            relative = f"{family}/{symbol}.json"
            doc = _read_json(storage, relative) if storage.exists(relative) else None
            rows.append(_row_from_documents(symbol, family, family == entry.get("best_family"),
                                            fam_entry, doc, studies.get(f"{symbol}/{family}")))
    complete = bool(summary.get("complete"))
    return ExperimentReport(
        experiment=summary.get("experiment") or experiment, root=storage.root,
        state=COMPLETE if complete else INCOMPLETE,
        tiny_weights=bool(summary.get("tiny_weights")),
        notes=() if complete else _notes(summary, results),
        rows=tuple(sorted(rows, key=_sort_key)), trials=trials,
        seed=summary.get("seed"), created_at=summary.get("created_at"),
        weights=summary.get("weights"), trial_counts=summary.get("trials"),
        decisions=summary.get("decisions"), panel=summary.get("panel"),
        max_latency_s=summary.get("max_latency_s"),
        symbol_decisions=decisions or None,
    )


def _read_trials(storage: Storage, columns: Sequence[str] | None):
    if columns is None:
        return storage.read_parquet(TRIALS_FILE)
    present = set(storage.read_schema(TRIALS_FILE).names)  # a damaged table is named even so
    if not columns:
        return None
    return storage.read_table(TRIALS_FILE, [c for c in columns if c in present]).to_pandas()


def _running_report(storage: Storage, experiment: str, trials) -> ExperimentReport:
    config = _read_json(storage, CONFIG_FILE) if storage.exists(CONFIG_FILE) else {}
    progress = _read_json(storage, PROGRESS_FILE) if storage.exists(PROGRESS_FILE) else {}
    leaders: dict[str, tuple[float, str]] = {}
    found = []
    for key, study in (progress.get("studies") or {}).items():
        symbol, _, family = key.partition("/")
        best = as_float(study.get("best_pct_return_mae"))
        found.append((symbol, family, best, study))
        if best is not None and (symbol not in leaders or best < leaders[symbol][0]):
            leaders[symbol] = (best, family)
    rows = [
        StudyRow(symbol=symbol, family=family,
                 winner=symbol in leaders and leaders[symbol][1] == family,
                 validation_pct_return_mae=best, trials_completed=study.get("done"),
                 trials_failed=study.get("failed"), trials_budget=study.get("total"),
                 trials_never_ran=max(0, (study.get("total") or 0) - (study.get("done") or 0)
                                      - (study.get("failed") or 0)))
        for symbol, family, best, study in found
    ]
    done, total = progress.get("trials_done"), progress.get("trials_total")
    notes = (f"{done}/{total} trials done",) if progress else ("no trial has finished yet",)
    return ExperimentReport(
        experiment=experiment, root=storage.root, state=RUNNING, tiny_weights=_tiny_from_config(config),
        notes=notes, rows=tuple(sorted(rows, key=_sort_key)), trials=trials,
        seed=config.get("seed"), weights=config.get("weights"),
    )
