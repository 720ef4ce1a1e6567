"""The ``tuner`` command line. Commands are thin: parse options, call one library function,
print; library errors (:class:`~tuner.errors.TunerError`) become clean one-line messages."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from tuner.errors import TunerError


def library_errors(fn):
    """Turn TunerError into click's one-line 'Error: ...' and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TunerError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


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

    Prints the result as JSON (SPEC.md's result layout).

    \b
    Example:
        tuner evaluate --family kronos_standard --symbol MSFT --weights tiny-weights/ \\
            --params '{"temperature": 0.2, "top_p": 0.8, "top_k": 0, "sample_count": 128,
                       "max_context": 256, "clip": 2.0}'
    """
    from tuner.evaluate import evaluate_symbol
    from tuner.windows import WindowSpec

    try:
        params = json.loads(params_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--params") from e
    if not isinstance(params, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--params")
    result = evaluate_symbol(family, symbol, params, data=data, weights=weights, seed=seed,
                             windows=WindowSpec(val_windows, test_windows, horizon), device=device)
    if result.tiny_weights:
        click.echo("WARNING: tiny random-init weights: these scores are noise, not a model's skill.",
                   err=True)
    click.echo(json.dumps(result.to_dict(), indent=2))


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
    from tuner.data import check_data
    from tuner.windows import MIN_CONTEXT, WindowSpec

    spec = WindowSpec(val_windows, test_windows, horizon)
    ctx = context or MIN_CONTEXT
    reports = check_data(path, spec.bars_needed(ctx), spec.need(ctx))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
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


if __name__ == "__main__":
    main()
