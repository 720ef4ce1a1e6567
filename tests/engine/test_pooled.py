"""The pooled study of a family, end to end on a local Ray with the weights-free family: tuned
beside the per-symbol studies, journaled, re-scored on every symbol, and resumed."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import random_walk_bars
from tests.summary_shapes import tables
from tuner.core.storage import SUMMARY_FILE
from tuner.engine import experiment as driver
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.journal import JOURNAL_DIR, read_journal
from tuner.engine.pooled_study import POOLED_SYMBOL, pooled_key, tuning_symbols

pytestmark = pytest.mark.slow

FAMILY = "bootstrap_returns"
SYMBOLS = ("AAA", "BBB", "CCC")
BARS = {"AAA": 560, "BBB": 600, "CCC": 640}  # auto periods: 24, 44 and 64 windows each


@pytest.fixture
def captured(monkeypatch):
    """What the driver hands collation (``pooled=`` and ``window_dates=``)."""
    seen: dict = {}
    write = driver.write_experiment

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return write(*args, **kwargs)

    monkeypatch.setattr(driver, "write_experiment", spy)
    return seen


@pytest.fixture
def config(tmp_path, write_csv):
    for i, symbol in enumerate(SYMBOLS):
        write_csv(f"{symbol}.csv", random_walk_bars(BARS[symbol], seed=i))
    return ExperimentConfig(name="pool", data=str(tmp_path / "data"), symbols=SYMBOLS, families=(FAMILY,),
                            trials=3, seed=4, storage=str(tmp_path / "results"))


def test_when_an_experiment_has_several_symbols_then_a_pooled_config_is_tuned_and_scored_on_each(
        local_ray, config, captured, tmp_path):
    summary = driver.run_experiment(config, echo=lambda line: None)
    root = tmp_path / "results" / "pool"
    pooled = captured["pooled"][FAMILY]
    # Its objective is the mean of the symbols' validation scores, re-scored with the same seed.
    assert pooled.trials == 3 and set(pooled.results) == set(SYMBOLS)
    # Each symbol's scores are in its winner file; the driver kept their briefs (the run's
    # result store held the results).
    own = {s: json.loads((root / FAMILY / f"{s}.json").read_text()) for s in SYMBOLS}
    mean = sum(own[s]["pooled"]["validation"]["pct_return_mae"] for s in SYMBOLS) / len(SYMBOLS)
    assert math.isclose(pooled.validation_pct_return_mae, mean, rel_tol=1e-9)
    for symbol, doc in own.items():
        scored = doc["pooled"]
        assert scored["config"] == pooled.config and scored["seed"] == 4 and scored["test"] is not None
        assert pooled.results[symbol].objective == scored["validation"]["pct_return_mae"]
        # Same windows as the symbol's own winner, stated in its file and in window_dates.
        assert scored["test"]["windows"] == doc["test"]["windows"] == doc["windows"]["test"]
        assert scored["validation"]["windows"] == doc["windows"]["validation"] \
            == tables(root).windows_used()[symbol]["validation"]
        dates = captured["window_dates"][symbol]
        assert len(dates["test"]) == scored["test"]["windows"] and dates["test"] == sorted(dates["test"])
    assert [tables(root).windows_used()[s]["test"] for s in SYMBOLS] == [24, 44, 64]
    assert summary["windows_used"]["test"] == {"min": 24, "max": 64}  # summary.json: the range only
    section = summary["pooled"][FAMILY]
    assert section["config"] == pooled.config and section["trials"] == 3
    assert section["validation_pct_return_mae"] == pooled.validation_pct_return_mae
    # Journaled like any study, kept out of the per-symbol tables.
    journal = [r for r in read_journal(driver.Storage(config.storage, "pool")) if r.study == pooled_key(FAMILY)]
    assert len(journal) == 3 and all(r.status == "completed" for r in journal)
    assert summary["trials"]["completed"] == 3 * len(SYMBOLS) and POOLED_SYMBOL not in tables(root).symbol_names()
    assert summary["complete"] is True


def test_when_a_run_with_a_pooled_study_is_resumed_then_only_its_missing_trial_runs(
        local_ray, config, captured, tmp_path):
    driver.run_experiment(config, echo=lambda line: None)
    root = tmp_path / "results" / "pool"
    (chunk,) = (root / JOURNAL_DIR).iterdir()
    lines = chunk.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if json.loads(line)["study"] == pooled_key(FAMILY))
    kept = [line for i, line in enumerate(lines) if i != last]
    chunk.write_text("".join(kept))  # as if the run died before the pooled study's last trial
    (root / SUMMARY_FILE).unlink()
    summary = driver.resume_experiment("pool", storage_root=config.storage, echo=lambda line: None)
    records = read_journal(driver.Storage(config.storage, "pool"))
    pooled = [r for r in records if r.study == pooled_key(FAMILY)]
    assert len(pooled) == 3 and sorted(r.number for r in pooled) == [0, 1, 2]
    assert sum(r.session == 2 for r in records) == 1  # nothing else ran again
    assert summary["pooled"][FAMILY]["trials"] == 3 and summary["complete"] is True
    assert set(captured["pooled"][FAMILY].results) == set(SYMBOLS)


def test_when_pooled_symbols_caps_the_universe_then_the_pooled_study_tunes_on_a_seeded_sample(
        local_ray, config, captured, tmp_path):
    from dataclasses import replace

    lines: list[str] = []
    summary = driver.run_experiment(replace(config, pooled_symbols=2), echo=lines.append)
    chosen = tuning_symbols(FAMILY, SYMBOLS, 2, config.seed)
    assert len(chosen) == 2 and summary["pooled"][FAMILY]["tuned_on"] == list(chosen)
    # The end-of-run line says what the pooled value is a mean over: the sample, not every symbol.
    assert any(line.startswith(f"  pooled {FAMILY}") and "over the 2 symbols it was tuned on" in line
               for line in lines), lines
    journal = [r for r in read_journal(driver.Storage(config.storage, "pool")) if r.study == pooled_key(FAMILY)]
    # Every pooled trial's objective is the mean over the sample only ...
    assert all(sorted(r.metrics["per_symbol"]) == list(chosen) for r in journal)
    # ... and the chosen config is still scored on every symbol for the decisions.
    assert set(captured["pooled"][FAMILY].results) == set(SYMBOLS)
