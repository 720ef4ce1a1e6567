"""The universe run at a small size: many studies end to end through the CLI, SIGKILLed
mid-run, resumed, every winner written; packs, several Tune runs, and a results folder that
holds the product (Tune's files under _tune/, no per-trial logger files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.engine.conftest import engine_env

pytestmark = pytest.mark.slow

STUDIES, TRIALS = 120, 2


def test_when_many_studies_are_killed_and_resumed_then_every_winner_is_written(tmp_path, slow_configs):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_control_plane import synthetic_bars

    data, storage = tmp_path / "bars", tmp_path / "results"
    synthetic_bars(data, STUDIES)
    root = storage / "universe"
    env = engine_env(TUNER_CONFIGS=str(slow_configs), TUNER_PACKS_PER_TUNE_RUN="2")
    cli = [sys.executable, "-m", "tuner.cli"]
    driver = subprocess.Popen([*cli, "run", "--name", "universe", "--storage", str(storage), "--data", str(data),
                               "--families", "bootstrap_returns", "--trials", str(TRIALS), "--no-dashboard",
                               "--val-windows", "20", "--test-windows", "20", "--no-pooled"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    total, done, deadline = STUDIES * TRIALS, 0, time.time() + 600
    while driver.poll() is None and done < 0.4 * total and time.time() < deadline:
        time.sleep(0.2)
        try:
            done = json.loads((root / "progress.json").read_text())["trials_done"]
        except (OSError, ValueError, KeyError):
            pass
    assert driver.poll() is None, driver.stdout.read().decode()[-3000:]
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started (its own group)
    driver.wait()
    assert all(p.name.startswith("s001-r") for p in (root / "_tune").iterdir())

    out = subprocess.run([*cli, "resume", "universe", "--storage", str(storage), "--no-dashboard"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["complete"] and summary["trials"] == {"completed": total, "failed": 0, "never_ran": 0}
    assert summary["tuning"]["pack_size"] > 1 and summary["session"] == 2
    assert len(list((root / "bootstrap_returns").glob("*.json"))) == STUDIES
    table = pd.read_parquet(root / "trials.parquet")
    assert len(table) == total and table["trial_id"].is_unique and set(table["session"]) == {1, 2}
    # The resumed session's packs went into Tune runs of 2 (TUNER_PACKS_PER_TUNE_RUN), together.
    packs = table[table["session"] == 2]["trial_id"].str.split(".").str[0].nunique()
    resumed_runs = [p.name for p in (root / "_tune").iterdir() if p.name.startswith("s002-r")]
    assert len(resumed_runs) == -(-packs // 2), (packs, resumed_runs)
    if packs >= 2:
        assert summary["tuning"]["peak_packs_running"] >= 2  # packs overlap, not one after another
    # The product at the top; Tune's files in _tune/; no per-trial logger output anywhere.
    top = {p.name for p in root.iterdir()}
    assert top == {"_tune", "journal", "bootstrap_returns", "progress.json", "summary.json", "symbols.parquet",
                   "studies.parquet", "trials.parquet", "tuner-experiment.json"}
    files = [p for p in root.rglob("*") if p.is_file()]
    overhead = [p for p in files if p.parent.name != "bootstrap_returns"]  # all but winner files
    assert len(overhead) / total < 0.2, sorted(str(p.relative_to(root)) for p in overhead)
    assert not [p for p in files if p.name in ("progress.csv", "result.json", "params.pkl")
                or p.name.startswith("events.out.tfevents")]
