"""Reports on an experiment: per symbol the winner, its scores, the naive baseline and how every
family did, as a terminal table, CSV, Parquet or a self-contained HTML page with plots.

Reads only what ``tuner run`` stores under ``<storage>/<experiment>/`` (``summary.json``, the
``<family>/<SYMBOL>.json`` winner files, ``trials.parquet``, ``progress.json`` and
``tuner-experiment.json``), through :class:`~tuner.storage.Storage`, so URIs work; no Ray.

Flags (:func:`flags_for`), checked for every study's winner, so for every family of a symbol
and for the symbol's overall winner; the rule is printed in every report:

* ``no-skill``: validation pct_return_mae >= the naive no-change baseline's pct_return_mae on the
  same validation windows. The config does not beat doing nothing on the very period it was
  chosen on (``summary.json``'s ``beats_baseline`` is false).
* ``overfit``: test pct_return_mae > 1.5 × validation pct_return_mae **and** test
  pct_return_mae >= the naive baseline's on the test windows. Why both: a winner's validation
  score is optimistic (it is the minimum over the study's trials) and two 20-bar periods differ
  in volatility, so a ratio alone flags a calmer validation than test period, whose baseline gets
  worse too; a model that still beats doing nothing on the unseen period is not overfit in any
  way that matters. 1.5 leaves room for that noise: on 20 windows the period-to-period spread
  of a mean absolute return error is commonly ±30%.
* ``untested``: no test-period score is stored, so the overfit rule cannot be checked.

From the winner file's ``significance`` section (:mod:`tuner.significance`), when there is one
(:func:`significance_flags`; files without it get none of these):

* ``not-better-than-default``: on the test period the winner does not beat the family's default
  config at 5 % (one-sided Diebold–Mariano p >= 0.05, or no lower error at all).
* ``luck``: Hansen's SPA p >= 0.05: the best of the study's trials does not beat the naive
  baseline by more than the best of that many tries could by chance.
* ``likely-overfit``: PBO > 0.5: in most splits of the validation windows, the config best on one
  half is no better than the median config on the other.

Labels: results made with tiny random-init weights say so in every output (a header line and
banner, and a ``tiny_weights`` column in CSV/Parquet); so do experiments that are incomplete
(``summary.json`` says ``complete: false``: failed or never-run trials, studies without a
winner) or still running (no ``summary.json`` yet: the report then shows each study's best
validation score so far from ``progress.json``), through the ``state`` column and a header line.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import strict_json
from tuner.errors import ConfigError
from tuner.models.checkpoint import TINY_MARKER
from tuner.storage import CONFIG_FILE, PROGRESS_FILE, SUMMARY_FILE, TRIALS_FILE, Storage

if TYPE_CHECKING:
    import pandas as pd


COMPLETE, INCOMPLETE, RUNNING = "complete", "incomplete", "running"
FORMATS = ("table", "csv", "parquet", "html")

OVERFIT_RATIO = 1.5
"""``overfit`` needs test pct_return_mae above this multiple of the validation score."""
NO_SKILL, OVERFIT, UNTESTED = "no-skill", "overfit", "untested"
NOT_BETTER_THAN_DEFAULT, LUCK, LIKELY_OVERFIT = "not-better-than-default", "luck", "likely-overfit"
SIGNIFICANCE_ALPHA = 0.05
"""Level of the significance flags."""
FLAG_RULES = {
    NO_SKILL: "validation pct_return_mae >= the naive no-change baseline's on the validation "
              "windows: does not beat doing nothing on the period it was chosen on",
    OVERFIT: f"test pct_return_mae > {OVERFIT_RATIO:g} x validation pct_return_mae and >= the "
             "naive baseline's on the test windows: much worse on unseen bars and no better "
             "than doing nothing there",
    UNTESTED: "no test-period score stored: the overfit rule cannot be checked",
}
SIGNIFICANCE_FLAG_RULES = {
    NOT_BETTER_THAN_DEFAULT: "test period: does not beat the family's default config at 5 % "
                             "(one-sided Diebold-Mariano p >= 0.05, or no lower error)",
    LUCK: "Hansen's SPA p >= 0.05: the best of the study's trials does not beat the naive baseline "
          "by more than the best of that many tries could by chance",
    LIKELY_OVERFIT: "PBO > 0.5: the config best on one half of the validation windows is usually "
                    "no better than the median config on the other half",
}
TINY_LABEL = ("TINY RANDOM-INIT WEIGHTS: these scores are noise, not a model's skill; "
              "do not promote them")

FAMILY_ORDER = ("toto", "kronos_standard", "kronos_ensemble")


def flags_for(validation: float | None, test: float | None, baseline_validation: float | None,
              baseline_test: float | None, ratio: float = OVERFIT_RATIO) -> tuple[str, ...]:
    """The flags of one study winner, from its pct_return_mae scores (see the module docstring).

    Args:
        validation, test: the winner's pct_return_mae on the validation and test periods
            (``test`` None when not scored).
        baseline_validation, baseline_test: the naive no-change forecast's on the same windows.
        ratio: how many times worse than validation the test score must be for ``overfit``.

    Returns:
        A subset of ``("no-skill", "overfit", "untested")``, in that order.
    """
    flags = []
    if validation is not None and baseline_validation is not None and validation >= baseline_validation:
        flags.append(NO_SKILL)
    if test is None or validation is None:
        flags.append(UNTESTED)
    elif test > ratio * validation and baseline_test is not None and test >= baseline_test:
        flags.append(OVERFIT)
    return tuple(flags)


def significance_flags(section: Mapping[str, Any] | None, alpha: float = SIGNIFICANCE_ALPHA
                       ) -> tuple[str, ...]:
    """The flags a winner file's ``significance`` section raises (see the module docstring);
    () without a section. A test that could not be computed (null) raises no flag, except a
    default comparison that found the winner no better at all (identical or worse errors)."""
    if not section:
        return ()
    flags = []
    versus = ((section.get("vs_default") or {}).get("test")) or {}
    p, diff = as_float(versus.get("p_value")), as_float(versus.get("mean_difference"))
    if (p is not None and p >= alpha) or (p is None and diff is not None and diff >= 0):
        flags.append(NOT_BETTER_THAN_DEFAULT)
    spa = as_float(section.get("spa_p_value"))
    if spa is not None and spa >= alpha:
        flags.append(LUCK)
    overfit = as_float(section.get("pbo"))
    if overfit is not None and overfit > 0.5:
        flags.append(LIKELY_OVERFIT)
    return tuple(flags)


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


def as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
    for source in (config.get("weights") or {}).values():
        if isinstance(source, str) and (Path(source).expanduser() / TINY_MARKER).is_file():
            return True
    return None


def without_winner(summary: Mapping[str, Any]) -> list[str]:
    """``summary.json``'s studies without a winner, as ``SYMBOL/family`` or ``SYMBOL/family (why)``
    (stored as a list of keys, or as a mapping key → reason)."""
    missing = summary.get("studies_without_winner") or []
    if isinstance(missing, Mapping):
        return [f"{k} ({why})" if why else str(k) for k, why in missing.items()]
    return [str(k) for k in missing]


def _notes(summary: Mapping[str, Any]) -> tuple[str, ...]:
    notes = []
    trials = summary.get("trials") or {}
    if trials.get("failed") or trials.get("never_ran"):
        notes.append(f"{trials.get('failed', 0)} trials failed, {trials.get('never_ran', 0)} never ran")
    missing = without_winner(summary)
    if missing:
        notes.append("studies without a winner: " + ", ".join(missing))
    if summary.get("stopped"):
        notes.append(f"stopped: {summary['stopped']}")
    return tuple(notes)


def load_report(experiment: str, storage_root: str = "results") -> ExperimentReport:
    """Read an experiment's stored results into an :class:`ExperimentReport`.

    Raises:
        ConfigError: no experiment of that name (no ``tuner-experiment.json`` and no
            ``summary.json``), or a stored file that is not valid JSON.
    """
    storage = Storage(storage_root, experiment)
    has_summary = storage.exists(SUMMARY_FILE)
    if not has_summary and not storage.exists(CONFIG_FILE):
        raise ConfigError(f"no experiment {experiment!r} under {storage.base} "
                          f"(no {CONFIG_FILE} or {SUMMARY_FILE}); `tuner run --name {experiment}` creates it")
    trials = storage.read_parquet(TRIALS_FILE) if storage.exists(TRIALS_FILE) else None
    if not has_summary:
        return _running_report(storage, experiment, trials)

    summary = _read_json(storage, SUMMARY_FILE)
    studies = summary.get("studies") or {}
    rows = []
    for symbol, entry in (summary.get("symbols") or {}).items():
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
        notes=() if complete else _notes(summary),
        rows=tuple(sorted(rows, key=_sort_key)), trials=trials,
        seed=summary.get("seed"), created_at=summary.get("created_at"),
        weights=summary.get("weights"), trial_counts=summary.get("trials"),
    )


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


# ------------------------------------------------------------------------------------- text


def format_value(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def _text_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    """Aligned columns; ``align`` has one letter per column: ``l`` left, ``r`` right."""
    rows = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = []
    for cells in [list(headers), *rows]:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


def _trial_text(r: StudyRow) -> str:
    if r.trials_completed is None:
        return "-"
    text = f"{r.trials_completed}/{r.trials_budget}" if r.trials_budget is not None else str(r.trials_completed)
    return text + (f" ({r.trials_failed} failed)" if r.trials_failed else "")


def _flag_text(report: ExperimentReport, row: StudyRow) -> str:
    """The flags, 'ok' when none, '-' while running (nothing to check yet)."""
    return "-" if report.state == RUNNING else ",".join(row.flags) or "ok"


def header_lines(report: ExperimentReport) -> list[str]:
    """The report's first lines: experiment, state, trial counts, seed, date, labels."""
    facts = [report.state.upper() if report.state != COMPLETE else COMPLETE]
    if report.trial_counts:
        c = report.trial_counts
        facts.append(f"trials {c.get('completed', 0)} completed, {c.get('failed', 0)} failed, "
                     f"{c.get('never_ran', 0)} never ran")
    if report.seed is not None:
        facts.append(f"seed {report.seed}")
    if report.created_at:
        facts.append(f"created {report.created_at}")
    return [f"experiment {report.experiment}: " + "; ".join(facts), f"results: {report.root}",
            *report.labels]


def render_table(report: ExperimentReport) -> str:
    """The plain-text report: header and labels, winners, winning configs, every family, flag rules."""
    lines = header_lines(report)
    lines.append("")
    if not report.rows:
        lines.append("no study has a result yet")
        return "\n".join(lines) + "\n"
    lines.append("winners (chosen by validation pct_return_mae" +
                 (", leading so far)" if report.state == RUNNING else ")"))
    lines += _text_table(
        ["symbol", "family", "val_mae", "test_mae", "base_val", "base_test", "val_skill", "test_skill",
         "val_price", "test_price", "s/forecast", "spread", "flags"],
        ([w.symbol, w.family, format_value(w.validation_pct_return_mae, ".5f"), format_value(w.test_pct_return_mae, ".5f"),
          format_value(w.baseline_validation_pct_return_mae, ".5f"), format_value(w.baseline_test_pct_return_mae, ".5f"),
          format_value(w.validation_skill, "+.3f"), format_value(w.test_skill, "+.3f"),
          format_value(w.validation_price_mae, ".5g"), format_value(w.test_price_mae, ".5g"),
          format_value(w.validation_latency_per_forecast_s, ".4f"), format_value(w.stability_spread, ".5f"),
          _flag_text(report, w)]
         for w in report.winners), align="llrrrrrrrrrrl")
    lines.append("")
    if report.state != RUNNING:
        lines.append("winning configs")
        lines += _text_table(["symbol", "family", "config"],
                             ([w.symbol, w.family, strict_json.dumps(dict(w.config), sort_keys=True)]
                              for w in report.winners), align="lll")
        lines.append("")
        lines += significance_lines(report)
    lines.append("every family (* = winner)")
    lines += _text_table(
        ["symbol", "family", "", "val_mae", "test_mae", "val_price", "test_price", "s/forecast",
         "val_skill", "test_skill", "spread", "trials", "flags"],
        ([r.symbol, r.family, "*" if r.winner else "", format_value(r.validation_pct_return_mae, ".5f"),
          format_value(r.test_pct_return_mae, ".5f"), format_value(r.validation_price_mae, ".5g"),
          format_value(r.test_price_mae, ".5g"), format_value(r.validation_latency_per_forecast_s, ".4f"),
          format_value(r.validation_skill, "+.3f"), format_value(r.test_skill, "+.3f"), format_value(r.stability_spread, ".5f"),
          _trial_text(r), _flag_text(report, r)]
         for r in report.rows), align="lllrrrrrrrrrl")
    lines.append("")
    lines.append("columns: mae = pct_return_mae; base = the naive no-change forecast's pct_return_mae on the "
                 "same windows; skill = 1 - mae/base (> 0 beats it); price = price_mae; s/forecast = "
                 "validation latency per forecast in seconds; spread = max - min pct_return_mae over the "
                 "validation period and the earlier stability folds (- when none were scored)")
    lines.append("flags:")
    width = max(len(k) for k in FLAG_RULES)
    lines += [f"  {name.ljust(width)}  {rule}" for name, rule in FLAG_RULES.items()]
    return "\n".join(lines) + "\n"


def significance_lines(report: ExperimentReport) -> list[str]:
    """The winners' significance table (test period; SPA and PBO on validation), with a blank
    line after it; [] when no winner file has a significance section."""
    winners = [w for w in report.winners if w.p_vs_baseline is not None or w.p_vs_default is not None
               or w.spa_p_value is not None or w.pbo is not None or w.in_mcs is not None]
    if not winners:
        return []
    lines = ["significance (p: one-sided Diebold-Mariano on the test period, small = the winner's error is "
             "lower; spa_p and pbo on validation)"]
    lines += _text_table(
        ["symbol", "family", "p_vs_base", "p_vs_default", "spa_p", "pbo", "in_mcs"],
        ([w.symbol, w.family, format_value(w.p_vs_baseline, ".3f"), format_value(w.p_vs_default, ".3f"),
          format_value(w.spa_p_value, ".3f"), format_value(w.pbo, ".2f"),
          "-" if w.in_mcs is None else ("yes" if w.in_mcs else "no")]
         for w in winners), align="llrrrrl")
    lines.append("significance flags:")
    width = max(len(k) for k in SIGNIFICANCE_FLAG_RULES)
    lines += [f"  {name.ljust(width)}  {rule}" for name, rule in SIGNIFICANCE_FLAG_RULES.items()]
    return [*lines, ""]


# ------------------------------------------------------------------------------------- files


def render_csv(report: ExperimentReport) -> str:
    return report.to_frame().to_csv(index=False)


def render_parquet(report: ExperimentReport) -> bytes:
    buffer = io.BytesIO()
    frame = report.to_frame()
    frame.attrs = {}
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def render(report: ExperimentReport, fmt: str) -> str | bytes:
    """The report in ``fmt`` (``table``, ``csv``, ``parquet`` (bytes) or ``html``)."""
    if fmt == "table":
        return render_table(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "parquet":
        return render_parquet(report)
    if fmt == "html":
        return render_html(report)
    raise ConfigError(f"report format {fmt!r}: unknown; known: {', '.join(FORMATS)}")


def default_location(fmt: str) -> str | None:
    """Where a report goes when no --out is given: None (the terminal) for table and csv,
    ``report.<ext>`` in the experiment folder for parquet and html."""
    return None if fmt in ("table", "csv") else f"report.{fmt}"


def save_report(report: ExperimentReport, fmt: str, out: str | Path | None = None,
                storage_root: str = "results") -> str:
    """Write the report atomically to ``out`` (a local file) or, without it, to
    ``<storage>/<experiment>/report.<fmt>``; return where it went."""
    data = render(report, fmt)
    payload = data.encode() if isinstance(data, str) else data
    if out is None:
        relative = default_location(fmt) or f"report.{fmt}"
        return Storage(storage_root, report.experiment).write_bytes(relative, payload)
    target = Path(out).expanduser().resolve()
    return Storage(str(target.parent.parent), target.parent.name).write_bytes(target.name, payload)


# ------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.win{background:#f3f8ff}
.flag{color:#b00;font-weight:bold}
.banner{padding:10px 14px;margin:8px 0;border-radius:4px;font-weight:bold}
.tiny{background:#fde2e2;border:2px solid #d62728}
.incomplete{background:#fff2d6;border:2px solid #e69500}
.note{color:#555;font-size:13px;max-width:70em}
.study-figure{min-height:40px}
select{font-size:14px}
code{font-size:12px}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(headers: Sequence[str], rows: Iterable[tuple[Sequence[tuple[str, str]], str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for cells, cls in rows:
        tds = "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in cells)
        body.append(f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _flag_cell(report: ExperimentReport, row: StudyRow) -> tuple[str, str]:
    if row.flags and report.state != RUNNING:
        return (f'<span class="flag">{_esc(", ".join(row.flags))}</span>', "")
    return (_flag_text(report, row), "")


FOLD_ROWS = 60
"""Longer HTML tables start folded (hundreds of symbols), so the figures stay in reach."""


def _folded(rows: int, what: str) -> str:
    return f"<details{' open' if rows <= FOLD_ROWS else ''}><summary>{rows} {what}</summary>"


def render_html(report: ExperimentReport) -> str:
    """A self-contained HTML page (inline CSS, plotly.js embedded once, nothing fetched):
    labels, winners, the figures (see :mod:`tuner.plots`), every family and the flag rules."""
    from tuner.plots import plotly_script, plots_html

    title = f"forecast-tuner report: {report.experiment}"
    if report.tiny_weights:
        title += " [TINY WEIGHTS]"
    if report.state != COMPLETE:
        title += f" [{report.state.upper()}]"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style>", plotly_script(), "</head><body>", f"<h1>{_esc(title)}</h1>"]
    for label in report.labels:
        cls = "tiny" if "TINY" in label else "incomplete"
        parts.append(f'<div class="banner {cls}">{_esc(label)}</div>')
    parts.append("<p>" + "<br>".join(_esc(line) for line in header_lines(report)[:2]) + "</p>")
    parts.append("<p>Sections: <a href='#winners'>winners</a> · <a href='#overview'>overview</a> · "
                 "<a href='#importances'>which hyperparameters matter</a> · <a href='#explore'>explore a "
                 "study</a> · <a href='#families'>every family</a></p>")

    def n(v: Any, spec: str) -> tuple[str, str]:
        return (_esc(format_value(v, spec)), "n")

    parts.append("<h2 id='winners'>Winners</h2><p>Chosen by validation pct_return_mae"
                 + (" (leading so far)" if report.state == RUNNING else "") + ".</p>")
    parts.append(_folded(len(report.winners), "symbols"))
    parts.append(_html_table(
        ["symbol", "family", "validation pct_return_mae", "test pct_return_mae", "baseline validation",
         "baseline test", "validation skill", "test skill", "validation price_mae", "test price_mae",
         "latency per forecast (s)", "stability spread", "flags", "config"],
        (([(_esc(w.symbol), ""), (_esc(w.family), ""), n(w.validation_pct_return_mae, ".5f"),
           n(w.test_pct_return_mae, ".5f"), n(w.baseline_validation_pct_return_mae, ".5f"),
           n(w.baseline_test_pct_return_mae, ".5f"), n(w.validation_skill, "+.3f"), n(w.test_skill, "+.3f"),
           n(w.validation_price_mae, ".5g"), n(w.test_price_mae, ".5g"),
           n(w.validation_latency_per_forecast_s, ".4f"), n(w.stability_spread, ".5f"), _flag_cell(report, w),
           (f"<code>{_esc(strict_json.dumps(dict(w.config), sort_keys=True))}</code>", "")], "")
         for w in report.winners)) + "</details>")
    parts.append(plots_html(report))
    parts.append("<h2 id='families'>Every family</h2>" + _folded(len(report.rows), "studies"))
    parts.append(_html_table(
        ["symbol", "family", "winner", "validation pct_return_mae", "test pct_return_mae",
         "validation price_mae", "test price_mae", "latency per forecast (s)", "validation skill",
         "test skill", "stability spread", "trials", "flags"],
        (([(_esc(r.symbol), ""), (_esc(r.family), ""), ("★" if r.winner else "", ""),
           n(r.validation_pct_return_mae, ".5f"), n(r.test_pct_return_mae, ".5f"),
           n(r.validation_price_mae, ".5g"), n(r.test_price_mae, ".5g"),
           n(r.validation_latency_per_forecast_s, ".4f"), n(r.validation_skill, "+.3f"),
           n(r.test_skill, "+.3f"), n(r.stability_spread, ".5f"), (_esc(_trial_text(r)), "n"),
           _flag_cell(report, r)],
          "win" if r.winner else "")
         for r in report.rows)) + "</details>")
    parts.append("<h2>Flags</h2><ul>" + "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>"
                                              for k, v in FLAG_RULES.items()) + "</ul>")
    parts.append("<p>skill = 1 − pct_return_mae / baseline pct_return_mae (&gt; 0 beats the naive "
                 "no-change forecast on the same windows); stability spread = max − min pct_return_mae "
                 "over the validation period and the earlier stability folds.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
