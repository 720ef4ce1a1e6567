"""A local Ray of our own, for one machine: reachable from this machine only, its token private.

``tuner run`` without an address always starts a fresh Ray (``address="local"``), never joins a
``ray start`` cluster found on the machine; a job submitted to a cluster joins it instead (see
``experiment._connect``).

Start-up on a loaded machine: Ray gives its node ``RAY_raylet_start_wait_time_s`` (Ray's default
60) plus a fixed 30 s to register, then raises a bare ``Exception`` from ``node.py`` ("timed out
during startup"). We default the wait to :data:`DEFAULT_START_WAIT_S` (``--ray-start-timeout``
or the environment variable change it) and turn any start failure into one
:class:`RayStartError` line saying what to do.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from tuner.core.errors import TunerError

log = logging.getLogger(__name__)

START_WAIT_ENV = "RAY_raylet_start_wait_time_s"
"""Ray's own setting: seconds the driver waits for its new node to register with the GCS."""
DEFAULT_START_WAIT_S = 300
"""Our default for it: Ray's 60 s timed out on a 2-core machine running 8 jobs at once."""
RAY_SETTLE_S = 30
"""Ray's fixed extra wait after that one (``node.py``), not configurable."""


class RayStartError(TunerError):
    """A local Ray that did not start, or a cluster that could not be joined."""


def set_start_wait(seconds: float | None = None) -> float:
    """Set how long a local Ray's node may take to start: ``seconds`` when given, else what
    ``RAY_raylet_start_wait_time_s`` already says, else :data:`DEFAULT_START_WAIT_S`. The
    driver's Ray reads the variable once, when ``ray`` is first imported (measured: a change
    after the import is not seen), so this is called before that (the CLI, and the run before
    its ``import ray``). Returns the seconds in force."""
    if seconds is not None:
        os.environ[START_WAIT_ENV] = str(max(1, round(seconds)))
    os.environ.setdefault(START_WAIT_ENV, str(DEFAULT_START_WAIT_S))
    try:
        return float(os.environ[START_WAIT_ENV])
    except ValueError as e:
        raise RayStartError(f"{START_WAIT_ENV}={os.environ[START_WAIT_ENV]!r}: not a number of seconds") from e


def start_failure(what: str, error: BaseException, hint: str) -> RayStartError:
    """One clear line for a Ray that did not start or join: what, Ray's reason (its first line),
    the machine's load, and what to do."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    try:
        load = f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        load = ""
    return RayStartError(f"{what}: {type(error).__name__}: {reason}{load}. {hint}")


def start_local_ray(namespace: str, include_dashboard: bool | None):
    """``ray.init`` a local Ray bound to 127.0.0.1, after making its token file private.

    Raises:
        RayStartError: it did not start (e.g. its node did not register in time on a loaded
            machine), with what to do.
    """
    import ray
    from ray._private import ray_constants

    private_token_file()
    # The model actors, the pack board, the window store, the load ledger and a few reused
    # trial actors are light processes on fractional CPUs: more than Ray's default worker
    # start-up concurrency (the CPU count), which it reports as a warning on every Tune run.
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "16")
    # Ray binds its gRPC servers to loopback only when the node IP is 127.0.0.1, and on Linux
    # replaces a 127.0.0.1 node IP by the machine's address unless ENABLE_RAY_CLUSTER is off;
    # a local Ray serves this machine alone, so for its start it is (restored afterwards).
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    wait_s = set_start_wait()
    try:
        return ray.init(address="local", namespace=namespace, include_dashboard=include_dashboard,
                        log_to_driver=True, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1")
    except Exception as e:  # Ray raises bare Exception, RuntimeError, ConnectionError...: one line
        log.debug("ray.init failed", exc_info=True)
        _stop_half_started(ray)
        raise start_failure(
            f"the local Ray did not start (its node may take {wait_s:.0f} s + {RAY_SETTLE_S} s to register)", e,
            f"On a busy machine give it longer: --ray-start-timeout {max(600, 2 * round(wait_s))} "
            f"(or {START_WAIT_ENV}); Ray's logs: /tmp/ray/session_latest/logs.") from e
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


MONITOR_EXIT_WAIT_S = 5.0
"""How long :func:`stop_local_ray` waits for the killed autoscaler monitor to be reaped."""


def stop_local_ray() -> None:
    """``ray.shutdown()`` of the Ray this process started, without its one-second wait on the
    autoscaler monitor. Ray stops its processes one after another, the GCS before the monitor,
    and the monitor's SIGTERM handler then waits on the gone GCS to report its own termination
    until Ray's timeout (1 s) and a SIGKILL (measured: 1.0 of a 1.4–1.6 s shutdown, the
    machine idle). The monitor holds no state of ours, so it is killed first, as Ray would
    end it; everything else stops as Ray stops it. Any Ray internals that moved: plain
    ``ray.shutdown()``."""
    import subprocess

    import ray

    try:
        from ray._private import ray_constants

        node = ray._private.worker._global_node
        monitors = [info.process for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, [])]
    except (AttributeError, ImportError):
        monitors = []
    for process in monitors:
        if process.poll() is None:
            process.kill()
            try:
                process.wait(timeout=MONITOR_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                log.debug("the autoscaler monitor (pid %s) outlived SIGKILL by %s s", process.pid,
                          MONITOR_EXIT_WAIT_S)
    ray.shutdown()


def _stop_half_started(ray) -> None:
    """Stop what a failed ``ray.init`` may have started (best effort: the reason is reported)."""
    try:
        ray.shutdown()
    except Exception:  # already half-gone; its reaper ends the rest with this process
        log.debug("ray.shutdown after a failed start", exc_info=True)


def private_token_file() -> None:
    """Ray writes a missing token file with the umask's mode (0644: world-readable): write it
    first, private to its user, and tighten one an earlier run left readable. A token given by
    ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH`` is the user's own and left alone."""
    if os.environ.get("RAY_AUTH_MODE") != "token" or (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        return
    token = Path.home() / ".ray" / "auth_token"
    token.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if token.stat().st_mode & 0o077:
            token.chmod(0o600)
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # Ray's own format: 256 random bits in hex
