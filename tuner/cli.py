"""The ``tuner`` command line. Commands are thin: parse options, call one library function,
print; library errors (:class:`~tuner.core.errors.TunerError`) become clean one-line messages."""

from __future__ import annotations

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
@click.option("--family", required=True, help="toto, kronos_standard, kronos_ensemble (or bootstrap_returns, test-only).")
@click.option("--symbol", required=True, help="Symbol as in the data (file stem or symbol column).")
@click.option("--params", "params_json", required=True, help="Trial config as a JSON object.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Folder of per-symbol files or one file. Default: the bundled sample data.")
@click.option("--weights", default=None,
              help="Hub id, local checkpoint folder, or a `tuner models make-tiny` folder.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Sampling seed.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: CUDA when present.")
@window_options
@library_errors
def evaluate(family, symbol, params_json, data, weights, seed, device, val_windows, test_windows, horizon):
    """Score one config on a symbol's validation and test periods, with the naive baseline.

    Prints the result as JSON (SPEC.md's result layout). Without --weights, offline (no hub,
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
    click.echo(strict_json.dumps(result.to_dict(), indent=2))


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
        for r in reports:
            status = "ok" if r.usable else "NOT USABLE"
            click.echo(f"{r.symbol}: {status}")
            if r.rows:
                click.echo(f"  rows {r.rows}, {r.start} .. {r.end}, every {r.frequency}, "
                           f"gaps {r.gaps}" + (f" (largest {r.largest_gap})" if r.largest_gap else ""))
            for p in r.problems:
                click.echo(f"  problem: {p}")
            for w in r.warnings:
                click.echo(f"  warning: {w}")
    if not all(r.usable for r in reports):
        sys.exit(1)


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
              help="Hub ids (toto=...,kronos=...,kronos_tokenizer=...) or a make-tiny folder.")
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
              help="Run even if the experiment's lock names a live holder on another host.")
@click.option("--pooled/--no-pooled", default=None,
              help="Also tune one config per family pooled over all symbols (default: the config's, true).")
@library_errors
def run(config_path, data, symbols, families, trials, seed, name, storage, weights, address,
        max_concurrent_per_study, device, autocast_dtype, val_windows, test_windows, horizon, stability_folds,
        max_latency_s, warm_start_from, warm_start_production, pack_size, no_dashboard, take_over, pooled):
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
    from tuner.core.windows import WindowSpec
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
    run_experiment(config, echo=click.echo, include_dashboard=False if no_dashboard else None,
                   take_over=take_over)


@main.command()
@click.argument("name")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--address", default=None, help="Ray cluster to resume on. Default: a local Ray.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the Ray dashboard (local Ray only).")
@click.option("--take-over", is_flag=True,
              help="Resume even if the experiment's lock names a holder on another host (dead).")
@library_errors
def resume(name, storage, address, no_dashboard, take_over):
    """Continue an interrupted experiment: finished trials are kept, studies keep their history.

    \b
    Example:
        tuner resume sample
        tuner resume monthly --storage s3://my-bucket/tuner --address auto
    """
    from tuner.engine.experiment import resume_experiment

    exit_cleanly_on_hangup()
    resume_experiment(name, storage, address, echo=click.echo,
                      include_dashboard=False if no_dashboard else None, take_over=take_over)


@main.command()
@click.argument("name")
@click.option("--storage", default="results", show_default=True, help="Where the experiment lives.")
@click.option("--json", "as_json", is_flag=True, help="Print everything stored as JSON.")
@click.option("--family", default=None, help="Only the studies of this family.")
@click.option("--symbol", "symbols", default=None, help="Only these symbols (comma-separated).")
@library_errors
def status(name, storage, as_json, family, symbols):
    """Show an experiment's progress (while it runs) or its results (when done).

    Overall counts, rate and ETA, per family counts, then one line per study (filter them with
    --family and --symbol; a universe run has thousands).

    \b
    Example:
        tuner status sample
        tuner status monthly --family toto --symbol AAPL,MSFT
    """
    from tuner.engine.experiment import experiment_status

    info = experiment_status(name, storage)
    wanted = set(_split(symbols, "--symbol") or ())
    progress, summary = info["progress"], info["summary"]
    if progress:
        progress["studies"] = {k: v for k, v in progress["studies"].items()
                               if (family is None or k.endswith(f"/{family}"))
                               and (not wanted or k.rsplit("/", 1)[0] in wanted)}
    if as_json:
        click.echo(strict_json.dumps(info, indent=2, default=str))
        return
    click.echo(f"experiment {name} at {info['root']}")
    if progress:
        click.echo(f"trials {progress['trials_done']}/{progress['trials_total']}, "
                   f"{progress.get('trials_per_s', 0):.1f}/s, ETA {progress['eta']}")
        for fam, f in (progress.get("families") or {}).items():
            click.echo(f"  {fam:<18} {f['finished_studies']}/{f['studies']} studies finished, "
                       f"{f['done']} trials done, {f['failed']} failed")
        for key, s in progress["studies"].items():
            best = s["best_pct_return_mae"]
            click.echo(f"  {key:<32} {s['done']:>4}/{s['total']:<4} best {'-' if best is None else f'{best:.5f}'}"
                       + (f"  running {s['running']}" if s.get("running") else "")
                       + (f"  failed {s['failed']}" if s["failed"] else ""))
    else:
        click.echo("no progress recorded yet")
    if summary:
        state = "complete" if summary["complete"] else "INCOMPLETE"
        click.echo(f"finished ({state}): {summary['trials']}")
        for symbol, e in sorted(summary["symbols"].items()):
            if wanted and symbol not in wanted:
                continue
            click.echo(f"  {symbol:<10} {e['best_family']:<16} val {e['validation_pct_return_mae']:.5f} "
                       f"test {e['test_pct_return_mae']:.5f}")
        if summary.get("tiny_weights"):
            click.echo("WARNING: made with tiny random-init weights")


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
@library_errors
def make_tiny_command(folder, seed):
    """Write tiny random-init Toto and Kronos checkpoints in the official format.

    Pass FOLDER as --weights to give every family its checkpoints (tests, offline dry runs;
    results made with them are labelled tiny and are noise).

    \b
    Example:
        tuner models make-tiny tiny-weights/ && tuner run --weights tiny-weights/
    """
    from tuner.core.models.tiny import make_tiny

    out = make_tiny(folder, seed=seed)
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
    from tuner.decisions.report import default_location, render, save_report
    from tuner.decisions.results import load_report

    result = load_report(experiment, storage)
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
@library_errors
def promote(experiment, storage, configs, symbols, only_improvements, only_significant, alpha, dry_run, force):
    """Write each symbol's winner to configs/best/<SYMBOL>.json, printing the diff first.

    The replaced file is backed up to configs/best/.backup/<SYMBOL>.<UTC time>.json. Tiny-weight
    and incomplete experiments are refused unless --force; --dry-run shows their diff and says so.

    \b
    Example:
        tuner promote monthly --dry-run
        tuner promote monthly --symbols AAPL,MSFT --only-improvements
        tuner promote monthly --only-significant --alpha 0.05
    """
    from tuner.decisions.promote import PROMOTE, promote_winners

    done = promote_winners(experiment, storage, configs, _split(symbols, "--symbols"), only_improvements,
                           dry_run, force, echo=click.echo, only_significant=only_significant, alpha=alpha)
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


if __name__ == "__main__":
    main()
