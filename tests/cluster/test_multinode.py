"""A real multi-node Ray cluster on one machine, driven the way cluster/README.md tells users to.

A head and a worker node are separate ``ray start --block`` processes, each with its own temp
dir, ports away from a default Ray's (6379, 8265, 10001, 52365), 2 CPUs and one emulated GPU
(``--num-gpus 1``), token authentication on with a token made here (RAY_AUTH_TOKEN_PATH, so
~/.ray/auth_token is never read or written; HOME is a temp dir too). Then:

* ``cluster/submit.sh`` submits a tuning job with ``ray job submit`` (code shipped as the job's
  working dir) and prints its id; ``ray job stop`` stops it mid-run; ``cluster/submit.sh --resume``
  submits ``tuner resume`` as a second job, which completes the experiment;
* the model actors' resources force one Toto and one Kronos actor onto each node, with fractional
  GPU requests (Toto 0.4 GPU + 1.2 CPU: two do not fit in a node's 2 CPUs; Kronos 0.6 GPU: two do
  not fit in a node's GPU; one of each fills a node's GPU exactly and leaves 0.3 CPU for trials;
  the engine also packs one actor of each family into a placement group per GPU), so trials must
  run on both nodes;
* results, placement and job states are read back from summary.json, trials.parquet, Ray's state
  API and the dashboard's job REST API (``Authorization: Bearer <token>``);
* every process started here is ended by pid / process group (never ``ray stop``, which would hit
  every Ray on the machine), and the last test checks that nothing is left.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.summary_shapes import tables

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="finds the processes it must end through /proc")]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the environment running the tests has `ray` and `tuner`
SYMBOLS = ("AAPL", "MSFT")
FAMILIES = ("toto", "kronos_standard")
TRIALS = 5  # per study: 2 symbols x 2 families x 5 = 20 trials
RESOURCES = {"toto": {"actors": 2, "num_gpus": 0.4, "num_cpus": 1.2},
             "kronos_standard": {"actors": 2, "num_gpus": 0.6, "num_cpus": 0.5}}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _proc_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]  # state, ..., starttime (field 22)


def _descendants(roots: list[int]) -> dict[int, str]:
    """pid -> start time of the roots and every process below them, now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: dict[int, str] = {}
    stack = list(roots)
    while stack:
        pid = stack.pop()
        start = _proc_start_time(pid)
        if pid in found or start is None:
            continue
        found[pid] = start
        stack += children.get(pid, [])
    return found


def _marked_processes(marker: str, root: Path) -> list[str]:
    """Live processes whose environment carries ``marker`` or whose command line names ``root``."""
    hits = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or _proc_start_time(int(entry)) is None:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if marker.encode() in environ or str(root) in cmdline:
            hits.append(f"{entry}: {cmdline[:150]}")
    return hits


def _wait_for(probe, timeout: float, what: str, detail=lambda: ""):
    """Poll ``probe`` until it returns something truthy (every second, up to ``timeout`` s: a
    generous deadline for a loaded machine); fail naming ``what`` (and ``detail()``) otherwise."""
    deadline = time.time() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.time() > deadline:
            raise AssertionError(f"{what}: not there after {timeout:.0f}s\n{detail()}")
        time.sleep(1)


def _actors(cluster, failures: list[str] | None = None) -> list[dict]:
    """Every actor Ray's state API lists (alive and dead), [] when the API does not answer (why
    is appended to ``failures`` when given)."""
    try:
        status, body = cluster.api("/api/v0/actors?detail=true&limit=10000")
    except OSError as e:
        if failures is not None:
            failures.append(f"{type(e).__name__}: {e}")
        return []
    if status != 200:
        if failures is not None:
            failures.append(f"HTTP {status}: {str(body)[:200]}")
        return []
    return body["data"]["result"]["result"]


def _short_class(actor: dict) -> str:
    """An actor's class name without its enclosing scopes: Ray lists Tune's function trainable as
    ``ImplicitFunc`` in some runs and ``wrap_function.<locals>.ImplicitFunc`` in others."""
    return actor["class_name"].rsplit(".", 1)[-1]


def _listed(actors: list[dict]) -> str:
    """Each class, job and state the state API listed, with how many actors: for a failure."""
    counts = collections.Counter((a["class_name"], a["job_id"], a["state"]) for a in actors)
    return "\n".join(f"  {c} job={j} {st}: {n}" for (c, j, st), n in sorted(counts.items())) or "  nothing"


def _request(resources: dict[str, float], name: str) -> float:
    """How much of ``name`` (GPU, CPU) an actor asked for, as Ray's state API reports it: plain, or
    as placement-group bundle resources (``GPU_group_<i>_<pg>``, ``GPU_group_<pg>``) when the actor
    runs in a placement group."""
    if name in resources:
        return resources[name]
    amounts = {v for k, v in resources.items() if re.fullmatch(rf"{name}_group_(\d+_)?[0-9a-f]+", k)}
    assert len(amounts) == 1, resources
    return amounts.pop()


class LocalCluster:
    """Head + worker ``ray start --block`` processes on this machine, token auth on."""

    def __init__(self) -> None:
        # Short root: Ray's unix sockets live under the temp dirs (path limit ~107 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="ftmn-", dir="/tmp"))
        self.token = secrets.token_hex(32)
        token_file = self.root / "auth_token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        (self.root / "home").mkdir()
        self.marker = f"ftmn-{uuid.uuid4().hex}"
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "TUNER_CONFIGS")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
                   PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(self.root / "home"),
                   RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", FT_MULTINODE_TEST=self.marker)
        self.env = env
        self.gcs_port, self.dashboard_port, client_port, head_agent, worker_agent = _free_ports(5)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.procs: list[subprocess.Popen] = []
        self._stopped = False
        node = ["--min-worker-port", "0", "--max-worker-port", "0", "--num-cpus", "2",
                "--num-gpus", "1", "--disable-usage-stats", "--block"]
        self._start("head", ["--head", "--port", str(self.gcs_port),
                             "--dashboard-port", str(self.dashboard_port),
                             "--ray-client-server-port", str(client_port),
                             "--dashboard-agent-listen-port", str(head_agent), *node])
        self.wait_for_nodes(1, timeout=240)
        self._start("worker", ["--address", f"127.0.0.1:{self.gcs_port}",
                               "--dashboard-agent-listen-port", str(worker_agent), *node])
        self.wait_for_nodes(2, timeout=240)

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # the child keeps its own copy of the fd
        cmd = [_tool("ray"), "start", "--temp-dir", str(self.root / name), *args]
        self.procs.append(subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def log_tail(self, n: int = 3000) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-n:]}"
                         for p in sorted(self.root.glob("*.log")))

    # --- talking to the cluster

    def api(self, path: str, token: str | None = "default") -> tuple[int, object]:
        """GET the dashboard's REST API; token None sends no Authorization header."""
        request = urllib.request.Request(self.address + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {self.token if token == 'default' else token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def alive_nodes(self) -> list[dict]:
        try:
            status, body = self.api("/api/v0/nodes?limit=100")
        except OSError:  # dashboard not listening yet
            return []
        if status != 200:
            return []
        return [n for n in body["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def wait_for_nodes(self, count: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise AssertionError("a `ray start` process exited:\n" + self.log_tail())
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(1)
        raise AssertionError(f"{count} node(s) not alive within {timeout}s:\n" + self.log_tail())

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(_tool("ray"), *args, timeout=timeout)

    def job(self, job_id: str) -> dict:
        status, body = self.api(f"/api/jobs/{job_id}")
        assert status == 200, body
        return body

    def wait_job(self, job_id: str, statuses: set[str], timeout: float) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job(job_id)
            if info["status"] in statuses:
                return info
            if info["status"] in TERMINAL:
                break
            time.sleep(1)
        logs = self.ray("job", "logs", "--address", self.address, job_id).stdout[-4000:]
        raise AssertionError(f"job {job_id} is {info['status']}, wanted {statuses}:\n{logs}")

    # --- teardown

    def stop(self, grace: float = 30) -> list[str]:
        """End every process this cluster started; return what is still alive (should be [])."""
        if self._stopped:
            return []
        self._stopped = True
        # Snapshot the whole tree first: Ray's workers run in their own process groups.
        tree = _descendants([p.pid for p in self.procs])
        for proc in reversed(self.procs):  # worker node first
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        for proc in self.procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything left in its process group
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=10)
        deadline = time.time() + grace
        alive = set(tree)
        while alive and time.time() < deadline:
            time.sleep(0.5)
            alive = {pid for pid, start in tree.items() if _proc_start_time(pid) == start}
        for pid in alive:  # by pid, and only if it is still the process we saw
            if _proc_start_time(pid) == tree[pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for hit in _marked_processes(self.marker, self.root):  # started after the snapshot
            try:
                os.kill(int(hit.split(":")[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)
        leftovers = [f"{pid} (of the tree)" for pid, start in tree.items()
                     if _proc_start_time(pid) == start]
        leftovers += _marked_processes(self.marker, self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        return leftovers


@pytest.fixture(scope="module")
def cluster():
    user_token = Path.home() / ".ray" / "auth_token"
    before = hashlib.sha256(user_token.read_bytes()).hexdigest() if user_token.exists() else None
    started = time.time()
    c = LocalCluster()
    c.started_in_s = time.time() - started
    yield c
    c.stop()
    after = hashlib.sha256(user_token.read_bytes()).hexdigest() if user_token.exists() else None
    assert after == before, "the user's ~/.ray/auth_token was changed"


def test_token_auth_guards_the_dashboard_of_a_two_node_cluster_with_emulated_gpus(cluster):
    nodes = cluster.alive_nodes()
    assert len(nodes) == 2 and sum(n["is_head_node"] for n in nodes) == 1
    assert all(n["resources_total"].get("GPU") == 1.0 and n["resources_total"].get("CPU") == 2.0
               for n in nodes)
    # No token: 401; a wrong token: 403; the cluster's token as a Bearer header: the job list.
    assert cluster.api("/api/jobs/", token=None)[0] == 401
    assert cluster.api("/api/jobs/", token=secrets.token_hex(32))[0] == 403
    status, jobs = cluster.api("/api/jobs/")
    assert status == 200 and isinstance(jobs, list)
    # The CLI users follow the runbook with authenticates the same way (RAY_AUTH_TOKEN_PATH).
    out = cluster.ray("job", "list", "--address", cluster.address)
    assert out.returncode == 0, out.stderr[-2000:]


def test_submitted_job_is_stopped_then_resumed_and_tunes_on_both_nodes_with_fractional_gpus(
        cluster, tmp_path):
    started = time.time()
    tiny = tmp_path / "tiny-weights"
    made = cluster.run(_tool("tuner"), "models", "make-tiny", str(tiny))
    assert made.returncode == 0, made.stderr[-2000:]
    storage = tmp_path / "results"  # one machine: every node sees this path
    experiment = tmp_path / "mn.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "mn", "symbols": list(SYMBOLS), "families": list(FAMILIES), "trials": TRIALS,
        "resources": RESOURCES, "max_concurrent_per_study": 2,
    }, sort_keys=False))
    submit = [str(REPO / "cluster" / "submit.sh")]

    # 1. Submit with cluster/submit.sh: it prints the job id, the only line on stdout.
    out = cluster.run("bash", *submit, str(experiment), "--address", cluster.address,
                      "--storage", str(storage), "--", "--weights", str(tiny))
    assert out.returncode == 0, out.stderr[-3000:]
    first = out.stdout.strip()
    assert re.fullmatch(r"ft-mn-\d{8}-\d{6}", first), out.stdout
    root = storage / "mn"

    # 2. Stop it mid-run with `ray job stop`.
    deadline = time.time() + 480
    done = 0
    while time.time() < deadline:
        try:
            done = json.loads((root / "progress.json").read_text())["trials_done"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 2 or cluster.job(first)["status"] in TERMINAL:
            break
        time.sleep(0.2)
    assert cluster.job(first)["status"] == "RUNNING" and done >= 2, cluster.job(first)
    stop = cluster.ray("job", "stop", "--address", cluster.address, first)
    assert stop.returncode == 0, stop.stderr[-2000:]
    cluster.wait_job(first, {"STOPPED"}, timeout=180)
    # Stopped before it finished: no summary. Its trials need not be unfinished: `ray job stop`
    # lands when it lands, and on a fast machine the 20 trials can all be done by then (seen in
    # CI); the resume then only re-scores and collates (step 5 allows for it).
    assert not (root / "summary.json").exists()
    total = len(SYMBOLS) * len(FAMILIES) * TRIALS
    assert 2 <= json.loads((root / "progress.json").read_text())["trials_done"] <= total

    # 3. Resume it as a job (`tuner resume` on the cluster) and wait for it to succeed.
    out = cluster.run("bash", *submit, "--resume", "mn", "--storage", str(storage),
                      "--address", cluster.address)
    assert out.returncode == 0, out.stderr[-3000:]
    second = out.stdout.strip()
    assert re.fullmatch(r"ft-mn-resume-\d{8}-\d{6}", second), out.stdout
    job = cluster.wait_job(second, {"SUCCEEDED"}, timeout=900)
    logs = cluster.ray("job", "logs", "--address", cluster.address, second)
    assert logs.returncode == 0 and "[resumed]" in logs.stdout and "done in" in logs.stdout, logs.stdout[-3000:]

    # 4. Collated results: every study has a winner file, the summary is complete.
    summary = json.loads((root / "summary.json").read_text())
    assert summary["complete"] is True and summary["resumed"] is True
    assert summary["trials"] == {"completed": total, "failed": 0, "never_ran": 0}
    assert summary["tiny_weights"] is True
    assert set(tables(root).symbol_names()) == set(SYMBOLS)
    for family in FAMILIES:
        for symbol in SYMBOLS:
            winner = json.loads((root / family / f"{symbol}.json").read_text())
            assert winner["symbol"] == symbol and winner["test"]["pct_return_mae"] >= 0

    # 5. Placement: one actor of each family on each node, each holding a GPU share.
    nodes = {n["node_id"] for n in cluster.alive_nodes()}
    assert len(nodes) == 2
    actors = summary["actors"]
    assert len(actors) == 4 and summary["model_loads"] == 4
    for family in FAMILIES:
        assert {a["node_id"] for a in actors if a["family"] == family} == nodes, family
    assert all(a["gpu_ids"] and a["device"] == "cpu" for a in actors)  # emulated GPU, CPU torch
    # ... as Ray recorded them: fractional GPU requests, on both nodes, for this job.
    status, body = cluster.api("/api/v0/actors?detail=true&limit=10000")
    assert status == 200
    servers = [a for a in body["data"]["result"]["result"]
               if a["class_name"] == "ModelServer" and a["job_id"] == job["job_id"]]
    assert len(servers) == 4
    for a in servers:
        family = "toto" if "-toto-" in a["name"] else "kronos_standard"
        gpu, cpu = _request(a["required_resources"], "GPU"), _request(a["required_resources"], "CPU")
        assert (gpu, cpu) == (RESOURCES[family]["num_gpus"], RESOURCES[family]["num_cpus"]), a
        assert 0 < gpu < 1
    assert {a["node_id"] for a in servers} == nodes
    # Tune's trial actors reserve no GPU: the model actors hold the whole GPU of both nodes.
    # Which job ran trials depends on load: a slow `ray job stop` can land after the first job
    # has run every trial (then the resume only collates), so look at the jobs whose sessions
    # ran trials (the state API keeps listing a finished job's actors, as DEAD).
    table = pd.read_parquet(root / "trials.parquet")
    sessions = {1: cluster.job(first)["job_id"], 2: job["job_id"]}
    ran = {sessions[s] for s in set(table["session"]) if s in sessions}
    assert ran, sorted(set(table["session"]))
    listed: list[dict] = []
    failures: list[str] = []

    def trial_actors() -> list[dict]:
        listed[:] = _actors(cluster, failures)
        return [a for a in listed if _short_class(a) == "ImplicitFunc" and a["job_id"] in ran]

    found = _wait_for(trial_actors, timeout=180, what=f"Tune's trial actors of jobs {sorted(ran)}",
                      detail=lambda: f"unanswered: {failures[-3:]}; last listed:\n{_listed(listed)}")
    assert not any("GPU" in k for a in found for k in a["required_resources"]), found

    # 6. Trials: every one completed, and their model work ran on both nodes.
    table = pd.read_parquet(root / "trials.parquet")
    assert len(table) == total and table["trial_id"].is_unique
    assert set(table["status"]) == {"completed"}
    assert set(table["node_id"]) == nodes

    # 7. The dashboard's job REST API, with the token, lists both jobs and how they ended.
    status, jobs = cluster.api("/api/jobs/")
    assert status == 200
    by_id = {j["submission_id"]: j for j in jobs}
    assert by_id[first]["status"] == "STOPPED" and by_id[second]["status"] == "SUCCEEDED"
    assert by_id[second]["entrypoint"].startswith("tuner resume mn")
    print(f"cluster started in {cluster.started_in_s:.0f}s; submit, stop, resume and checks "
          f"took {time.time() - started:.0f}s")


def test_stopping_the_cluster_ends_every_process_it_started(cluster):
    root, marker = cluster.root, cluster.marker
    leftovers = cluster.stop()
    assert leftovers == []
    assert not root.exists()
    assert _marked_processes(marker, root) == []
