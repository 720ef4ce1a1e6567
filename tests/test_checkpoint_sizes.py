"""Checkpoint sizes as a searched choice: listing them, the `checkpoint` dimension, routing,
GPU shares per size, winners under a latency limit (the Ray runs are in tests/engine/test_sizes.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuner.core.config import load_family_config, with_space_checkpoints
from tuner.core.errors import ConfigError
from tuner.core.families import family_class
from tuner.core.models.weights import DEFAULTS, WeightsSource
from tuner.engine.experiment_config import (
    ExperimentConfig,
    FamilyResources,
    parse_experiment_config,
)

REPO = Path(__file__).resolve().parents[1]


def test_when_upstream_sizes_are_listed_by_name_then_each_gets_its_sources_and_kronos_its_tokenizer() -> None:
    w = WeightsSource.from_mapping({"toto2": ["4m", "22m", "313m"], "kronos": ["mini", "small", "base"]}, "weights")
    assert [c.name for c in w.checkpoints("toto2")] == ["4m", "22m", "313m"]
    mini = w.for_checkpoint("kronos_standard", "mini")
    assert (mini.kronos, mini.kronos_tokenizer) == ("NeoQuasar/Kronos-mini", "NeoQuasar/Kronos-Tokenizer-2k")
    base = w.for_checkpoint("kronos_ensemble", "base")
    assert (base.kronos, base.kronos_tokenizer) == ("NeoQuasar/Kronos-base", "NeoQuasar/Kronos-Tokenizer-base")
    assert w.for_checkpoint("toto2", "313m").toto2 == "Datadog/Toto-2.0-313m"
    # The model's own fields hold upstream's default size (what a single-checkpoint reader loads).
    assert (w.toto2, w.kronos, w.kronos_tokenizer) == (DEFAULTS["toto2"], DEFAULTS["kronos"], DEFAULTS["kronos_tokenizer"])


def test_when_sizes_are_stored_then_they_read_back_equal() -> None:
    w = WeightsSource.from_mapping({"toto2": {"a": "/w/a", "b": "Datadog/Toto-2.0-313m"},
                                    "kronos": ["mini", {"kronos": "/w/k", "kronos_tokenizer": "/w/t"}]}, "weights")
    stored = w.to_dict()
    assert stored["toto2"] == {"a": "/w/a", "b": "Datadog/Toto-2.0-313m"}
    assert stored["kronos"]["k"] == {"kronos": "/w/k", "kronos_tokenizer": "/w/t"}
    assert WeightsSource.from_mapping(stored, "weights") == w


def test_when_one_checkpoint_is_listed_then_nothing_changes() -> None:
    one = WeightsSource.from_mapping({"toto2": ["Datadog/Toto-2.0-4m"]}, "weights")
    assert one == WeightsSource(toto2="Datadog/Toto-2.0-4m") and one.checkpoints("toto2") == ()
    assert one.to_dict() == WeightsSource(toto2="Datadog/Toto-2.0-4m").to_dict()
    assert WeightsSource().to_dict() == dict(DEFAULTS)  # stored configs keep their shape
    space = load_family_config("toto2", weights=one)
    assert space.space == load_family_config("toto2").space and "checkpoint" not in space.default


def test_when_the_command_line_lists_sizes_then_they_are_searched() -> None:
    w = WeightsSource.parse("toto2=4m+Datadog/Toto-2.0-313m")
    assert [c.name for c in w.checkpoints("toto2")] == ["4m", "313m"]


@pytest.mark.parametrize(("value", "message"), [
    ({"toto2": ["4m", "4m"]}, r"weights\.toto2: the size name '4m' is given twice"),
    ({"toto2": {"bad name": "/w/a", "b": "/w/b"}}, r"weights\.toto2\.bad name: size name 'bad name'"),
    ({"toto2": []}, r"weights\.toto2: an empty list"),
    ({"kronos_tokenizer": ["/a", "/b"]}, r"weights\.kronos_tokenizer: one tokenizer"),
    ({"kronos": {"mini": {"kronos": "/k", "tokenizer": "/t"}, "b": "/b"}}, r"weights\.kronos\.mini: .* must map"),
])
def test_when_sizes_are_listed_badly_then_the_error_names_the_key(value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        WeightsSource.from_mapping(value, "weights")


def test_when_several_sizes_are_searched_then_the_space_gets_a_checkpoint_dimension_and_the_default_upstreams_size() -> None:
    w = WeightsSource.from_mapping({"toto2": ["4m", "22m", "313m"], "kronos": ["mini", "small"]}, "weights")
    toto2 = load_family_config("toto2", weights=w)
    assert toto2.space.dimensions[0].name == "checkpoint"
    assert toto2.space.dimensions[0].choices == ("4m", "22m", "313m")
    assert toto2.default["checkpoint"] == "22m" and toto2.default_point["checkpoint"] == "22m"
    assert load_family_config("kronos_ensemble", weights=w).default["checkpoint"] == "small"
    # Without upstream's default size among them, the first listed.
    other = WeightsSource.from_mapping({"toto2": ["313m", "4m"]}, "weights")
    assert load_family_config("toto2", weights=other).default["checkpoint"] == "313m"
    assert "checkpoint" not in load_family_config("toto", weights=w).space.names


def configs_listing(tmp_path, monkeypatch, family: str, checkpoints: str) -> None:
    """A copy of configs/ whose ``family`` space file lists ``checkpoints``, used via $TUNER_CONFIGS."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    space = configs / "spaces" / f"{family}.yaml"
    space.write_text(space.read_text() + f"checkpoints: {checkpoints}\n")
    monkeypatch.setenv("TUNER_CONFIGS", str(configs))


def test_when_a_space_file_lists_sizes_then_they_apply_unless_the_experiment_names_its_own(tmp_path, monkeypatch) -> None:
    configs_listing(tmp_path, monkeypatch, "toto2", "[4m, 22m]")
    merged = with_space_checkpoints(WeightsSource(), ["toto2", "toto"])
    assert [c.name for c in merged.checkpoints("toto2")] == ["4m", "22m"]
    assert load_family_config("toto2").space.names[0] == "checkpoint"
    own = WeightsSource(toto2="/w/mine")
    assert with_space_checkpoints(own, ["toto2"]) == own


def test_when_a_space_file_lists_sizes_for_a_weights_free_family_then_it_is_refused(tmp_path, monkeypatch) -> None:
    configs_listing(tmp_path, monkeypatch, "bootstrap_returns", "[a, b]")
    with pytest.raises(ConfigError, match=r"bootstrap_returns\.yaml: checkpoints: family bootstrap_returns loads no weights"):
        load_family_config("bootstrap_returns")


def test_when_a_trial_names_another_size_than_its_model_holds_then_it_fails_naming_both(tiny_weights) -> None:
    w = WeightsSource.from_mapping({"toto2": {"a": str(tiny_weights), "b": str(tiny_weights)}}, "weights")
    family = family_class("toto2")(weights=w, checkpoint="a")
    params = {"max_context": 64, "point": "median"}
    assert family.check_params({"checkpoint": "a", **params}) == {"checkpoint": "a", **params}
    with pytest.raises(ConfigError, match=r"checkpoint: 'b', but this toto2 model holds checkpoint 'a'"):
        family.check_params({"checkpoint": "b", **params})
    with pytest.raises(ConfigError, match="loaded as its only checkpoint"):
        family_class("toto2")(weights=str(tiny_weights / "toto2")).check_params({"checkpoint": "a", **params})
    with pytest.raises(ConfigError, match="family bootstrap_returns has no checkpoint sizes"):
        family_class("bootstrap_returns")().check_params({"checkpoint": "a"})


def test_when_trials_name_a_size_then_the_routing_sends_them_to_that_sizes_actors() -> None:
    from tuner.engine.actors import Routing

    routing = Routing("ns", {"toto2@4m": ("t4",), "toto2@22m": ("t22a", "t22b"), "toto": ("t",)}, 0)
    assert routing.pick("toto2", "AAPL/toto2#1", {"checkpoint": "4m"}) == "t4"
    assert routing.pick("toto2", "AAPL/toto2#1", {"checkpoint": "22m"}) in ("t22a", "t22b")
    assert routing.pick("toto", "AAPL/toto#1", {"num_samples": 8}) == "t"
    with pytest.raises(KeyError, match="no model actors for toto2@1B"):
        routing.pick("toto2", "AAPL/toto2#1", {"checkpoint": "1B"})


def _sized_config(**resources) -> ExperimentConfig:
    w = WeightsSource.from_mapping({"toto2": ["22m", "313m"]}, "weights")
    return ExperimentConfig(families=("toto2", "toto"), weights=w,
                            resources={f: FamilyResources.from_mapping(r, f"resources.{f}") for f, r in resources.items()})


def test_when_gpu_shares_are_given_per_size_then_each_sizes_actors_get_theirs(monkeypatch) -> None:
    import ray

    from tuner.engine.experiment import _actor_plan

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"GPU": 1.0, "CPU": 16.0})
    plan = _actor_plan(_sized_config(toto2={"gpu_share": {"313m": 0.5}}))
    assert set(plan) == {"toto2@22m", "toto2@313m", "toto"}
    assert plan["toto2@313m"].num_gpus == 0.5
    assert plan["toto2@22m"].num_gpus == pytest.approx(0.25 / 2)  # the family's default, split over its sizes
    assert plan["toto"].num_gpus == 0.5
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    cpu_only = _actor_plan(_sized_config())
    assert {r.num_gpus for r in cpu_only.values()} == {0.0} and len(cpu_only) == 3


def test_when_a_gpu_share_names_a_size_not_searched_then_the_error_lists_the_sizes() -> None:
    from tuner.engine.experiment import actor_groups

    with pytest.raises(ConfigError, match=r"resources\.toto2\.gpu_share\.1B: not a checkpoint size toto2 searches \(22m, 313m\)"):
        actor_groups(_sized_config(toto2={"gpu_share": {"1B": 0.5}}))
    with pytest.raises(ConfigError, match=r"resources\.toto\.gpu_share\.x: .*searches one checkpoint"):
        actor_groups(_sized_config(toto={"gpu_share": {"x": 0.5}}))


def test_when_gpu_shares_are_stored_then_they_read_back_and_configs_without_them_keep_their_shape() -> None:
    config = _sized_config(toto2={"gpu_share": {"313m": 0.5, "22m": 0.25}, "actors": 1})
    stored = config.to_dict()
    assert stored["resources"]["toto2"] == {"actors": 1, "num_gpus": None, "num_cpus": None,
                                            "gpu_share": {"313m": 0.5, "22m": 0.25}}
    assert parse_experiment_config(stored) == config
    plain = ExperimentConfig(resources={"toto": FamilyResources(actors=2)})
    assert plain.to_dict()["resources"] == {"toto": {"actors": 2, "num_gpus": None, "num_cpus": None}}
    with pytest.raises(ConfigError, match=r"resources\.toto2\.gpu_share\.22m: -1 must be a number >= 0"):
        parse_experiment_config({"families": ["toto2"], "resources": {"toto2": {"gpu_share": {"22m": -1}}}})


def test_when_a_latency_limit_is_set_then_the_fastest_size_within_it_wins() -> None:
    from tuner.engine.collate import TrialRecord, pick_winners

    def trial(tid: str, size: str, error: float, latency: float) -> TrialRecord:
        return TrialRecord(tid, "AAPL", "toto2", "completed", {"checkpoint": size, "point": "median"},
                           {"pct_return_mae": error, "latency_per_forecast_s": latency})

    records = [trial("1", "313m", 0.010, 0.050), trial("2", "22m", 0.012, 0.004), trial("3", "4m", 0.015, 0.001)]
    assert pick_winners(records)[("AAPL", "toto2")].config["checkpoint"] == "313m"
    assert pick_winners(records, max_latency_s=0.01)[("AAPL", "toto2")].config["checkpoint"] == "22m"
    assert pick_winners(records, max_latency_s=0.002)[("AAPL", "toto2")].config["checkpoint"] == "4m"
