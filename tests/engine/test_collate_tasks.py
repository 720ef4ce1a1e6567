"""Collation as Ray tasks (tuner/engine/collate_tasks.py) writes what the serial path writes.

A small synthetic experiment (no model: per-window errors made up, as in tests/decided_experiment.py)
with two families, blend candidates, a pooled config and a non-finite score, collated once in the
driver (``SerialCollator``) and once in batched tasks on a 2-CPU local Ray: every file the same,
byte for byte but for its ``created_at``."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.decided_experiment import result
from tuner.core.pooled import PooledOutcome
from tuner.core.storage import Storage
from tuner.core.summary_tables import ExperimentSummary
from tuner.engine.collate import COMPLETED, TrialRecord, pick_winners, write_experiment
from tuner.engine.collate_tasks import TaskCollator, batches
from tuner.engine.journal import JournalError, JournalRecord, TrialJournal, read_journal
from tuner.engine.result_store import (
    POOLED,
    ResultBrief,
    open_results,
    pooled_results,
    study_results,
)
from tuner.engine.trial_store import start_trials, trial_record

FAMILIES = ("bootstrap_returns", "toto")
SYMBOLS = tuple(f"S{i}" for i in range(7))
WINDOWS = 40
TRIALS = 4


def experiment(seed: int = 1) -> dict:
    """write_experiment's arguments: each symbol with a winner per family, a default, the
    trials' validation errors; a blend on odd symbols; a pooled config for the first family;
    one winner's skill not finite (written as null with a reason)."""
    rng = np.random.default_rng(seed)
    records, finals, defaults, derived, pooled_results = [], {}, {}, {}, {}
    for n, symbol in enumerate(SYMBOLS):
        base = {p: np.abs(rng.normal(0, 0.01, WINDOWS)) for p in ("validation", "test")}
        default = {p: base[p] * 0.99 for p in base}
        own_by_family = {}
        for family in FAMILIES:
            factor = 0.7 if (n + len(family)) % 3 == 0 else 1.0
            own = {p: default[p] * factor * np.exp(rng.normal(0, 0.05, WINDOWS)) for p in base}
            own_by_family[family] = own
            config = {"lookback": 100 + n}
            finals[(symbol, family)] = result(symbol, config, own, base)
            defaults[(symbol, family)] = result(symbol, {"lookback": 256}, default, base)
            for i in range(TRIALS):  # the winner last (lowest validation error)
                errors = own["validation"] if i == TRIALS - 1 else own["validation"] * (1.05 + 0.05 * i)
                metrics = {"pct_return_mae": float(errors.mean()), "errors": list(map(float, errors))}
                if symbol == "S2" and family == "toto" and i == TRIALS - 1:
                    metrics["skill"] = float("nan")
                records.append(TrialRecord(f"{symbol}-{family}-{i}", symbol, family, COMPLETED,
                                           config if i == TRIALS - 1 else {"lookback": 20 + i}, metrics,
                                           number=i, session=1))
        pooled_results[symbol] = result(symbol, {"lookback": 64}, {p: default[p] * 0.9 for p in base}, base)
        if n % 2:
            mix = {p: (own_by_family[FAMILIES[0]][p] + own_by_family[FAMILIES[1]][p]) / 2 for p in base}
            doc = result(symbol, {"members": list(FAMILIES)}, mix, base).to_dict()
            doc["model_type"] = "blend"
            derived[(symbol, "blend")] = doc
    dates = {s: {p: [f"2024-{p[0]}-{t:03d}" for t in range(WINDOWS)] for p in ("validation", "test")}
             for s in SYMBOLS}
    return {"records": records, "finals": finals, "studies": [(s, f) for s in SYMBOLS for f in FAMILIES],
            "budget": TRIALS, "meta": {"experiment": "x", "seed": 0, "windows": {"horizon": 1}, "tiny_weights": False},
            "derived": derived, "defaults": defaults, "window_dates": dates,
            "pooled": {FAMILIES[0]: PooledOutcome(FAMILIES[0], {"lookback": 64}, 0.01, TRIALS, pooled_results)}}


def written(root: Path) -> dict[str, str]:
    """Every result file's text, ``created_at`` (the moment it ran) blanked."""
    return {str(p.relative_to(root)): re.sub(r'"created_at": "[^"]*"', '"created_at": ""', p.read_text())
            for p in sorted(root.rglob("*.json"))}


def tables(storage: Storage) -> tuple[dict, list]:
    """symbols.parquet's entries and studies.parquet's rows, as the readers see them."""
    summary = ExperimentSummary.read(storage)
    return summary.entries_dict(), summary.studies().to_dict("records")


def test_when_collated_in_tasks_then_every_file_and_the_summary_are_the_serial_paths(local_ray, tmp_path):
    args = experiment()
    serial = write_experiment(Storage(str(tmp_path), "serial"), **args)
    ticks: list[tuple[int, int]] = []
    collator = TaskCollator(cpus=1, on_done=lambda d, t: ticks.append((d, t)))
    tasks = write_experiment(Storage(str(tmp_path), "tasks"), **args, collator=collator)

    assert collator.stats["tasks"] == len(batches(list(SYMBOLS), 1)) > 1
    assert collator.stats["workers"] == 1 and collator._workers is None  # ended by the last step
    assert ticks[-1] == (len(SYMBOLS), len(SYMBOLS)) and len(ticks) == collator.stats["tasks"]
    a, b = written(tmp_path / "serial"), written(tmp_path / "tasks")
    assert len(a) == len(SYMBOLS) * len(FAMILIES) + len(SYMBOLS) // 2 + 1  # + the blends, summary.json
    assert a == b
    assert "skill_reason" in json.loads(a["toto/S2.json"])["validation"]  # the NaN went through as null
    decided = [json.loads(text) for name, text in a.items() if name != "summary.json"]
    assert sum("decision" in d for d in decided) == len(SYMBOLS)  # one per symbol, on its winner
    assert all("mcs" in d["significance"] for d in decided)
    serial.pop("created_at"), tasks.pop("created_at")
    assert json.dumps(serial, sort_keys=True, default=str) == json.dumps(tasks, sort_keys=True, default=str)
    entries, studies = tables(Storage(str(tmp_path), "tasks"))
    assert (entries, studies) == tables(Storage(str(tmp_path), "serial"))
    assert sorted(entries) == list(SYMBOLS) and all("decision" in e for e in entries.values())
    assert collator.stats["decision_tasks"] == collator.stats["tasks"]


def test_when_no_symbol_has_a_winner_then_the_tasks_write_the_serial_paths_summary(local_ray, tmp_path):
    args = {**experiment(), "finals": {}, "derived": {}, "defaults": {}}
    serial = write_experiment(Storage(str(tmp_path), "serial"), **args)
    tasks = write_experiment(Storage(str(tmp_path), "tasks"), **args, collator=TaskCollator(cpus=1))
    serial.pop("created_at"), tasks.pop("created_at")
    assert tasks == serial and tasks["counts"]["symbols"] == 0
    assert tasks["counts"]["studies_without_winner"] == len(SYMBOLS) * len(FAMILIES)


def test_when_the_trials_are_held_by_a_trial_store_then_collation_writes_what_the_serial_path_writes(
        local_ray, tmp_path):
    args = experiment()
    storage = Storage(str(tmp_path), "stored")
    journal = TrialJournal(storage, 1)
    for r in args["records"]:  # a chunk per trial: the store compacts them into one
        journal.append([JournalRecord(f"{r.symbol}/{r.family}", r.number, r.trial_id, r.status, {}, {},
                                      r.config, r.metrics["pct_return_mae"], r.metrics, session=1, finished_at=7.0)])
        journal.flush()
    journal.close()
    # The same records in this process, as the journal gives them back (its NaN is null).
    write_experiment(Storage(str(tmp_path), "serial"),
                     **{**args, "records": [trial_record(r) for r in read_journal(storage)]})
    before = read_journal(storage)
    trials = start_trials(storage, None).load(None, session=1)
    try:
        assert trials.digest.records == len(args["records"]) and trials.digest.failed == []
        # the driver's copy of each winner: its config and the two metrics it reads
        expected = pick_winners([trial_record(r) for r in before], None)
        assert sorted(trials.digest.winners) == sorted(expected)
        for key, winner in trials.digest.winners.items():
            assert winner.config == expected[key].config and winner.objective == expected[key].objective
            assert set(winner.metrics) == {"pct_return_mae", "latency_per_forecast_s"} & set(expected[key].metrics)
        stored = write_experiment(storage, **{**args, "records": trials},
                                  collator=TaskCollator(cpus=1))
        trials.wait_compaction()
    finally:
        trials.close()
    assert storage.list("journal") == ["0001-compact.jsonl"] and read_journal(storage) == before

    assert written(tmp_path / "serial") == written(tmp_path / "stored")
    assert stored["complete"] and stored["trials"]["completed"] == len(args["records"])
    serial_table = Storage(str(tmp_path), "serial").read_parquet("trials.parquet")
    stored_table = storage.read_parquet("trials.parquet")
    assert len(stored_table) == len(args["records"]) and (stored_table["finished_at"] == 7.0).all()
    assert serial_table.drop(columns=["errors"]).equals(stored_table.drop(columns=["errors"]))
    assert [list(e) for e in serial_table["errors"]] == [list(e) for e in stored_table["errors"]]


def test_when_rescored_and_pooled_results_are_held_by_a_result_store_then_collation_writes_the_serial_files(
        local_ray, tmp_path):
    args = experiment()
    write_experiment(Storage(str(tmp_path), "serial"), **args)
    actor = open_results("results-test", "forecast-tuner")
    try:
        stored = {}
        for kind in ("winner", "default"):
            results = args["finals" if kind == "winner" else "defaults"]
            local_ray.get(actor.put_many.remote([((kind, key), r.to_dict()) for key, r in results.items()]))
            stored[kind] = study_results(actor, kind, {key: ResultBrief.of(r.to_dict()) for key, r in results.items()})
        pooled = {}
        for family, outcome in args["pooled"].items():
            local_ray.get(actor.put_many.remote([((POOLED, (s, family)), r.to_dict()) for s, r in outcome.results.items()]))
            briefs = {s: ResultBrief.of(r.to_dict()) for s, r in outcome.results.items()}
            pooled[family] = replace(outcome, results=pooled_results(actor, family, briefs))
        write_experiment(Storage(str(tmp_path), "stored"),
                         **{**args, "finals": stored["winner"], "defaults": stored["default"], "pooled": pooled},
                         collator=TaskCollator(cpus=1))
    finally:
        local_ray.kill(actor)
    assert written(tmp_path / "serial") == written(tmp_path / "stored")
    key = next(iter(args["finals"]))
    assert stored["winner"][key].objective == args["finals"][key].objective
    assert stored["winner"][key].test_latency_per_forecast_s == args["finals"][key].test.scores.latency_per_forecast_s


def test_when_the_trial_store_reads_a_damaged_journal_then_the_driver_gets_the_journal_error_itself(
        local_ray, tmp_path):
    storage = Storage(str(tmp_path), "damaged")
    storage.write_bytes("journal/0001-000001.jsonl", b'{"study": "S0/toto"}\n')
    with pytest.raises(JournalError) as e:  # not Ray's wrapper: the CLI prints it as one line
        start_trials(storage, None).load(None, session=1)
    assert "0001-000001.jsonl" in str(e.value) and "line 1" in str(e.value)


def test_when_symbols_are_batched_then_a_few_tasks_per_cpu_and_none_too_large():
    symbols = [f"S{i}" for i in range(400)]
    assert [len(b) for b in batches(symbols, 2)] == [50] * 8
    assert [len(b) for b in batches(symbols * 25, 2)] == [100] * 100  # at most 100 symbols a task
    assert batches(["A"], 16) == [["A"]] and batches([], 2) == []
    assert sum(batches(symbols[:7], 2), []) == symbols[:7]


def test_collation_steps_run_in_the_workers_warmed_for_them_and_spread_over_them(local_ray, tmp_path):
    import ray

    def imported(gate: str) -> tuple[int, bool]:
        import os
        import sys
        import time

        while not os.path.exists(gate):  # held until every step is submitted: none ends early
            time.sleep(0.01)
        return os.getpid(), all(m in sys.modules for m in ("arch.bootstrap", "scipy.stats", "scipy.optimize"))

    collator = TaskCollator(cpus=2)
    workers = collator.warm()
    pids = workers.pids()
    assert len(set(pids)) == 2 and collator.warm() is workers  # started once
    gate = tmp_path / "go"
    calls = [workers.submit(imported, str(gate)) for _ in range(6)]
    gate.touch()
    seen = ray.get(calls)
    assert all(ok for _, ok in seen)  # imported when the worker started, not by the step
    assert sorted(pid for pid, _ in seen) == sorted(pids * 3)  # each step in a warmed worker, spread evenly
    collator.close()
    assert workers.workers == [] and collator._workers is None
