"""Faults: the driver SIGKILLed mid-run and resumed; a model actor killed mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import engine_env
from tests.summary_shapes import tables

pytestmark = pytest.mark.slow

TRIALS = 8
SYMBOLS = ("AAPL", "MSFT")


def tuner_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", *args]


def completed_in_progress(root: Path) -> int:
    try:
        return json.loads((root / "progress.json").read_text())["trials_done"]
    except (OSError, ValueError, KeyError):
        return 0


def test_when_driver_is_sigkilled_mid_run_then_resume_completes_without_redoing_trials(tmp_path, slow_configs):
    from tuner.engine.journal import FLUSH_INTERVAL_S

    storage = tmp_path / "results"
    root = storage / "killed"
    env = engine_env(TUNER_CONFIGS=str(slow_configs))
    run = tuner_cli("run", "--name", "killed", "--storage", str(storage), "--families", "bootstrap_returns",
                    "--symbols", ",".join(SYMBOLS), "--trials", str(TRIALS), "--horizon", "3", "--no-dashboard",
                    "--val-windows", "20", "--test-windows", "20", "--no-pooled")
    driver = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.time() + 300
    while completed_in_progress(root) < 3 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
    assert driver.poll() is None, "the run ended before it could be interrupted"
    done_before = completed_in_progress(root)
    assert 3 <= done_before < TRIALS * len(SYMBOLS)
    # The timer writes what progress counts with nothing else arriving (waits on the state, not
    # on a speed: the bound itself is checked from timestamps below).
    while len(journal_scores(root)) < done_before and time.time() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # Ray's agents, started by the dead driver, linger in its process group: end them (by group,
    # so nothing else on the machine is touched). Ray workers exit on their own.
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert not (root / "summary.json").exists()
    finished = journal_scores(root)
    assert len(finished) >= done_before, (len(finished), done_before)
    # The bound, from timestamps: each record reached storage within the flush interval of its
    # trial's finish (its chunk's write time is the chunk file's modification time).
    late = {(chunk.name, r["trial_id"]): chunk.stat().st_mtime - r["finished_at"]
            for chunk in (root / "journal").glob("*.jsonl")
            for r in map(json.loads, chunk.read_text().splitlines())}
    assert late and max(late.values()) <= FLUSH_INTERVAL_S, sorted(late.items(), key=lambda kv: -kv[1])[:5]

    out = subprocess.run(tuner_cli("resume", "killed", "--storage", str(storage), "--no-dashboard"),
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr  # a successful run's log has none (Ray's shutdown included)
    # the dead driver's lock was taken over (same host, its pid is gone)
    assert "took the experiment over from pid" in out.stdout
    summary = json.loads((root / "summary.json").read_text())
    assert summary["complete"] is True and summary["resumed"] is True and summary["session"] == 2
    assert summary["trials"] == {"completed": TRIALS * len(SYMBOLS), "failed": 0, "never_ran": 0}
    table = pd.read_parquet(root / "trials.parquet")
    assert len(table) == TRIALS * len(SYMBOLS) and table["trial_id"].is_unique
    # Trials finished before the kill were kept, not redone: same score, from session 1.
    kept = table.set_index("trial_id").loc[list(finished)]
    assert kept["pct_return_mae"].to_dict() == finished
    assert (kept["session"] == 1).all() and (table["session"] == 2).any()
    for symbol in SYMBOLS:
        assert (root / "bootstrap_returns" / f"{symbol}.json").exists()
    # Each study kept its history: numbers 0..TRIALS-1 once each, across both sessions.
    for _, rows in table.groupby("study"):
        assert sorted(rows["number"]) == list(range(TRIALS))
    # The journal was compacted into one file; nothing is pickled in our state.
    assert [p.name for p in (root / "journal").iterdir()] == ["0002-compact.jsonl"]
    assert not list(root.glob("*.pkl")) and not (root / ".lock").exists()


def journal_scores(root: Path) -> dict[str, float]:
    """Trial id → score of the completed trials the journal holds: what a resume must keep."""
    scores = {}
    for chunk in sorted((root / "journal").glob("*.jsonl")):
        for line in chunk.read_text().splitlines():
            record = json.loads(line)
            if record["status"] == "completed":
                scores[record["trial_id"]] = record["value"]
    return scores


def kill_actor_when_busy(ray, root: Path, prefix: str, restart: bool) -> tuple[threading.Thread, list[str]]:
    """Kill the actors named ``prefix...`` once 2 trials are done (``restart``: a crash Ray
    restarts; else dead for good). Returns the running killer thread and the names it killed."""
    killed: list[str] = []

    def kill() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if completed_in_progress(root) >= 2:
                for actor in ray.util.list_named_actors(all_namespaces=True):
                    if actor["name"].startswith(prefix):
                        handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                        ray.kill(handle, no_restart=not restart)
                        killed.append(actor["name"])
            time.sleep(0.1)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    return killer, killed


@pytest.fixture
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="forecast-tuner")
    yield ray
    ray.shutdown()


def test_when_a_model_actor_is_killed_mid_trial_then_it_restarts_and_every_trial_completes(
        local_ray, tmp_path, slow_configs, monkeypatch):
    from tuner.core.windows import WindowSpec
    from tuner.engine.experiment import run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    monkeypatch.setenv("TUNER_CONFIGS", str(slow_configs))
    ray = local_ray
    config = ExperimentConfig(name="crash", pooled=False, symbols=SYMBOLS, families=("bootstrap_returns",),
                              trials=TRIALS, storage=str(tmp_path), windows=WindowSpec(horizon=3))
    killer, killed = kill_actor_when_busy(ray, tmp_path / "crash", "crash-bootstrap_returns-", restart=True)
    summary = run_experiment(config, echo=lambda line: None)
    killer.join(timeout=5)
    assert killed, "the actor was never killed"
    assert summary["trials"] == {"completed": TRIALS * len(SYMBOLS), "failed": 0, "never_ran": 0}
    assert summary["actor_restarts"] == 1 and summary["restarts_by_actor"] == {killed[0]: 1}
    assert os.path.exists(tmp_path / "crash" / "bootstrap_returns" / "AAPL.json")


def test_when_an_actor_dies_for_good_then_every_other_study_is_still_collated(
        local_ray, tmp_path, slow_configs, tiny_weights, monkeypatch):
    from tuner.core.models.weights import WeightsSource
    from tuner.engine.experiment import run_experiment
    from tuner.engine.experiment_config import ExperimentConfig

    monkeypatch.setenv("TUNER_CONFIGS", str(slow_configs))
    ray = local_ray
    from tuner.core.windows import WindowSpec

    config = ExperimentConfig(name="dead", windows=WindowSpec(), pooled=False, symbols=SYMBOLS,
                              families=("toto", "bootstrap_returns"), trials=4,
                              storage=str(tmp_path), weights=WeightsSource.parse(str(tiny_weights)))
    killer, killed = kill_actor_when_busy(ray, tmp_path / "dead", "dead-bootstrap_returns-", restart=False)
    lines: list[str] = []
    summary = run_experiment(config, echo=lines.append)
    killer.join(timeout=5)
    assert killed, "the actor was never killed"
    root = tmp_path / "dead"
    table = pd.read_parquet(root / "trials.parquet")
    assert len(table) == 4 * len(SYMBOLS) * 2  # every Optuna trial has its row
    toto = table[table["family"] == "toto"]
    assert (toto["status"] == "completed").all()
    for symbol in SYMBOLS:  # the other family's studies: winners written and scored on test
        doc = json.loads((root / "toto" / f"{symbol}.json").read_text())
        assert doc["test"]["windows"] == 20
    dead = table[(table["family"] == "bootstrap_returns") & (table["status"] == "failed")]
    # Its calls fail (ActorDiedError), or a trial process started after the kill finds no such actor.
    assert len(dead) >= 1 and dead["error"].str.contains("ActorDiedError|model actor .* could not be found").all()
    reasons = tables(root).without_winner()
    for symbol in SYMBOLS:
        key = f"{symbol}/bootstrap_returns"
        assert (key in reasons) != (root / "bootstrap_returns" / f"{symbol}.json").exists()
        if key in reasons:
            assert reasons[key].startswith(("winner not re-scored on the test period: every bootstrap_returns "
                                            "model actor has died", "no completed trial"))
    assert summary["complete"] is False
    assert any(a.get("dead") for a in summary["actors"])
    if reasons:  # the last line says why, per family (the CLI then exits 3)
        assert lines[-1].startswith("NO WINNER bootstrap_returns: "), lines[-3:]


def test_when_the_storage_fills_mid_run_then_it_stops_saving_what_finished_and_a_resume_completes(
        local_ray, tmp_path, slow_configs, monkeypatch):
    from tuner.core import storage as storage_module
    from tuner.core.windows import WindowSpec
    from tuner.engine.experiment import resume_experiment, run_experiment
    from tuner.engine.experiment_config import ExperimentConfig
    from tuner.engine.journal import StorageFault

    monkeypatch.setenv("TUNER_CONFIGS", str(slow_configs))
    monkeypatch.setenv("TUNER_RESCUE_DIR", str(tmp_path / "rescue"))
    original = storage_module.Storage.write_bytes
    chunks: list[str] = []
    full = threading.Event()

    def filling(self, relative: str, data: bytes) -> str:
        if relative.startswith("journal/"):
            if full.is_set():
                raise OSError(28, "No space left on device")
            chunks.append(relative)
            if len(chunks) == 2:
                full.set()  # the disk fills after the second chunk
        return original(self, relative, data)

    monkeypatch.setattr(storage_module.Storage, "write_bytes", filling)
    config = ExperimentConfig(name="full", pooled=False, symbols=SYMBOLS, families=("bootstrap_returns",), trials=TRIALS,
                              storage=str(tmp_path), windows=WindowSpec(horizon=3))
    with pytest.raises(StorageFault) as e:
        run_experiment(config, echo=lambda line: None)
    root = tmp_path / "full"
    assert "No space left on device" in str(e.value)
    assert not (root / "summary.json").exists()
    (rescue,) = (tmp_path / "rescue" / "full").iterdir()
    saved = journal_scores(root)
    rescued = {json.loads(line)["trial_id"] for line in rescue.read_text().splitlines()}
    assert saved and rescued and not set(saved) & rescued
    assert not list(root.rglob(".*.tmp"))

    # The operator frees space and follows the message: copy the rescue file, resume.
    monkeypatch.setattr(storage_module.Storage, "write_bytes", original)
    (root / "journal" / rescue.name).write_bytes(rescue.read_bytes())
    summary = resume_experiment("full", str(tmp_path), echo=lambda line: None)
    assert summary["complete"] is True
    table = pd.read_parquet(root / "trials.parquet").set_index("trial_id")
    assert set(saved) | rescued <= set(table.index)
    assert table.loc[list(saved), "pct_return_mae"].to_dict() == saved


def test_when_the_driver_is_sigkilled_while_collating_then_what_was_written_is_kept_and_resume_finishes(tmp_path):
    """Collation runs as Ray tasks that write winner files as they finish (tuner/engine/collate_tasks.py):
    a kill once some are written (and before summary.json) keeps them whole, and a resume writes the
    rest and the summary; the files written before the kill come back the same (same seed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_control_plane import synthetic_bars

    studies = 60
    data, storage = tmp_path / "bars", tmp_path / "results"
    synthetic_bars(data, studies)
    root, winners = storage / "collating", storage / "collating" / "bootstrap_returns"
    env = engine_env()
    driver = subprocess.Popen(tuner_cli("run", "--name", "collating", "--storage", str(storage), "--data", str(data),
                                        "--families", "bootstrap_returns", "--trials", "2", "--no-dashboard",
                                        "--val-windows", "20", "--test-windows", "20", "--no-pooled"),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    while driver.poll() is None and time.time() < deadline and not list(winners.glob("*.json")):
        time.sleep(0.02)
    assert driver.poll() is None, "the run ended before collation could be interrupted"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started (its own group)
    driver.wait()
    assert not (root / "summary.json").exists(), "the kill came after collation had finished"
    before = {p.name: json.loads(p.read_text()) for p in winners.glob("*.json")}  # whole: each parses
    assert before
    # A task killed between writing and renaming leaves a temporary file: the resume removes it.
    (winners / ".S0001.json.4242.0123abcd.tmp").write_text('{"half": ')

    out = subprocess.run(tuner_cli("resume", "collating", "--storage", str(storage), "--no-dashboard"),
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["complete"] and summary["session"] == 2
    assert summary["trials"] == {"completed": 2 * studies, "failed": 0, "never_ran": 0}
    after = {p.name: json.loads(p.read_text()) for p in winners.glob("*.json")}
    assert len(after) == studies and all("decision" in doc for doc in after.values())
    assert not list(root.rglob(".*.tmp")) and "removed 1 temporary file" in out.stdout

    def same(doc):
        """All but the moment and the test period's timings (re-scoring runs again), and the
        decision (added last)."""
        if isinstance(doc, dict):
            return {k: same(v) for k, v in doc.items()
                    if k not in ("created_at", "decision") and not k.startswith("latency")}
        return doc

    assert {name: same(doc) for name, doc in before.items()} == {name: same(after[name]) for name in before}
    # Tuning was not redone: the resume found every trial in the journal.
    table = pd.read_parquet(root / "trials.parquet")
    assert set(table["session"]) == {1}


def test_when_a_packs_actor_cannot_be_found_then_its_slots_fail_and_the_others_are_reported(
        local_ray, monkeypatch):
    """A Tune trial process that starts after an actor died for good cannot look it up (Ray
    drops a dead named actor): seen in CI as a whole pack failing with no reason. Its slots
    must fail with that reason, and the live actor's slots still run and are reported."""
    from ray import tune

    from tuner.engine import actors

    ray = local_ray

    @ray.remote(num_cpus=0)
    class Answering:
        def evaluate_many(self, pairs, seed, pooled):
            return [{"error": f"answered {symbol}"} for symbol, _ in pairs]

    live = Answering.options(name="faults-live", namespace="forecast-tuner").remote()
    ray.get(live.evaluate_many.remote([], 0, None))
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", reports.append)
    monkeypatch.setattr(actors, "_handles", {})
    routing = actors.Routing(namespace="forecast-tuner", seed=7,
                             actors={"bootstrap_returns": ("faults-live",), "toto": ("faults-gone",)})
    pack = [{"slot": f"{symbol}/{family}#0", "study": f"{symbol}/{family}", "symbol": symbol,
             "family": family, "params": {}}
            for symbol in SYMBOLS for family in ("bootstrap_returns", "toto")]
    actors.pack_trial({"pack": pack}, routing)
    slots = {s["slot"]: s for report in reports for s in report["slots"]}
    assert set(slots) == {s["slot"] for s in pack} and reports[-1][actors.PACK_METRIC] == len(pack)
    for symbol in SYMBOLS:
        assert slots[f"{symbol}/bootstrap_returns#0"]["error"] == f"answered {symbol}"
        gone = slots[f"{symbol}/toto#0"]
        assert not gone["ok"] and gone["error"].startswith("model actor faults-gone could not be found")
