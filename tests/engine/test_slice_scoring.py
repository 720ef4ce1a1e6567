"""Weights-free re-scoring on slice tasks (tuner/engine/slice_scoring.py) gives the model actor's results.

Six symbols cut into three slices; winner-like and pooled-like runs (several configs, both
periods) scored by :class:`SliceScorer` in chunks smaller than a slice, against the same runs on
one :class:`ModelServer` holding every symbol's windows (what the engine's actor does): every
brief and every stored result's per-window errors equal, in the callers' order."""

from __future__ import annotations

import pytest

from tests.conftest import random_walk_bars
from tuner.core.windows import WindowSpec
from tuner.engine import slice_scoring, window_slices
from tuner.engine.actors import ModelServer
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.result_store import POOLED, ResultBrief, open_results
from tuner.engine.slice_scoring import SliceScorer, weights_free
from tuner.engine.window_slices import cut_windows

FAMILY = "bootstrap_returns"
SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
CONFIGS = ({"num_samples": 64, "lookback": 20, "aggregate": "median"},
           {"num_samples": 128, "lookback": 64, "aggregate": "mean"})


@pytest.fixture
def windows(local_ray, write_csv, monkeypatch):
    for i, name in enumerate(SYMBOLS):
        path = write_csv(f"{name}.csv", random_walk_bars(400, seed=i))
    monkeypatch.setattr(window_slices, "WINDOW_SLICE", 2)  # three slices of two symbols
    return cut_windows(ExperimentConfig(name="slices", data=str(path.parent), families=(FAMILY,),
                                        windows=WindowSpec(10, 10)))


def test_when_weights_free_runs_go_to_slice_tasks_then_each_result_is_the_actors(local_ray, windows, monkeypatch):
    assert len(windows.refs) == 3
    monkeypatch.setattr(slice_scoring, "SLICE_CHUNK", 3)  # several tasks per slice
    store = open_results("slices-results", "forecast-tuner")
    at = ("forecast-tuner", "slices-results")
    calls = {}
    for symbol in reversed(SYMBOLS):  # not in slice order: the results keep the callers' order
        for n, config in enumerate(CONFIGS):
            slot = ("winner", (symbol, FAMILY)) if n == 0 else (POOLED, (symbol, FAMILY))
            calls[(symbol, n)] = ((symbol, FAMILY), "evaluate_into", (symbol, config, 5, True, at, slot))
    try:
        ticks = []
        scorer = SliceScorer(windows, weights_free([FAMILY, "toto"]), None, "cpu", 0, 0.4, 2.0)
        briefs = scorer.run(calls, on_done=lambda done, total: ticks.append((done, total)))
        stored = local_ray.get(store.of_symbols.remote("winner", list(SYMBOLS)))
        pooled = local_ray.get(store.of_symbols.remote(POOLED, list(SYMBOLS)))
    finally:
        local_ray.kill(store)
    assert scorer.families == {FAMILY}
    assert list(briefs) == list(calls) and ticks[-1] == (len(calls), len(calls)) and len(ticks) > 3

    every = {s: p for ref in windows.refs for s, p in local_ray.get(ref)[FAMILY].items()}
    server = ModelServer(FAMILY, None, every, device="cpu", bank_max_bytes=0, batch_wait_s=0.0)
    for key, (_, _, (symbol, config, seed, with_test, _, slot)) in calls.items():
        want = server.evaluate(symbol, config, seed, with_test)["result"]
        got = (stored if slot[0] == "winner" else pooled)[(symbol, FAMILY)].to_dict()
        for period in ("validation", "test"):
            assert got[period]["errors"] == want[period]["errors"], (key, period)
        assert got["config"] == want["config"]
        assert briefs[key].objective == ResultBrief.of(want).objective, key  # latency is measured, not compared


def test_when_a_run_is_not_a_weights_free_evaluate_into_then_the_scorer_refuses_it(windows):
    scorer = SliceScorer(windows, weights_free([FAMILY]), None, "cpu", 0, 1.0, 2.0)
    with pytest.raises(ValueError, match="toto"):
        scorer.run({"k": (("AAA", "toto"), "evaluate_into", ())})
    with pytest.raises(ValueError, match="point_forecasts"):
        scorer.run({"k": (("AAA", FAMILY), "point_forecasts", ())})
