"""The checkpoint size as a tuned choice (issue 24 item 3), on a local Ray: toto2 and
kronos_standard each with two tiny checkpoints of different shapes, named like upstream's sizes
(toto2 4m/22m, Kronos mini/small), so the default config names upstream's default size."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tuner.core.config import load_family_config
from tuner.core.models.tiny import make_tiny
from tuner.core.models.weights import WeightsSource
from tuner.core.windows import WindowSpec
from tuner.engine.experiment import run_experiment
from tuner.engine.experiment_config import ExperimentConfig, FamilyResources

pytestmark = pytest.mark.slow

FAMILIES = ("toto2", "kronos_standard")
SIZES = {"toto2": ("4m", "22m"), "kronos_standard": ("mini", "small")}
DEFAULT_SIZE = {"toto2": "22m", "kronos_standard": "small"}


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """Two make-tiny bundles: ``tiny`` (small) and ``tiny-wide`` (wider and deeper models)."""
    root = tmp_path_factory.mktemp("tiny-sizes")
    return make_tiny(root / "tiny"), make_tiny(root / "tiny-wide", size="tiny-wide")


@pytest.fixture(scope="module")
def sized(local_ray, two_sizes, tmp_path_factory):
    small, wide = two_sizes
    weights = WeightsSource.from_mapping({
        "toto": str(small / "toto"),
        "toto2": {"4m": str(small), "22m": str(wide)},
        "kronos": {"mini": str(small), "small": str(wide)},
    }, "weights")
    storage = tmp_path_factory.mktemp("results")
    config = ExperimentConfig(
        name="sizes", windows=WindowSpec(val_windows=20, test_windows=20), symbols=("AAPL", "MSFT"),
        families=FAMILIES, trials=6, seed=5, weights=weights, storage=str(storage),
        resources={f: FamilyResources(actors=1) for f in FAMILIES})
    lines: list[str] = []
    summary = run_experiment(config, echo=lines.append)
    return config, storage / "sizes", summary, lines, two_sizes


def _trials(root) -> pd.DataFrame:
    table = pd.read_parquet(root / "trials.parquet")
    table["cfg"] = table["config"].map(json.loads)
    return table


def test_when_two_sizes_are_listed_then_each_has_its_own_actor_and_loads_equal_actors(sized):
    _, _, summary, lines, _ = sized
    actors = [a for a in summary["actors"] if a.get("family") in FAMILIES]
    assert sorted((a["family"], a["checkpoint"]) for a in actors) == sorted(
        (f, s) for f in FAMILIES for s in SIZES[f])
    assert summary["model_loads"] == summary["model_actors"] == 4  # 2 families x 2 sizes, 24 trials
    assert any("toto2 checkpoint 22m: 1 model actor(s)" in line for line in lines)


def test_when_two_sizes_are_listed_then_tpe_searches_both_and_each_trial_runs_on_its_size(sized):
    _, root, _, _, (small, wide) = sized
    table = _trials(root)
    assert set(table["param_checkpoint"].dropna()) == {"4m", "22m", "mini", "small"}
    for _, row in table.iterrows():
        size = row["cfg"]["checkpoint"]
        assert size in SIZES[row["family"]]
        assert f"-{row['family']}-{size}-" in row["actor"]  # routed to that size's actor
    for family in FAMILIES:  # both sizes tried in every study (the default first, then TPE)
        mine = table[table["family"] == family]
        assert set(mine["param_checkpoint"]) == set(SIZES[family])


def test_when_sizes_are_searched_then_the_default_config_names_upstreams_default_size(sized):
    config, root, _, _, _ = sized
    table = _trials(root)
    for (symbol, family), study in table.groupby(["symbol", "family"]):
        default = load_family_config(family, weights=config.weights_source).default
        assert default["checkpoint"] == DEFAULT_SIZE[family]
        # The default is asked first, but trials are numbered as they finish: a faster model's
        # trial asked after it can finish first (seen under load), so look for it, not at number 0.
        assert any(all(cfg.get(k) == v for k, v in default.items()) for cfg in study["cfg"]), (symbol, family)


def test_when_a_winner_is_written_then_it_names_its_checkpoint_and_that_sizes_weights(sized):
    _, root, _, _, (small, wide) = sized
    folder = {"4m": small, "mini": small, "22m": wide, "small": wide}
    for family in FAMILIES:
        for symbol in ("AAPL", "MSFT"):
            doc = json.loads((root / family / f"{symbol}.json").read_text())
            size = doc["config"]["checkpoint"]
            assert str(folder[size]) in doc["weights"]
            assert doc["test"] is not None  # re-scored on its size's actor


def test_when_sizes_were_searched_then_promote_writes_the_checkpoint(sized, tmp_path):
    from tuner.decisions.promote import promote_winners

    _, root, _, _, _ = sized
    (tmp_path / "best").mkdir()
    promote_winners("sizes", str(root.parent), configs=tmp_path, force=True, echo=lambda line: None)
    written = [json.loads(p.read_text()) for p in (tmp_path / "best").glob("*.json")]
    assert written and all("checkpoint" in doc["config"] for doc in written if doc["family"] in FAMILIES)


def test_when_sizes_were_searched_then_the_decisions_and_the_backtest_still_work(sized):
    from tuner.decisions.backtest import run_backtest

    _, root, summary, _, _ = sized
    assert summary["decisions"]["symbols"] == 2
    out = run_backtest("sizes", str(root.parent))  # the premise check re-forecasts every trial on its size
    assert set(out["symbols"]) == {"AAPL", "MSFT"}


def test_when_sizes_were_searched_then_the_latency_figure_shows_each_size(sized):
    from tuner.decisions.plots import latency_error_figure
    from tuner.decisions.results import load_report

    _, root, _, _, _ = sized
    figure = latency_error_figure(load_report("sizes", str(root.parent)), max_latency_s=1.0)
    names = {t.name for t in figure.data}
    hollow = {f"{f} · {s} (best trial per study)" for f in FAMILIES for s in SIZES[f]}
    assert hollow <= names  # every size's best trial per study, whichever size won
    assert {t.marker.symbol for t in figure.data} >= {"circle-open", "diamond-open"}


def test_when_a_sized_experiment_is_run_again_then_its_stored_sizes_read_back_and_nothing_is_redone(sized):
    config, root, summary, _, _ = sized
    stored = json.loads((root / "tuner-experiment.json").read_text())
    assert stored["weights"]["toto2"] == {"4m": config.weights.checkpoints("toto2")[0].sources[0][1],
                                          "22m": config.weights.checkpoints("toto2")[1].sources[0][1]}
    lines: list[str] = []
    again = run_experiment(config, echo=lines.append)
    assert any("is complete" in line for line in lines)
    assert again["trials"] == summary["trials"]


def test_when_sizes_were_searched_then_the_exported_studies_know_every_size(sized):
    from tuner.decisions.results import load_report
    from tuner.decisions.studies import rebuild_studies

    _, root, _, _, _ = sized
    for (_, family), study in rebuild_studies(load_report("sizes", str(root.parent))).items():
        assert study.trials[0].distributions["checkpoint"].choices == SIZES[family]


def test_when_a_sized_experiment_is_extended_then_its_studies_continue_over_both_sizes(sized):
    """Last in this module: it changes the experiment. The studies are rebuilt from the journal
    with the `checkpoint` dimension and go on; loads still equal actors."""
    from tuner.engine.experiment import extend_experiment

    config, root, _, _, _ = sized
    summary = extend_experiment("sizes", 7, storage_root=config.storage, echo=lambda line: None)
    assert summary["trials"]["completed"] == 4 * 7
    assert summary["model_loads"] == summary["model_actors"] == 4
    table = _trials(root)
    assert set(table[table["session"] == 2]["param_checkpoint"]) <= {s for f in FAMILIES for s in SIZES[f]}
