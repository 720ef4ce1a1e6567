"""An experiment's Optuna studies, rebuilt from ``trials.parquet``: for the HTML report's
``optuna.visualization`` figures and for ``tuner export-optuna`` (optuna-dashboard, your own
analysis with ``optuna.load_study``).

One study per (symbol, family), named ``<experiment>/<SYMBOL>/<family>``, minimising validation
pct_return_mae. Each row of ``trials.parquet`` becomes one trial, in the table's order (Tune's
trial creation order, so trial numbers follow the order TPE suggested them):

* ``params``: the trial's searched parameters (from the ``config`` column) with the family's
  distributions from ``configs/spaces/<family>.yaml`` (:func:`tuner.core.config.load_family_config`),
  widened to hold every value the table records (a space edited since the run). A conditional
  dimension that did not apply (Kronos's ``top_p`` when ``top_k`` is on) is not a param, as
  Optuna never suggested it; such values and fixed parameters are in the ``fixed_params`` user
  attribute. Without a space file, distributions are inferred from the values.
* ``value``: pct_return_mae of completed trials; failed and never-run trials are ``FAIL``.
* ``user_attrs``: every other column of the row (symbol, family, trial_id, status, error,
  latency_per_forecast_s, price_mae, skill, node, ...), and for the study's winner
  ``winner: true`` with its test-period scores (``test_pct_return_mae``, ...).
* start and end times: the trial's own, from ``finished_at`` (when the driver received it, UNIX
  time) less ``trial_wall_s`` (its run, from its pack's start) in ``trials.parquet``, or from
  the journal for tables written before that column existed (or Tune's ``timestamp`` and
  ``time_total_s`` in older tables); never the export's time.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tuner.core.errors import ConfigError, TunerError
from tuner.core.symbols import SYMBOL_RULE, symbol_problem

if TYPE_CHECKING:
    import optuna

    from tuner.core.search_space import SearchSpace
    from tuner.decisions.results import ExperimentReport

OBJECTIVE = "pct_return_mae"
COMPLETED = "completed"
SKIPPED_COLUMNS = ("config", "pct_return_mae")
"""Columns that become the trial's params and value rather than user attributes."""
WINNER_TEST_ATTRS = ("test_pct_return_mae", "test_price_mae", "test_latency_per_forecast_s", "test_skill")


@dataclass(frozen=True)
class StudyKey:
    """One (symbol, family) study of an experiment."""

    experiment: str
    symbol: str
    family: str

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.symbol}/{self.family}"


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every study it creates at INFO (a report builds hundreds of them) and warns
    that metric names and some figures are experimental: neither helps a report's reader."""
    import warnings

    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _plain(value: Any) -> Any:
    """A JSON-safe Python value (numpy scalars unwrapped, arrays such as the per-window `errors`
    as lists of floats), or None for missing values."""
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) > 0:
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime,)):
        return value.isoformat()
    return str(value)


def _config(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = row.get("config")
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return {}
    try:
        config = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: config {text!r} is not a JSON object: {e}") from e
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: config {text!r} is not a JSON object")
    return config


def _searched(space: SearchSpace | None, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a trial config into (params Optuna suggested, the rest)."""
    if space is None:
        return dict(config), {}
    params: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for dim in space.dimensions:
        if dim.name not in config:
            continue
        values[dim.name] = config[dim.name]
        if dim.only_if is None or (dim.only_if[0] in values and dim.applies(values)):
            params[dim.name] = config[dim.name]
    return params, {k: v for k, v in config.items() if k not in params}


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def distributions(space: SearchSpace | None, params: Sequence[Mapping[str, Any]]):
    """One distribution per parameter for a whole study: the space's, widened to hold every
    recorded value; inferred from the values for parameters the space does not know."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    seen: dict[str, list[Any]] = {}
    for p in params:
        for name, value in p.items():
            seen.setdefault(name, []).append(value)
    dims = {d.name: d for d in (space.dimensions if space else ())}
    out = {}
    for name, values in seen.items():
        dim = dims.get(name)
        if (dim.kind == "categorical") if dim is not None else not all(map(_numeric, values)):
            choices = list(dim.choices) if dim is not None else []
            choices += [v for v in dict.fromkeys(values) if v not in choices]
            out[name] = CategoricalDistribution(choices)
            continue
        low, high = min(values), max(values)
        # The space's range, widened only if the table holds values outside it; a widened
        # range may be off the space's grid, so it keeps no step.
        on_grid = dim is not None and dim.low <= low and high <= dim.high
        if dim is not None:
            low, high = min(low, dim.low), max(high, dim.high)
        log = bool(dim and dim.log)
        if (dim.kind == "int") if dim is not None else all(isinstance(v, int) for v in values):
            step = int(dim.step or 1) if on_grid and not log else 1
            out[name] = IntDistribution(int(low), int(high), log=log, step=step)
        else:
            step = dim.step if on_grid and not log else None
            out[name] = FloatDistribution(float(low), float(high), log=log, step=step)
    return out


def _space(family: str, weights: Mapping[str, Any] | None = None) -> SearchSpace | None:
    """The family's space as the experiment searched it (``weights``: the summary's, whose
    checkpoint sizes give the ``checkpoint`` dimension all its choices)."""
    from tuner.core.config import load_family_config
    from tuner.core.models.weights import WeightsSource

    try:
        source = WeightsSource.from_mapping(weights, "weights") if weights else None
        return load_family_config(family, weights=source).space
    except TunerError:
        return None  # an unknown family or a missing space file: infer from the values


def study_trials(rows: Sequence[Mapping[str, Any]], space: SearchSpace | None,
                 winner: Mapping[str, Any] | None = None, where: str = "trials.parquet"
                 ) -> list[optuna.trial.FrozenTrial]:
    """The trials of one study, from its ``trials.parquet`` rows (dicts), in order.

    ``winner``: ``trial_id`` and test scores (:data:`WINNER_TEST_ATTRS`) of the study's winner;
    that trial gets them as user attributes, with ``winner: true``.
    """
    import optuna
    from optuna.trial import TrialState

    configs = [_config(r, f"{where} trial {r.get('trial_id')!r}") for r in rows]
    split = [_searched(space, c) for c in configs]
    dists = distributions(space, [p for p, _ in split])
    trials = []
    for row, (params, rest) in zip(rows, split, strict=True):
        value = _plain(row.get(OBJECTIVE))
        done = row.get("status") == COMPLETED and value is not None
        attrs = {k: _plain(v) for k, v in row.items()
                 if k not in SKIPPED_COLUMNS and not k.startswith("param_") and _plain(v) is not None}
        if rest:
            attrs["fixed_params"] = rest
        if winner is not None and row.get("trial_id") == winner.get("trial_id"):
            attrs["winner"] = True
            attrs.update({k: _plain(winner.get(k)) for k in WINNER_TEST_ATTRS if _plain(winner.get(k)) is not None})
        trial = optuna.trial.create_trial(
            state=TrialState.COMPLETE if done else TrialState.FAIL, value=value if done else None,
            params=params, distributions={k: dists[k] for k in params}, user_attrs=attrs)
        start, end = trial_times(row)
        if end is not None:
            trial.datetime_start, trial.datetime_complete = start, end
        trials.append(trial)
    return trials


def trial_times(row: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a trial from its ``trials.parquet`` row, as naive local times (what
    Optuna records); (None, None) when the row has no time."""
    end, took = _plain(row.get("finished_at")), None
    if _numeric(end):
        took = next((t for t in (_plain(row.get("trial_wall_s")), _plain(row.get("actor_s"))) if _numeric(t)), None)
    else:
        end, took = _plain(row.get("timestamp")), _plain(row.get("time_total_s"))  # Tune's, older tables
    if not _numeric(end):
        return None, None
    finished = datetime.fromtimestamp(end)
    return (finished - timedelta(seconds=took) if _numeric(took) else finished), finished


def with_journal_times(report: ExperimentReport, storage_root: str) -> ExperimentReport:
    """``report`` whose trials table has each trial's ``finished_at``: a table written before
    that column existed gets it from the experiment's journal (by trial id); unchanged when
    the table has it, or the journal cannot be read (the trials then have no times)."""
    import dataclasses
    import logging

    from tuner.core.storage import Storage
    from tuner.engine.journal import read_journal

    frame = report.trials
    if frame is None or "finished_at" in frame.columns or "trial_id" not in frame.columns:
        return report
    try:
        finished = {r.trial_id: r.finished_at for r in read_journal(Storage(storage_root, report.experiment))
                    if r.finished_at}
    except (TunerError, OSError) as e:
        logging.getLogger(__name__).warning("no trial times from the journal: %s", e)
        return report
    frame = frame.copy()
    frame["finished_at"] = frame["trial_id"].map(finished)
    return dataclasses.replace(report, trials=frame)


def winners_by_study(report: ExperimentReport) -> dict[tuple[str, str], dict[str, Any]]:
    """(symbol, family) → the winner's trial id and test scores, from the report's rows."""
    return {(r.symbol, r.family): {"trial_id": r.trial_id, "test_pct_return_mae": r.test_pct_return_mae,
                                   "test_price_mae": r.test_price_mae,
                                   "test_latency_per_forecast_s": r.test_latency_per_forecast_s,
                                   "test_skill": r.test_skill}
            for r in report.rows if r.trial_id}


@dataclass(frozen=True)
class StudyTrials:
    """One study's trials without an Optuna storage (what the HTML report draws from): reading
    them as a study reads, without the in-memory storage's deep copy of every trial on the way
    in and out (most of a 1,000-symbol report's time)."""

    study_name: str
    trials: tuple[optuna.trial.FrozenTrial, ...]

    def get_trials(self, deepcopy: bool = False, states=None) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if states is None or t.state in states]


def study_trial_sets(report: ExperimentReport) -> dict[tuple[str, str], StudyTrials]:
    """Every (symbol, family) study's trials, as :func:`rebuild_studies` gives them, without
    building Optuna studies."""
    winners = winners_by_study(report)
    where = f"{report.root}/trials.parquet"
    spaces: dict[str, SearchSpace | None] = {}
    out = {}
    with quiet_optuna():
        for (symbol, family), group in _groups(report):
            if family not in spaces:
                spaces[family] = _space(family)
            trials = study_trials(group, spaces[family], winners.get((symbol, family)), where)
            for number, trial in enumerate(trials):  # what a study's storage numbers them
                trial.number = number
            out[(symbol, family)] = StudyTrials(StudyKey(report.experiment, symbol, family).name, tuple(trials))
    return out


def rebuild_studies(report: ExperimentReport, storage: str | optuna.storages.BaseStorage | None = None,
                    replace: bool = False) -> dict[tuple[str, str], optuna.Study]:
    """Every (symbol, family) study of an experiment, rebuilt from its ``trials.parquet``.

    Args:
        report: the loaded experiment (:func:`tuner.decisions.results.load_report`); its ``trials``
            table and its winners' test scores are used.
        storage: an Optuna storage to write the studies to; None = in memory.
        replace: delete studies of the same name in ``storage`` first (else such a study
            makes Optuna raise ``DuplicatedStudyError``; :func:`export_studies` checks first).

    Raises:
        ConfigError: no ``trials.parquet`` yet, a row without symbol/family columns, or a
            ``config`` that is not JSON.
    """
    import optuna

    winners = winners_by_study(report)
    where = f"{report.root}/trials.parquet"
    studies = {}
    spaces: dict[str, SearchSpace | None] = {}
    with quiet_optuna():
        for (symbol, family), group in _groups(report):
            key = StudyKey(report.experiment, symbol, family)
            if family not in spaces:
                spaces[family] = _space(family, report.weights)
            trials = study_trials(group, spaces[family], winners.get((symbol, family)), where)
            if replace and storage is not None:
                with contextlib.suppress(KeyError):
                    optuna.delete_study(study_name=key.name, storage=storage)
            study = optuna.create_study(study_name=key.name, storage=storage, direction="minimize",
                                        sampler=optuna.samplers.RandomSampler(seed=0))
            study.set_metric_names([OBJECTIVE])
            for name, value in (("experiment", report.experiment), ("symbol", symbol), ("family", family),
                                ("objective", "validation pct_return_mae"), ("seed", report.seed),
                                ("tiny_weights", report.tiny_weights), ("state", report.state)):
                study.set_user_attr(name, _plain(value))
            study.add_trials(trials)
            studies[(symbol, family)] = study
    return studies


def _groups(report: ExperimentReport) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    """``trials.parquet``'s rows per (symbol, family), sorted by study, rows in table order."""
    frame = report.trials
    if frame is None:
        raise ConfigError(f"experiment {report.experiment!r} has no trials.parquet yet under {report.root}: "
                          "it is still running or was interrupted")
    missing = [c for c in ("symbol", "family", "status", "config") if c not in frame.columns]
    if missing:
        raise ConfigError(f"{report.root}/trials.parquet: no {', '.join(missing)} column")
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number, row in enumerate(frame.to_dict("records"), start=1):
        why = symbol_problem(str(row["symbol"]))  # it becomes a part of the study's name
        if why is not None:
            raise ConfigError(f"{report.root}/trials.parquet row {number}: symbol {str(row['symbol'])!r} "
                              f"{why} ({SYMBOL_RULE}); the file is not one forecast-tuner wrote")
        rows.setdefault((str(row["symbol"]), str(row["family"])), []).append(row)
    return sorted(rows.items())


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from what ``optuna-dashboard`` takes: a database URL
    (``sqlite:///tuning.db``, ``postgresql://...``) or a journal file path (``tuning.log``)."""
    import optuna

    if "://" in url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as e:  # SQLAlchemy raises many types for a bad URL or driver
            raise ConfigError(f"--storage-url {url!r}: cannot open this database: {e}") from e
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url))


def export_studies(experiment: str, storage_root: str, url: str, replace: bool = False) -> list[str]:
    """Write every study of an experiment to the Optuna storage at ``url``, all or nothing;
    return their names. Bulk and atomic (see :mod:`tuner.decisions.study_export`): one
    transaction into a database, one file replace for a journal file.

    Raises:
        ConfigError: a study of the same name exists (without ``replace``), or the storage
            refused the export; nothing was written.
    """
    import optuna

    from tuner.decisions.results import load_report
    from tuner.decisions.study_export import read_journal_file, write_database, write_journal_file

    report = with_journal_times(load_report(experiment, storage_root), storage_root)
    names = [StudyKey(report.experiment, *key).name for key, _ in _groups(report)]
    if "://" in url:
        target = open_storage(url)  # creates the schema, or checks an existing one's version
        _refuse_taken(names, target, url, replace)
        source = optuna.storages.InMemoryStorage()
        rebuild_studies(report, source)
        write_database(target, source, replace=replace)
    else:
        journal, size = read_journal_file(url)
        storage = optuna.storages.JournalStorage(journal)
        _refuse_taken(names, storage, url, replace)
        rebuild_studies(report, storage, replace=replace)
        write_journal_file(url, journal, size)
    return names


def _refuse_taken(names: Sequence[str], storage: optuna.storages.BaseStorage, url: str, replace: bool) -> None:
    """Checked first, so a refused export writes nothing."""
    taken = sorted(set(names) & {s.study_name for s in storage.get_all_studies()})
    if taken and not replace:
        raise ConfigError(f"study {taken[0]!r} already exists in {url}"
                          + (f" (and {len(taken) - 1} more of this experiment's)" if len(taken) > 1 else "")
                          + "; pass --replace to overwrite them or export elsewhere")
