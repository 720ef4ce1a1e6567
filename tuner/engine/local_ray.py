"""A local Ray of our own, for one machine: reachable from this machine only, its token private.

``tuner run`` without an address always starts a fresh Ray (``address="local"``), never joins a
``ray start`` cluster found on the machine; a job submitted to a cluster joins it instead (see
``experiment._connect``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def start_local_ray(namespace: str, include_dashboard: bool | None):
    """``ray.init`` a local Ray bound to 127.0.0.1, after making its token file private."""
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
    try:
        return ray.init(address="local", namespace=namespace, include_dashboard=include_dashboard,
                        log_to_driver=True, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1")
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


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
