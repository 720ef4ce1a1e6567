"""Driver-side settings checks without Ray: the offline tiny-weights fallback (written once and
atomically, never on a cluster) and what resuming ignores."""

from __future__ import annotations

import pytest

import tuner.core.models.checkpoint as checkpoint
from tuner.core.errors import WeightsError
from tuner.engine.experiment import _resolve_weights, run_experiment
from tuner.engine.experiment_config import ExperimentConfig


@pytest.fixture
def offline(monkeypatch, tmp_path):
    def unreachable(ident, revision=None):
        raise WeightsError(f"{ident}: the Hugging Face hub cannot be reached (test)")

    monkeypatch.setattr(checkpoint, "resolve_checkpoint", unreachable)
    monkeypatch.setenv("TUNER_TINY_WEIGHTS", str(tmp_path / "tiny"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path / "tiny"


def test_when_offline_then_tiny_weights_are_written_once_and_reused(offline):
    lines = []
    weights, fell_back = _resolve_weights(ExperimentConfig(), lines.append, fallback_allowed=True)
    assert fell_back and weights.toto == str(offline / "toto")
    assert any("TINY RANDOM-INIT" in line for line in lines)
    files = sorted(offline.rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]  # no temporaries left behind
    stamps = {f: f.stat().st_mtime_ns for f in files if f.is_file()}

    _resolve_weights(ExperimentConfig(), lines.append, fallback_allowed=True)
    assert {f: f.stat().st_mtime_ns for f in files if f.is_file()} == stamps  # not rewritten


@pytest.mark.parametrize("how", ["address", "RAY_ADDRESS"])
def test_when_joining_a_cluster_offline_then_the_run_stops_instead_of_using_tiny_weights(
        offline, monkeypatch, tmp_path, how):
    config = ExperimentConfig(storage=str(tmp_path / "results"), families=("toto",), symbols=("AAPL",))
    if how == "address":
        config = config.with_overrides(address="ray://head:10001")
    else:
        monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    with pytest.raises(WeightsError, match="cannot be reached"):
        run_experiment(config, echo=lambda line: None)
    assert not offline.exists()


def test_when_resuming_with_other_settings_then_the_ignored_ones_are_named():
    from tuner.engine.experiment import _ignored_on_resume

    stored = ExperimentConfig(name="m", trials=5)
    given = ExperimentConfig(name="m", trials=5, max_latency_s=0.05, autocast_dtype="bf16",
                             address="auto", storage="elsewhere")
    assert _ignored_on_resume(stored, given) == ["autocast_dtype (stored None, given 'bf16')",
                                                 "max_latency_s (stored None, given 0.05)"]
    assert _ignored_on_resume(stored, stored) == []
