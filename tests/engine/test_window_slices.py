"""Windows cut by Ray tasks (tuner/engine/window_slices.py) are what a serial load and cut gives.

The reference below is the driver's former code: ``load_dataset`` then ``make_periods`` per
symbol and family. The data holds what settling must see across slices: a symbol in two files
that land in different tasks, two symbols differing only in letter case, a symbol too short to
cut, a file that is not bar data, a hidden file and (with a symbol list) a symbol found nowhere."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from tests.conftest import random_walk_bars
from tuner.core.candidates import WinnerForecasts, symbol_candidates
from tuner.core.config import load_family_config
from tuner.core.data import load_dataset
from tuner.core.errors import DataError
from tuner.core.windows import WindowSpec, make_periods, target_dates, window_counts
from tuner.engine import window_slices
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.window_slices import CuttingPlan, cut_windows, cutting_plan, derive_candidates

FAMILIES = ("bootstrap_returns", "toto")
SPEC = WindowSpec(8, 8)


@pytest.fixture
def tricky_data(write_csv):
    for i, name in enumerate(["AAA", "BBB", "CCC", "DUP", "xy", "XY"]):
        write_csv(f"{name}.csv", random_walk_bars(300, seed=i))
    write_csv("SHORT.csv", random_walk_bars(30, seed=9))
    many = random_walk_bars(300, seed=11)
    both = [many.assign(Symbol=s) for s in ("DUP", "ABB")]  # DUP also has its own file; ABB sorts before BBB.csv
    write_csv("zz_many.csv", pd.concat(both))
    write_csv("notes.csv", "name,comment\nx,y\n")
    path = write_csv(".hidden.csv", random_walk_bars(300, seed=12))
    return path.parent


def serial(data, symbols):
    """The driver's former ``_cut_windows``: studies, skipped, periods, counts and dates."""
    dataset = load_dataset(data, symbols=symbols)
    skipped = {str(f): why for f, why in dataset.skipped}
    skipped.update({sym: str(err) for sym, err in dataset.errors.items()})
    periods = {family: {} for family in FAMILIES}
    for symbol in dataset.symbols:
        for family in FAMILIES:
            try:
                periods[family][symbol] = make_periods(dataset.bars[symbol], SPEC,
                                                       load_family_config(family).context_length)
            except DataError as e:
                skipped[f"{symbol}/{family}"] = str(e)
    studies = [(s, f) for s in dataset.symbols for f in FAMILIES if s in periods[f]]
    used, dates = {}, {}
    for by_symbol in periods.values():
        for symbol, p in by_symbol.items():
            used.setdefault(symbol, window_counts(p))
            dates.setdefault(symbol, {"test": target_dates(p.test)})
    return studies, skipped, periods, used, dates


def same_batch(a, b) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) if isinstance(getattr(a, f.name), np.ndarray)
               else getattr(a, f.name) == getattr(b, f.name) for f in fields(a))


@pytest.mark.parametrize("symbols", [None, ("AAA", "DUP", "ABB", "SHORT", "xy", "XY", "ZZZ")])
def test_when_windows_are_cut_in_tasks_then_studies_skips_and_windows_equal_the_serial_cut(
        local_ray, tricky_data, monkeypatch, symbols):
    monkeypatch.setattr(window_slices, "WINDOW_SLICE", 2)  # several slices: DUP's two files in two
    config = ExperimentConfig(name="cut", data=str(tricky_data), symbols=symbols, families=FAMILIES,
                              windows=SPEC)
    got = cut_windows(config)
    studies, skipped, periods, used, dates = serial(tricky_data, symbols)

    assert got.studies == studies and studies  # same order too
    assert list(got.skipped.items()) == list(skipped.items())
    assert "DUP" in skipped and "SHORT/toto" in skipped and "XY" in skipped  # the reference sees them
    assert got.windows_used == used and got.window_dates == dates
    # Symbols with the same calendar share one dates object and one counts object.
    alike = [s for s in got.window_dates if got.window_dates[s] == got.window_dates["AAA"]]
    assert len(alike) > 1 and all(got.window_dates[s] is got.window_dates["AAA"] for s in alike)
    assert all(got.windows_used[s] is got.windows_used["AAA"] for s in alike)
    assert len(got.refs) > 1
    for symbol, family in studies:
        cut = local_ray.get(got.refs[got.slice_of[symbol]])[family][symbol]
        want = periods[family][symbol]
        assert same_batch(cut.validation, want.validation) and same_batch(cut.test, want.test)
        assert len(cut.folds) == len(want.folds)


def test_when_nothing_can_be_cut_then_the_error_names_each_reason(local_ray, write_csv):
    folder = write_csv("TINY.csv", random_walk_bars(20, seed=1)).parent
    with pytest.raises(DataError, match="nothing to tune; TINY/bootstrap_returns: .*has 20 bars"):
        cut_windows(ExperimentConfig(name="cut", data=str(folder), families=("bootstrap_returns",),
                                     windows=SPEC))


def test_when_candidates_are_derived_on_the_slices_then_they_equal_the_serial_ones(local_ray, tricky_data):
    config = ExperimentConfig(name="cut", data=str(tricky_data), families=FAMILIES, windows=SPEC)
    got = cut_windows(config)
    _, _, periods, _, _ = serial(tricky_data, None)
    rng = np.random.default_rng(3)
    found = {}
    for symbol in ("CCC", "AAA", "ABB"):  # not in symbol order: the result keeps this order
        p = periods["toto"][symbol]
        found[symbol] = {
            family: WinnerForecasts(family, p.validation.actual_close * (1 + rng.normal(0, 0.01, len(p.validation))),
                                    p.test.actual_close * (1 + rng.normal(0, 0.01, len(p.test))), latency, latency)
            for family, latency in (("toto", 0.02), ("kronos_ensemble", 0.05))}
    derived = derive_candidates(got, found, None, seed=7)
    want = {(symbol, kind): doc for symbol, forecasts in found.items()
            for kind, doc in symbol_candidates(symbol, periods["toto"][symbol], forecasts, None, 7).items()}
    assert derived == want and any(kind == "blend" for _, kind in derived)
    assert [s for s, _ in derived] == sorted((s for s, _ in derived), key=list(found).index)
    assert not any(kind == "blend" for _, kind in derive_candidates(got, found, 0.06, seed=7))  # 0.07 > 0.06


def test_when_the_drivers_node_has_few_or_no_cpus_then_cutting_still_runs_there_in_bounded_tasks(monkeypatch):
    monkeypatch.setattr(window_slices, "WINDOW_SLICE", 500)
    assert cutting_plan(10_000, 2) == CuttingPlan(task_cpus=1, in_flight=2, files_per_task=500)
    assert cutting_plan(6, 2) == CuttingPlan(1, 2, 3)  # both CPUs get a task
    assert cutting_plan(1, 16) == CuttingPlan(1, 16, 1)
    assert cutting_plan(1_000, 0) == CuttingPlan(task_cpus=0, in_flight=1, files_per_task=500)  # a CPU-less head
    assert cutting_plan(3, 0.5) == CuttingPlan(0, 1, 3)
