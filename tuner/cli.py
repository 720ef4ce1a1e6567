"""The ``tuner`` command line. Commands are thin: parse options, call one library function,
print; library errors (:class:`~tuner.core.errors.TunerError`) become clean one-line messages."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click

from tuner.core import strict_json
from tuner.core.errors import TunerError


def library_errors(fn):
    """Turn TunerError into click's one-line 'Error: ...' and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TunerError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


EXIT_NO_WINNER = 3
"""`tuner run`/`tuner resume` exit status when the run ended but some study has no winner
(its trials failed, none met max_latency_s, or its winner could not be re-scored). 0: every
study has a winner; 1: an error stopped the run (message on the last line); 2: a usage error."""

EXIT_CODES_HELP = """

    \b
    Exit status:
      0  every study has a winner
      1  an error stopped the run (bad input, storage, stuck resources, damaged state);
         the last line names the file or setting and the way back
      2  a usage error (bad option)
      3  the run ended, but some studies have no winner (trials failed, none within
         max_latency_s, or a winner not re-scored); the last lines give the cause per family
      128+N  ended by signal N (130 Ctrl-C, 143 SIGTERM); `tuner resume` continues it
    """


def with_exit_codes(fn):
    """Append the exit statuses to a command's help (below ``@main.command()``)."""
    fn.__doc__ = fn.__doc__.rstrip() + EXIT_CODES_HELP
    return fn


def exit_for(summary: dict) -> None:
    """End with :data:`EXIT_NO_WINNER` when a study has no winner (the engine printed why)."""
    from tuner.core.summary_tables import ExperimentSummary

    if ExperimentSummary(None, summary).without_winner_count():
        sys.exit(EXIT_NO_WINNER)


def exit_cleanly_on_hangup() -> None:
    """SIGHUP (terminal closed) and SIGTERM unwind the driver like an error, so the ``finally``
    that shuts down the local Ray runs; by default SIGHUP kills the driver and leaves Ray's
    processes running. (``ray.init`` sets the same handler for SIGTERM; SIGKILL cannot be caught.)
    Tune's state, saved every few seconds, is what ``tuner resume`` continues from."""
    def leave(signum, frame):
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        raise SystemExit(128 + signum)

    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, leave)


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report an interrupted command."""


@contextlib.contextmanager
def saved_on_interrupt(name: str, storage: str):
    """Ctrl-C during a run: say what the journal kept and how to continue, exit 130 (instead
    of click's bare "Aborted!" and status 1)."""
    try:
        yield
    except KeyboardInterrupt:
        from tuner.engine.experiment import saved_trials

        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C while counting ends at once
        click.echo(interrupted_message(name, storage, saved_trials(name, storage)), err=True)
        sys.exit(INTERRUPTED)


def interrupted_message(name: str, storage: str, saved: int | None) -> str:
    """What an interrupted run tells the user: trials kept and the command that continues it."""
    where = "" if storage == "results" else f" --storage {storage}"
    kept = ("its journal could not be read back" if saved is None
            else f"{saved} finished trial{'' if saved == 1 else 's'} saved in its journal")
    return (f"interrupted: experiment {name}: {kept}; the running trials were dropped. "
            f"Continue it with `tuner resume {name}{where}`")


def window_options(fn):
    fn = click.option("--horizon", type=click.IntRange(min=1), default=1, show_default=True,
                      help="Bars ahead to forecast.")(fn)
    fn = click.option("--test-windows", type=click.IntRange(min=1), default=20, show_default=True,
                      help="Held-out test bars at the end of the data.")(fn)
    fn = click.option("--val-windows", type=click.IntRange(min=1), default=20, show_default=True,
                      help="Validation bars before the test period (what tuning optimises).")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="forecast-tuner")
def main(verbose: int) -> None:
    """Tune Toto and Kronos forecasting models per symbol by pct_return_mae.

    \b
    Example:
        tuner data check tuner/sample_data
        tuner evaluate --family toto --symbol AAPL --params '{"num_samples": 256, "aggregate": "median"}'
    """
    # Ray reads this when it is imported (every command imports Ray lazily, after this line):
    # token auth is Ray 2.60's default, and clients joining a cluster by address must ask for it.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--family", required=True, help="toto, kronos_standard, kronos_ensemble, toto2 (or bootstrap_returns, test-only).")
@click.option("--symbol", required=True, help="Symbol as in the data (file stem or symbol column).")
@click.option("--params", "params_json", required=True, help="Trial config as a JSON object.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Folder of per-symbol files or one file. Default: the bundled sample data.")
@click.option("--weights", default=None,
              help="Hub id, local checkpoint folder, or a `tuner models make-tiny` folder.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Sampling seed.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: CUDA when present.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON (SPEC.md's result layout).")
@window_options
@library_errors
def evaluate(family, symbol, params_json, data, weights, seed, device, as_json, val_windows, test_windows, horizon):
    """Score one config on a symbol's validation and test periods, with the naive baseline.

    Prints one line per period and a one-line summary; --json prints the whole result (SPEC.md's
    result layout, per-window errors included) instead. Without --weights, offline (no hub,
    nothing cached) it falls back to tiny random-init weights, as `tuner run` does, and says so.

    \b
    Example:
        tuner evaluate --family kronos_standard --symbol MSFT --weights tiny-weights/ \\
            --params '{"temperature": 0.2, "top_p": 0.8, "top_k": 0, "sample_count": 128,
                       "max_context": 256, "clip": 2.0}'
    """
    from tuner.core.families.torch_family import check_device_here
    from tuner.core.windows import WindowSpec
    from tuner.decisions.evaluate import evaluate_symbol

    check_device_here(device, "--device", "cpu or leave --device out")

    try:
        params = json.loads(params_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--params") from e
    if not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    result = evaluate_symbol(family, symbol, params, data=data, weights=weights, seed=seed,
                             windows=WindowSpec(val_windows, test_windows, horizon), device=device,
                             echo=lambda line: click.echo(line, err=True))
    if result.tiny_weights:
        click.echo("WARNING: tiny random-init weights: these scores are noise, not a model's skill.",
                   err=True)
    if as_json:
        click.echo(strict_json.dumps(result.to_dict(), indent=2))
        return
    for line in evaluation_lines(result):
        click.echo(line)


def evaluation_lines(result) -> list[str]:
    """``tuner evaluate``'s readable output: per period the scores next to the naive baseline's,
    then a one-line summary (how it did against the baseline on each period)."""
    def skill(value: float | None) -> str:
        return "-" if value is None else f"{value:+.3f}"

    lines, verdicts = [], []
    for name, period in (("validation", result.validation), ("test", result.test)):
        if period is None:
            continue
        s, b = period.scores, period.baseline
        lines.append(f"{name:<10}  pct_return_mae {s.pct_return_mae:.5f} (naive baseline {b.pct_return_mae:.5f}, "
                     f"skill {skill(period.skill)})  price_mae {s.price_mae:.5g}  "
                     f"{s.latency_per_forecast_s:.4f} s/forecast  {s.windows} windows")
        beats = period.skill is not None and period.skill > 0
        verdicts.append(f"{name} {s.pct_return_mae:.5f} {'beats' if beats else 'does not beat'} the baseline's "
                        f"{b.pct_return_mae:.5f}")
    tiny = " [TINY WEIGHTS: noise]" if result.tiny_weights else ""
    lines.append(f"{result.symbol} {result.family}: " + "; ".join(verdicts) + f"{tiny} (--json for everything)")
    return lines


@main.group()
def data() -> None:
    """Inspect bar data.

    \b
    Example:
        tuner data check my-bars/
    """


@data.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@window_options
@click.option("--context", type=click.IntRange(min=1), default=None,
              help="Context bars required before the first window (default: the minimum, 32).")
@library_errors
def data_check(path, as_json, val_windows, test_windows, horizon, context):
    """Report per symbol: rows, range, frequency, gaps and problems.

    Exits with status 1 when any symbol or file is not usable.

    \b
    Example:
        tuner data check tuner/sample_data --context 256
    """
    from tuner.core.data import check_data
    from tuner.core.windows import MIN_CONTEXT, WindowSpec

    spec = WindowSpec(val_windows, test_windows, horizon)
    ctx = context or MIN_CONTEXT
    reports = check_data(path, spec.bars_needed(ctx), spec.need(ctx))
    if as_json:
        click.echo(strict_json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for line in data_check_lines(reports):
            click.echo(line)
    if not all(r.usable for r in reports):
        sys.exit(1)


SHARED_NAMES = 5
"""Files a shared data-check warning names before "and N more"."""


def frequency_words(frequency: str | None) -> str:
    """A bar spacing as ``tuner data check`` stores it (``1 days``, ``01:00:00``) in words:
    ``daily``, ``hourly``, ``every 5 minutes``, ``weekly``..."""
    import pandas as pd

    if not frequency:
        return "frequency unknown"
    try:
        seconds = pd.Timedelta(frequency).total_seconds()
    except ValueError:
        return f"every {frequency}"
    named = {60: "every minute", 3600: "hourly", 86400: "daily", 7 * 86400: "weekly"}
    if seconds in named:
        return named[seconds]
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1)):
        if seconds >= size and seconds % size == 0:
            return f"every {seconds / size:g} {unit}"
    return f"every {frequency}"


def data_check_lines(reports) -> list[str]:
    """``tuner data check``'s text: per symbol its status, rows, range, frequency in words,
    gaps, problems and its own warnings; a warning that several files share is said once at the
    end ("15 files: no open column; filled with close"); then a totals line."""
    holders: dict[str, list[str]] = {}
    for r in reports:
        for w in dict.fromkeys(r.warnings):
            holders.setdefault(w, []).append(r.symbol)
    shared = {w: names for w, names in holders.items() if len(names) > 1}
    lines = []
    for r in reports:
        lines.append(f"{r.symbol}: {'ok' if r.usable else 'NOT USABLE'}")
        if r.rows:
            lines.append(f"  rows {r.rows}, {r.start} .. {r.end}, {frequency_words(r.frequency)}, "
                         f"gaps {r.gaps}" + (f" (largest {r.largest_gap})" if r.largest_gap else ""))
        lines += [f"  problem: {p}" for p in r.problems]
        lines += [f"  warning: {w}" for w in r.warnings if w not in shared]
    if shared:
        lines.append("warnings shared by several files:")
        for w, names in shared.items():
            more = f" and {len(names) - SHARED_NAMES} more" if len(names) > SHARED_NAMES else ""
            lines.append(f"  {len(names)} files: {w} ({', '.join(names[:SHARED_NAMES])}{more})")
    usable = sum(r.usable for r in reports)
    warned = sum(bool(r.warnings) for r in reports)
    lines.append(f"{len(reports)} checked: {usable} usable, {len(reports) - usable} not usable; "
                 f"{sum(len(r.warnings) for r in reports)} warnings in {warned} files"
                 + (f" ({len(shared)} shared, said once above)" if shared else ""))
    return lines


def _split(value: str | None, option: str) -> tuple[str, ...] | None:
    """``"a, b"`` → ``("a", "b")``; None when the option was not given. An option given but
    empty (``--families ""``) is an error naming ``option``, never "the default"."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("empty; give a comma-separated list or leave the option out",
                                 param_hint=option)
    return items


@main.command()
@with_exit_codes
@click.option("--config", "config_path", default=None,
              help="Experiment YAML (or a name in configs/experiments/). Default: sample.")
@click.option("--data", default=None,
              help="Bar data folder or file. Default: the experiment's (sample: the bundled data).")
@click.option("--symbols", default=None,
              help="Comma-separated symbols. Default: all in --data when it is given, else the "
                   "experiment's list.")
@click.option("--families", default=None,
              help="Comma-separated families to tune. Default: the experiment's.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials per (symbol, family) study.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Experiment seed.")
@click.option("--name", default=None, help="Experiment name (an existing name is resumed).")
@click.option("--storage", default=None, help="Experiments folder, shared path or s3:// / gs:// URI.")
@click.option("--weights", default=None,
              help="Hub ids (toto=...,kronos=...,kronos_tokenizer=...,toto2=...) or a make-tiny folder; "
                   "several sizes to search: toto2=4m+22m, kronos=mini+small.")
@click.option("--address", default=None, help="Join a Ray cluster (auto, ray://host:10001). Default: local Ray.")
@click.option("--max-concurrent-per-study", type=click.IntRange(min=1), default=None,
              help="Trials of one study in flight at once.")
@click.option("--device", default=None, help="auto, cpu or cuda.")
@click.option("--autocast-dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None,
              help="Precision of the transformers on CUDA (fp32 = no autocast).")
@click.option("--val-windows", type=click.IntRange(min=1), default=None, help="Validation bars.")
@click.option("--test-windows", type=click.IntRange(min=1), default=None, help="Test bars.")
@click.option("--horizon", type=click.IntRange(min=1), default=None, help="Bars ahead.")
@click.option("--stability-folds", type=click.IntRange(min=0), default=None,
              help="Earlier validation-sized folds winners are re-scored on (score spread).")
@click.option("--max-latency", "max_latency_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds per forecast a winner may take at most (validation latency).")
@click.option("--warm-start-from", default=None,
              help="Seed each study with the best trials of this earlier experiment (same storage).")
@click.option("--warm-start-production", is_flag=True, default=None,
              help="Seed each study with the promoted config in configs/best/<SYMBOL>.json.")
@click.option("--pack-size", type=click.IntRange(min=1), default=None,
              help="Optuna trials one Tune trial carries at most. Default: chosen from the studies.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the Ray dashboard (local Ray only).")
@click.option("--take-over", is_flag=True,
              help="Take over a damaged lock, or one whose holder on another host has sent no heartbeat "
                   "for 300 s; never a live holder.")
@click.option("--ray-start-timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds a local Ray's node may take to start (a loaded machine needs more). "
                   "Default: $RAY_raylet_start_wait_time_s, else 300.")
@click.option("--pooled/--no-pooled", default=None,
              help="Also tune one config per family pooled over all symbols (default: the config's, true).")
@library_errors
def run(config_path, data, symbols, families, trials, seed, name, storage, weights, address,
        max_concurrent_per_study, device, autocast_dtype, val_windows, test_windows, horizon, stability_folds,
        max_latency_s, warm_start_from, warm_start_production, pack_size, no_dashboard, take_over,
        ray_start_timeout, pooled):
    """Tune every (symbol, family) study with Ray Tune + Optuna TPE and collate the winners.

    With no options: the `sample` experiment (3 bundled symbols × 3 families) on a local Ray.
    --data without --symbols tunes every symbol in that data. An existing --name is resumed.

    \b
    Example:
        tuner run
        tuner run --config monthly --address auto
        tuner run --symbols AAPL,MSFT --families toto --trials 20 --weights tiny-weights/
        tuner run --data my-bars/ --name my-bars
        tuner run --name 2026-12 --warm-start-from 2026-11 --warm-start-production
    """
    from dataclasses import replace

    from tuner.core.families.torch_family import check_device_here
    from tuner.core.models.weights import WeightsSource
    from tuner.core.phase_clock import process_started_at
    from tuner.core.windows import WindowSpec
    from tuner.engine.local_ray import set_start_wait

    set_start_wait(ray_start_timeout)  # before Ray is imported: it reads the setting then
    from tuner.engine.experiment import run_experiment
    from tuner.engine.experiment_config import load_experiment_config

    config = load_experiment_config(config_path).with_data(data, _split(symbols, "--symbols"))
    if any(v is not None for v in (val_windows, test_windows, horizon, stability_folds)):
        w = config.windows
        config = replace(config, windows=WindowSpec(
            val_windows or w.val_windows, test_windows or w.test_windows, horizon or w.horizon,
            w.stability_folds if stability_folds is None else stability_folds))
    config = config.with_overrides(
        families=_split(families, "--families"), trials=trials, seed=seed,
        name=name, storage=storage, address=address, device=device,
        max_concurrent_per_study=max_concurrent_per_study, max_latency_s=max_latency_s,
        warm_start_from=warm_start_from, warm_start_production=warm_start_production or None,
        weights=WeightsSource.parse(weights) if weights else None, pack_size=pack_size,
        pooled=pooled,
    )
    if autocast_dtype is not None:
        config = replace(config, autocast_dtype=None if autocast_dtype == "fp32" else autocast_dtype)
    if not (config.address or os.environ.get("RAY_ADDRESS")):
        # A local Ray runs the models here; a cluster's GPUs are on its nodes, not this machine.
        check_device_here(config.device, "--device" if device else "device (experiment config)",
                          "--device auto or cpu")
    exit_cleanly_on_hangup()
    with saved_on_interrupt(config.name, config.storage):
        exit_for(run_experiment(config, echo=click.echo, include_dashboard=False if no_dashboard else None,
                                take_over=take_over, started_at=process_started_at()))


@main.command()
@with_exit_codes
@click.argument("name")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--address", default=None, help="Ray cluster to resume on. Default: a local Ray.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the Ray dashboard (local Ray only).")
@click.option("--take-over", is_flag=True,
              help="Take over a damaged lock, or one whose holder on another host has sent no heartbeat "
                   "for 300 s; never a live holder.")
@click.option("--ray-start-timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds a local Ray's node may take to start (a loaded machine needs more). "
                   "Default: $RAY_raylet_start_wait_time_s, else 300.")
@library_errors
def resume(name, storage, address, no_dashboard, take_over, ray_start_timeout):
    """Continue an interrupted experiment: finished trials are kept, studies keep their history.

    \b
    Example:
        tuner resume sample
        tuner resume monthly --storage s3://my-bucket/tuner --address auto

    Damaged summary.json, progress.json or trials.parquet are rebuilt from the journal.
    """
    from tuner.core.phase_clock import process_started_at
    from tuner.engine.local_ray import set_start_wait

    set_start_wait(ray_start_timeout)  # before Ray is imported: it reads the setting then
    from tuner.engine.experiment import resume_experiment

    exit_cleanly_on_hangup()
    with saved_on_interrupt(name, storage):
        exit_for(resume_experiment(name, storage, address, echo=click.echo,
                                   include_dashboard=False if no_dashboard else None, take_over=take_over,
                                   started_at=process_started_at()))


@main.command()
@click.argument("name")
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="New budget per (symbol, family) study: at least the current one.")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--address", default=None, help="Ray cluster to run on. Default: a local Ray.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the Ray dashboard (local Ray only).")
@click.option("--take-over", is_flag=True,
              help="Run even if the experiment's lock names a holder on another host (dead).")
@library_errors
def extend(name, trials, storage, address, no_dashboard, take_over):
    """Raise an experiment's trials per study and continue it from its journal.

    Finished trials are kept and each study's TPE continues from its history; every other
    setting stays as stored. Works on finished and interrupted experiments; a lower budget
    is refused. (`tuner run` with a larger --trials points here: run compares all settings
    with the stored ones, and only NAME and the budget are needed to extend.)

    \b
    Example:
        tuner extend sample --trials 60
        tuner extend monthly --trials 40 --storage s3://my-bucket/tuner --address auto
    """
    from tuner.engine.experiment import extend_experiment

    exit_cleanly_on_hangup()
    with saved_on_interrupt(name, storage):
        exit_for(extend_experiment(name, trials, storage, address, echo=click.echo,
                                   include_dashboard=False if no_dashboard else None, take_over=take_over))


@main.command()
@click.argument("name")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--json", "as_json", is_flag=True, help="Print everything stored as JSON.")
@click.option("--family", default=None, help="Only the studies of this family.")
@click.option("--symbol", "symbols", default=None, help="Only these symbols (comma-separated).")
@click.option("--all", "show_all", is_flag=True, help="List every study and symbol (a universe has thousands).")
@library_errors
def status(name, storage, as_json, family, symbols, show_all):
    """Show an experiment's progress (while it runs) or its results (when done).

    Fits an 80 x 24 terminal: whether it runs, trial totals, rate and ETA, per family counts,
    the best and worst studies by skill, recent failures, and when done the winners' tallies.
    --family and --symbol list the studies (and winners) they select; --all lists every one.

    \b
    Example:
        tuner status sample
        tuner status monthly --family toto --symbol AAPL,MSFT
        tuner status monthly --all
    """
    from tuner.decisions.status_text import StatusFilter, status_lines
    from tuner.engine.experiment import experiment_status

    info = experiment_status(name, storage)
    chosen = StatusFilter(family, frozenset(_split(symbols, "--symbol") or ()), show_all)
    if as_json:
        progress = info["progress"]
        if progress:
            progress["studies"] = {k: v for k, v in progress["studies"].items() if chosen.wants(k)}
        results = info.pop("results")
        if results is not None and not results.legacy and (chosen.show_all or chosen.symbols):
            # The entries of the symbols asked for, where summary.json held them before the tables.
            info["summary"]["symbols"] = results.entries_dict(None if chosen.show_all else chosen.symbols)
        click.echo(strict_json.dumps(info, indent=2, default=str))
        return
    for line in status_lines(info, chosen):
        click.echo(line)


@main.group()
def models() -> None:
    """Model checkpoints.

    \b
    Example:
        tuner models make-tiny tiny-weights/
    """


@models.command("make-tiny")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Init seed.")
@click.option("--size", type=click.Choice(["tiny", "tiny-wide"]), default="tiny", show_default=True,
              help="tiny-wide: wider, deeper Toto 2.0 and Kronos, a second size to search beside tiny.")
@library_errors
def make_tiny_command(folder, seed, size):
    """Write tiny random-init Toto and Kronos checkpoints in the official format.

    Pass FOLDER as --weights to give every family its checkpoints (tests, offline dry runs;
    results made with them are labelled tiny and are noise). Two folders of different --size
    can be searched as two checkpoint sizes: --weights toto2=tiny/+tiny-wide/.

    \b
    Example:
        tuner models make-tiny tiny-weights/ && tuner run --weights tiny-weights/
        tuner models make-tiny wide/ --size tiny-wide && tuner run --families toto2 --weights toto2=tiny-weights/+wide/
    """
    from tuner.core.models.tiny import make_tiny

    out = make_tiny(folder, seed=seed, size=size)
    for sub in sorted(p for p in out.iterdir() if p.is_dir()):
        click.echo(f"{sub}: {', '.join(sorted(f.name for f in sub.iterdir()))}")


@main.command()
@click.argument("experiment")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "parquet", "html"]), default="table",
              show_default=True, help="table and csv print (or go to --out); parquet and html are files.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write. Default: the terminal (table, csv) or <storage>/<experiment>/report.<format>.")
@library_errors
def report(experiment, storage, fmt, out):
    """Report an experiment: per symbol the winner, its scores, the baseline, every family, flags.

    Flags: no-skill (validation pct_return_mae >= the naive baseline's), overfit (test > 1.5 x
    validation and >= the naive baseline's on test). Tiny-weight, incomplete and still-running
    experiments are labelled in every format.

    \b
    Example:
        tuner report sample
        tuner report sample --format html --out sample.html
        tuner report monthly --storage s3://my-bucket/tuner --format csv > monthly.csv
    """
    from tuner.decisions.plots import TRIAL_COLUMNS
    from tuner.decisions.report import default_location, render, save_report
    from tuner.decisions.results import load_report

    # Only the HTML's figures read trials.parquet, and only a few of its columns.
    result = load_report(experiment, storage, trial_columns=TRIAL_COLUMNS if fmt == "html" else ())
    if out is None and default_location(fmt) is None:
        click.echo(render(result, fmt), nl=False)
        if fmt != "table":
            for label in result.labels:
                click.echo(label, err=True)
        return
    where = save_report(result, fmt, out, storage)
    click.echo(f"wrote {fmt} report: {where}")
    for label in result.labels:
        click.echo(label)


@main.command("export-optuna")
@click.argument("experiment")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--storage-url", required=True,
              help="Optuna storage to write to: a database URL (sqlite:///tuning.db, postgresql://...) "
                   "or a journal file path, as optuna-dashboard takes.")
@click.option("--replace", is_flag=True, help="Overwrite studies of the same name in that storage.")
@library_errors
def export_optuna(experiment, storage, storage_url, replace):
    """Write every (symbol, family) study of an experiment to an Optuna storage.

    Studies are named EXPERIMENT/SYMBOL/family and minimise validation pct_return_mae; each
    trial has its params and value, and as user attributes its symbol, family, latency, status
    and other trials.parquet columns; the winner also its test-period scores. Open them with
    optuna-dashboard or optuna.load_study.

    \b
    Example:
        tuner export-optuna sample --storage-url sqlite:///tuning.db
        optuna-dashboard sqlite:///tuning.db
        tuner export-optuna sample --storage-url tuning.log --replace
    """
    from tuner.decisions.studies import export_studies

    names = export_studies(experiment, storage, storage_url, replace=replace)
    click.echo(f"exported {len(names)} studies of experiment {experiment} to {storage_url}")


@main.command()
@click.argument("experiment")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--configs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="configs/ folder whose best/ gets the winners. Default: $TUNER_CONFIGS, ./configs or the repo's.")
@click.option("--symbols", default=None, help="Comma-separated symbols to promote. Default: all.")
@click.option("--only-improvements", is_flag=True,
              help="Promote only where validation pct_return_mae is lower than the current production file's.")
@click.option("--only-significant", is_flag=True,
              help="Promote only winners that beat both the default config and the naive baseline on "
                   "the test period at --alpha (one-sided Diebold-Mariano); say why others are held back.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level of --only-significant.")
@click.option("--dry-run", is_flag=True, help="Print the diffs and write nothing.")
@click.option("--force", is_flag=True, help="Promote tiny-weight or incomplete results anyway.")
@click.option("--verbose", is_flag=True,
              help="Print each file's full unified diff (default: family, config keys and scores that change).")
@click.option("--from-forward", is_flag=True,
              help="Promote only symbols whose challenger `tuner forward` proved better than production "
                   "(always-valid sequential test at --alpha).")
@library_errors
def promote(experiment, storage, configs, symbols, only_improvements, only_significant, alpha, dry_run, force,
            verbose, from_forward=False):
    """Write each symbol's decided config (own winner, pooled or default) to configs/best/<SYMBOL>.json.

    Per symbol: the family, config keys and scores that change (--verbose: the files' full diff).

    The replaced file is backed up to configs/best/.backup/<SYMBOL>.<UTC time>.json. Tiny-weight
    and incomplete experiments are refused unless --force; --dry-run shows their diff and says so.

    \b
    Example:
        tuner promote monthly --dry-run
        tuner promote monthly --symbols AAPL,MSFT --only-improvements
        tuner promote monthly --only-significant --alpha 0.05
    """
    from tuner.decisions.promote import PROMOTE, promote_winners

    if from_forward:
        return _promote_from_forward(experiment, storage, configs, alpha, dry_run, force)
    done = promote_winners(experiment, storage, configs, _split(symbols, "--symbols"), only_improvements,
                           dry_run, force, echo=click.echo, only_significant=only_significant, alpha=alpha,
                           verbose=verbose)
    for p in done:
        if p.action != PROMOTE:
            click.echo(f"{p.symbol}: skipped: {p.reason}")
            continue
        verb = "would promote" if dry_run else "promoted"
        was = f", was {p.previous_score:.5f}" if p.previous_score is not None else ""
        line = (f"{p.symbol}: {verb} {p.family} (validation pct_return_mae {p.score:.5f}{was}) "
                f"to {p.target} [{p.reason}]")
        if p.backup:
            line += f"; backup {p.backup}"
        click.echo(line)
        if p.flags:
            click.echo(f"  WARNING: {p.symbol} is flagged {', '.join(p.flags)} (see `tuner report {experiment}`)")
    refused = next((p.refused for p in done if p.refused), ())
    if refused:
        click.echo(f"WARNING: without --dry-run this is refused: {' and '.join(refused)}; "
                   "pass --force to promote it anyway")
    elif any(p.document and p.document.get("tiny_weights") for p in done if p.action == PROMOTE):
        click.echo("WARNING: these results were made with TINY RANDOM-INIT weights (allowed by --force)")
    if dry_run:
        click.echo("dry run: nothing written")


@main.command()
@click.argument("experiment")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--costs-bps", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Cost per unit of position traded, basis points (a long/short flip trades 2 units).")
@click.option("--data", default=None, help="Bars to backtest on (default: the experiment's data; may hold later bars).")
@click.option("--configs", default=None, help="configs/ folder (family defaults). Default: ./configs.")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: all of the experiment).")
@click.option("--device", default=None, help="cpu, cuda ... Default: CUDA when present.")
@click.option("--no-premise", is_flag=True,
              help="Skip trading every trial on validation (rank correlation and the DSR's trial variance).")
@library_errors
def backtest(experiment, storage, costs_bps, data, configs, symbols, device, no_premise):
    """Trade the decided configs on the test period and later bars; write backtest.json/.parquet.

    Per symbol and for the equal-weight portfolio: return after costs, hit rate, annualised
    Sharpe, max drawdown and turnover of the decided config, the family default, the naive
    forecast and buy-and-hold under two rules (sign; predicted return over volatility, capped);
    the Sharpe difference vs default with a bootstrap interval, the Deflated Sharpe Ratio, and
    the rank correlation of validation pct_return_mae with the trials' Sharpe ratio.

    \b
    Example:
        tuner backtest worked
        tuner backtest monthly --costs-bps 2 --data my-bars/
    """
    from tuner.decisions.backtest import run_backtest, summary_lines

    document = run_backtest(experiment, storage, costs_bps=costs_bps, data=data, configs=configs,
                            symbols=list(_split(symbols, "--symbols") or []) or None, device=device,
                            premise=not no_premise, echo=click.echo)
    for line in summary_lines(document):
        click.echo(line)
    click.echo(f"written: {storage}/{experiment}/backtest.json, backtest.parquet")


@main.command()
@click.argument("experiment")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--data", default=None, help="The experiment's bars (default: its own data).")
@click.option("--tags", default=None,
              help="symbols.csv with a symbol column and tag columns (sector, asset_class). "
                   "Default: symbols.csv in the data folder, if any.")
@library_errors
def patterns(experiment, storage, data, tags):
    """Which family wins where: win rates and chosen hyperparameters by symbol characteristics.

    Volatility and trend terciles, bar frequency and optional tags, each share with a Wilson
    interval; the design document's claims as hypotheses. Writes patterns.json.

    \b
    Example:
        tuner patterns worked
        tuner patterns monthly --tags symbols.csv
    """
    from tuner.decisions.patterns import pattern_lines, run_patterns

    for line in pattern_lines(run_patterns(experiment, storage, data=data, tags=tags)):
        click.echo(line)


@main.command()
@click.argument("experiment")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--data", default=None, help="Bars including the new ones (default: the experiment's data).")
@click.option("--configs", default=None, help="configs/ folder holding best/ (production). Default: ./configs.")
@click.option("--symbols", default=None, help="Comma-separated symbols (default: all of the experiment).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Level of the sequential test.")
@click.option("--device", default=None, help="cpu, cuda ... Default: CUDA when present.")
@library_errors
def forward(experiment, storage, data, configs, symbols, alpha, device):
    """Score production (champion) and the experiment's decided config (challenger) on new bars.

    Bars after the experiment's test period are forecast leak-free and appended to
    forward/ledger.parquet (a re-run scores only bars not yet there); an always-valid
    sequential test says whether the challenger is proven better, worse, or undecided.

    \b
    Example:
        tuner forward monthly --data my-bars/
        tuner promote monthly --from-forward
    """
    from tuner.decisions.forward import run_forward

    document = run_forward(experiment, storage, data=data, configs=configs,
                           symbols=list(_split(symbols, "--symbols") or []) or None, alpha=alpha,
                           device=device, echo=click.echo)
    for note in document["notes"]:
        click.echo(f"NOTE: {note}")
    click.echo(f"ledger: {document['ledger_rows']} rows ({document['added_rows']} new)")
    for symbol, entry in document["symbols"].items():
        t = entry["test"]
        mean = "-" if t["mean_difference"] is None else f"{t['mean_difference']:+.5f}"
        why = f" ({t['reason']})" if t.get("reason") else ""
        click.echo(f"{symbol}: challenger {entry['challenger']['family']} vs {entry['champion']['source']} "
                   f"{entry['champion']['family']}: {t['bars']} bars, mean error edge {mean}, "
                   f"always-valid p {t['p_value']:.3g}: {t['verdict']}{why}")


def _promote_from_forward(experiment, storage, configs, alpha, dry_run, force):
    from tuner.decisions.forward import promote_from_forward
    from tuner.decisions.promote import PROMOTE

    done = promote_from_forward(experiment, storage, configs, alpha=alpha, dry_run=dry_run, force=force,
                                echo=click.echo)
    if not done:
        click.echo(f"no forward ledger rows for {experiment}: run `tuner forward {experiment}` first")
    for p in done:
        if p.action != PROMOTE:
            click.echo(f"{p.symbol}: held back: {p.reason}")
        else:
            click.echo(f"{p.symbol}: {'would promote' if dry_run else 'promoted'} {p.family} to {p.target} "
                       f"[{p.reason}; forward test: better]")
    if any(p.refused for p in done):
        click.echo("WARNING: without --dry-run this is refused: "
                   f"{' and '.join(next(p.refused for p in done if p.refused))}; pass --force to promote it anyway")
    if dry_run:
        click.echo("dry run: nothing written")


if __name__ == "__main__":
    main()
