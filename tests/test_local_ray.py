"""A local Ray started the way ``tuner run`` starts it listens on loopback only, its auth token
file is private to its user, and it stops as the run stops it. Run in a subprocess: Ray reads
RAY_AUTH_MODE when imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent("""
    import json, os, time
    os.environ["RAY_AUTH_MODE"] = "token"  # what `tuner` sets before Ray is imported
    import ray
    import psutil  # Ray's vendored copy, importable once ray is imported
    from tuner.engine.experiment import _connect
    from tuner.engine.experiment_config import ExperimentConfig

    started, _ = _connect(ExperimentConfig(), include_dashboard=True)
    try:
        listening, deadline = set(), time.time() + 60
        while time.time() < deadline:  # the dashboard agent comes up after ray.init returns
            listening = set()
            for p in psutil.Process().children(recursive=True):
                try:
                    listening |= {(c.laddr.ip, p.name()) for c in p.net_connections(kind="inet")
                                  if c.status == psutil.CONN_LISTEN}
                except psutil.Error:
                    pass
            if any("DashboardAgent" in name for _, name in listening):
                break
            time.sleep(1)
        seen = {"started": started, "listening": sorted(listening),
                "nodes": [n["NodeManagerAddress"] for n in ray.nodes()]}
    finally:
        # How the run stops its Ray: the autoscaler monitor killed before Ray's shutdown begins.
        from tuner.engine.local_ray import stop_local_ray
        processes = {kind: [i.process for i in infos]
                     for kind, infos in ray._private.worker._global_node.all_processes.items()}
        real_shutdown = ray.shutdown
        def shutdown():
            seen["running_at_shutdown"] = sorted(k for k, ps in processes.items() if any(p.poll() is None for p in ps))
            real_shutdown()
        ray.shutdown = shutdown
        stop_local_ray()
    seen["running_after"] = sorted(k for k, ps in processes.items() if any(p.poll() is None for p in ps))
    print(json.dumps(seen))
""")


@pytest.mark.slow
def test_when_tuner_starts_a_local_ray_then_it_listens_on_loopback_only_the_token_is_private_and_it_stops_whole(
        tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["HOME"] = str(tmp_path)  # Ray writes ~/.ray/auth_token: a fresh home, so it is made now
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["started"] and seen["nodes"] == ["127.0.0.1"]
    names = {name for _, name in seen["listening"]}
    assert "gcs_server" in names and "raylet" in names  # the probe did see Ray's servers
    exposed = [(ip, name) for ip, name in seen["listening"] if ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert exposed == []
    token = tmp_path / ".ray" / "auth_token"
    assert len(token.read_text()) == 64
    assert oct(token.stat().st_mode & 0o777) == oct(0o600)
    assert oct((tmp_path / ".ray").stat().st_mode & 0o777) == oct(0o700)
    # Stopped as a run stops it: the monitor first (not left to wait on the stopped GCS), then all.
    assert "monitor" not in seen["running_at_shutdown"] and "gcs_server" in seen["running_at_shutdown"]
    assert seen["running_after"] == []


def test_when_an_earlier_token_file_is_world_readable_then_connect_tightens_it(tmp_path, monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("a" * 64)
    token.chmod(0o644)
    from tuner.engine.experiment import _connect
    from tuner.engine.experiment_config import ExperimentConfig

    _connect(ExperimentConfig(), include_dashboard=False)
    assert oct(token.stat().st_mode & 0o777) == oct(0o600)
    assert token.read_text() == "a" * 64  # kept: a running cluster may use it
    assert calls[0]["_node_ip_address"] == "127.0.0.1" and calls[0]["dashboard_host"] == "127.0.0.1"


RAY_TIMEOUT = ("The current node timed out during startup. This could happen because some of the raylet "
               "failed to startup or the GCS has become overloaded.")


@pytest.fixture
def failing_ray_init(monkeypatch):
    """ray.init raises what Ray raises when its node does not register in time; records calls."""
    import ray

    calls = {"init": 0, "shutdown": 0}

    def init(**kwargs):
        calls["init"] += 1
        raise Exception(RAY_TIMEOUT)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "45")  # restored after the test
    return calls


def test_when_the_local_ray_does_not_start_then_run_prints_one_line_saying_what_to_do(failing_ray_init, tmp_path):
    from click.testing import CliRunner

    from tuner.cli import main

    result = CliRunner().invoke(main, ["run", "--families", "bootstrap_returns", "--symbols", "AAPL",
                                       "--trials", "1", "--name", "x", "--storage", str(tmp_path),
                                       "--no-dashboard", "--ray-start-timeout", "120"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and result.output.endswith(error[0] + "\n")
    assert error[0].startswith("Error: the local Ray did not start (its node may take 120 s + 30 s to register): "
                               f"Exception: {RAY_TIMEOUT}; load average ")
    assert error[0].endswith("On a busy machine give it longer: --ray-start-timeout 600 "
                             "(or RAY_raylet_start_wait_time_s); Ray's logs: /tmp/ray/session_latest/logs.")
    assert os.environ["RAY_raylet_start_wait_time_s"] == "120"
    assert failing_ray_init == {"init": 1, "shutdown": 1}  # what a failed start left is stopped
    assert not (tmp_path / "x" / ".lock").exists()


def test_when_joining_a_cluster_fails_then_the_error_names_the_address(failing_ray_init):
    from tuner.core.errors import TunerError
    from tuner.engine.experiment import _connect
    from tuner.engine.experiment_config import ExperimentConfig

    with pytest.raises(TunerError, match=r"^could not join the Ray cluster at ray://head:10001: Exception: "
                                         r"The current node timed out during startup\..*Check that it is running"):
        _connect(ExperimentConfig(address="ray://head:10001"), include_dashboard=False)


@pytest.mark.parametrize(("given", "env", "expected"), [(None, None, 300.0), (None, "180", 180.0), (90.5, "180", 90.0)])
def test_when_the_start_wait_is_set_then_an_option_beats_the_environment_beats_the_default(monkeypatch, given, env,
                                                                                           expected):
    from tuner.engine.local_ray import START_WAIT_ENV, set_start_wait

    monkeypatch.setenv(START_WAIT_ENV, "0")  # registers the variable for restoring
    monkeypatch.delenv(START_WAIT_ENV)
    if env is not None:
        monkeypatch.setenv(START_WAIT_ENV, env)
    assert set_start_wait(given) == expected
    assert os.environ[START_WAIT_ENV] == f"{expected:.0f}"
