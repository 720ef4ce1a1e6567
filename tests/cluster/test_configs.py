"""The cluster launcher configs in cluster/: Ray's own validation, and the properties that can be
checked without a cloud account (token auth on, secrets only as git-ignored file mounts, dashboard
never opened, GPU workers from zero, CUDA torch and the project installed); the helper scripts'
secret staging and argument handling.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
CONFIGS = ["aws.yaml", "gcp.yaml", "onprem.yaml"]
CLOUDS = ["aws.yaml", "gcp.yaml"]
EXPERIMENTS = sorted((CLUSTER / "experiments").glob("*.yaml"))

TOKEN_FILE = "cluster/.secrets/ray_auth_token"
HF_FILE = "cluster/.secrets/hf_token"


def raw(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def prepared(name: str) -> dict:
    """The config as `ray up` sees it: Ray's defaults merged in, node types filled (what
    `ray.autoscaler._private.commands._bootstrap_config` does before the cloud-specific part)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(raw(name)))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_cluster_config_passes_rays_own_validation(name):
    from ray.autoscaler._private.util import validate_config

    config = raw(name)
    if config["provider"]["type"] != "local":  # a local config only validates once prepared
        validate_config(copy.deepcopy(config))
    validate_config(prepared(name))  # schema (ray-schema.json) + Ray's cross-field checks


@pytest.mark.parametrize("name", CONFIGS)
def test_start_commands_keep_token_auth_on_and_the_dashboard_on_localhost(name):
    config = prepared(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert len(starts) == 1, key
        # RAY_AUTH_MODE=token is set in the same shell command, before `ray start`.
        assert re.search(r"\bRAY_AUTH_MODE=token\b[^\n]*\bray start\b", starts[0], re.S), starts[0]
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    text = (CLUSTER / name).read_text()
    assert "0.0.0.0" not in text and "::/0" not in text  # nothing bound or opened to the world
    assert not re.search(r"RAY_AUTH_MODE\s*=\s*(disabled|none)", text, re.I)
    assert "include-dashboard" not in text  # the dashboard runs; it is reached through `ray dashboard`


@pytest.mark.parametrize("name", CLOUDS)
def test_no_firewall_rule_opens_a_ray_port(name):
    config = raw(name)
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:  # none today; any added later must not open Ray's ports publicly
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
        assert "0.0.0.0/0" not in ranges, rule
    for node_type in config["available_node_types"].values():
        assert "accessConfigs" not in yaml.safe_dump(node_type["node_config"])  # no extra public IPs


@pytest.mark.parametrize("name", CONFIGS)
def test_secrets_reach_nodes_only_as_git_ignored_file_mounts(name):
    config = raw(name)
    mounts = config["file_mounts"]
    assert mounts["~/.ray/auth_token"] == TOKEN_FILE  # Ray's default token path on every node
    assert mounts["~/.cache/huggingface/token"] == HF_FILE  # huggingface_hub's token path
    ignore = (CLUSTER / ".gitignore").read_text().splitlines()
    assert ".secrets/" in ignore
    text = (CLUSTER / name).read_text()
    assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", text)  # no literal Hugging Face token
    assert not re.search(r"\b[0-9a-f]{64}\b", text)  # no literal Ray token
    assert not re.search(r"HF_TOKEN\s*=", text)
    # The project is synced without its secrets folder or git history.
    assert config["rsync_filter"] == [".gitignore"] and "**/.git" in config["rsync_exclude"]


@pytest.mark.parametrize("name", CONFIGS)
def test_nodes_get_the_project_a_cuda_torch_and_the_data(name):
    config = raw(name)
    mounts = config["file_mounts"]
    assert mounts["~/forecast-tuner"] == "."
    assert mounts["~/forecast-data"] == "cluster/data" and (REPO / "cluster" / "data").is_dir()
    setup = "\n".join(config["setup_commands"])
    assert "-e ~/forecast-tuner" in setup
    assert "cluster/constraints.txt torch" in setup
    assert "whl/cpu" not in setup and "+cpu" not in setup  # not the CPU build CI uses
    # What runs on the GPU nodes checks that torch sees the GPU.
    gpu_check = "\n".join(config["setup_commands"] + config["worker_setup_commands"])
    assert "torch.cuda.is_available()" in gpu_check


def test_cluster_pins_match_this_environment():
    import ray

    pins = dict(line.split("==") for line in (CLUSTER / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["ray"] == ray.__version__  # `ray up` needs the same Ray here and on the nodes
    cpu = dict(line.split("==") for line in (REPO / "constraints" / "cpu.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#"))
    assert pins["torch"] == cpu["torch"]  # the same torch release as CI, as its CUDA build


@pytest.mark.parametrize("name", CLOUDS)
def test_cloud_head_has_no_gpu_and_gpu_workers_scale_from_zero(name):
    config = prepared(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert workers
    for worker in workers.values():
        assert worker["min_workers"] == 0 and worker["max_workers"] >= 1
        assert worker["resources"]["GPU"] >= 1
    assert config["idle_timeout_minutes"] > 0


def test_aws_gpu_workers_are_g5_or_g6_with_their_own_instance_profile():
    config = raw("aws.yaml")
    types = config["available_node_types"]
    families = {t["node_config"]["InstanceType"].split(".")[0] for k, t in types.items() if k != "head"}
    assert families == {"g5", "g6"}
    assert types["head"]["node_config"]["InstanceType"].startswith(("m", "c", "t", "r"))
    for key, node_type in types.items():
        profile = node_type["node_config"]["IamInstanceProfile"]["Name"]
        assert profile == ("forecast-tuner-head" if key == "head" else "forecast-tuner-worker")
    assert config["provider"]["cache_stopped_nodes"] is False  # idle GPU nodes are terminated


def test_onprem_config_lists_head_and_workers():
    config = prepared("onprem.yaml")
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    assert config["auth"]["ssh_private_key"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_cluster_experiments_are_valid_and_size_their_gpu_actors_explicitly(path):
    from tuner.engine.experiment_config import load_experiment_config

    config = load_experiment_config(path)
    for family in config.families:  # the GPU workers start from zero: no GPU to size pools from
        res = config.resources_for(family)
        assert res.actors and 0 < res.num_gpus < 1 and res.num_cpus, family
    assert config.pending_timeout_s >= 1200  # room for a GPU node to boot and install torch


# ----------------------------------------------------------------------------- helper scripts


def run_script(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a script with os.environ updated by ``env`` (a None value unsets the variable)."""
    merged = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=merged)


@pytest.mark.parametrize("script", ["up.sh", "submit.sh", "env.sh"])
def test_scripts_are_valid_bash(script):
    assert run_script("-n", str(CLUSTER / script)).returncode == 0


def test_up_stages_secrets_private_and_keeps_the_ray_token(tmp_path):
    secrets_dir, home = tmp_path / "secrets", tmp_path / "home"
    home.mkdir()
    env = {"FT_SECRETS_DIR": str(secrets_dir), "HOME": str(home), "HF_HOME": str(home / "hf"),
           "HF_TOKEN_PATH": "", "HF_TOKEN": "hf_test_value"}
    out = run_script(str(CLUSTER / "up.sh"), "--stage-only", env=env)
    assert out.returncode == 0, out.stderr
    token = (secrets_dir / "ray_auth_token").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)  # the format `ray get-auth-token --generate` makes
    assert (secrets_dir / "hf_token").read_text() == "hf_test_value"
    for f in ("ray_auth_token", "hf_token"):
        assert stat.S_IMODE((secrets_dir / f).stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    assert not (home / ".ray").exists()  # the user's own Ray token is not touched
    # A second run keeps the token (running nodes hold it) and follows a changed HF token.
    env.pop("HF_TOKEN")
    out = run_script(str(CLUSTER / "up.sh"), "--stage-only", env={**env, "HF_TOKEN": ""})
    assert out.returncode == 0, out.stderr
    assert (secrets_dir / "ray_auth_token").read_text() == token
    assert (secrets_dir / "hf_token").read_text() == ""
    assert "anonymously" in out.stderr


def test_submit_refuses_incomplete_requests_before_contacting_a_cluster():
    out = run_script(str(CLUSTER / "submit.sh"), "--resume", "mn", env={"RAY_API_SERVER_ADDRESS": None})
    assert out.returncode == 2 and "--resume needs --storage" in out.stderr
    out = run_script(str(CLUSTER / "submit.sh"), "no-such-experiment", "--address", "http://127.0.0.1:9")
    assert out.returncode == 2 and "no experiment config no-such-experiment" in out.stderr
    out = run_script(str(CLUSTER / "submit.sh"), "--help")
    assert out.returncode == 0 and "ray job submit" in out.stdout


@pytest.fixture
def fake_ray(tmp_path):
    """A stand-in `ray` CLI that records its arguments, working directory, environment and (for
    `job submit`) the uploaded working dir's files, so the scripts run without a cluster."""
    record = tmp_path / "ray-calls.jsonl"
    stub = tmp_path / "ray"
    stub.write_text(f"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("ray, version 2.60.0"); sys.exit(0)
files = []
if "--working-dir" in args:
    root = args[args.index("--working-dir") + 1]
    files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
with open({str(record)!r}, "a") as out:
    out.write(json.dumps({{"args": args, "cwd": os.getcwd(), "files": files, "env": {{
        k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_UP_enable_autoscaler_v2")}}}}) + "\\n")
""")
    stub.chmod(0o755)

    def calls() -> list[dict]:
        import json

        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return stub, calls


@pytest.mark.parametrize("name, v2", [("onprem.yaml", "0"), ("aws.yaml", None)])
def test_up_runs_ray_up_from_the_repo_root_with_the_right_autoscaler(name, v2, fake_ray, tmp_path):
    stub, calls = fake_ray
    env = {"RAY": str(stub), "FT_SECRETS_DIR": str(tmp_path / "secrets"), "HOME": str(tmp_path),
           "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "", "HF_TOKEN_PATH": "",
           "RAY_UP_enable_autoscaler_v2": None}
    out = run_script(str(CLUSTER / "up.sh"), str(CLUSTER / name), "--no-config-cache", env=env,
                     cwd=tmp_path)  # from anywhere: up.sh runs `ray up` from the repo root
    assert out.returncode == 0, out.stderr
    (call,) = calls()
    assert call["args"] == ["up", "-y", str(CLUSTER / name), "--no-config-cache"]
    assert call["cwd"] == str(REPO)  # file_mounts ("." and cluster/...) are relative to it
    # On-prem keeps Ray's v1 autoscaler, which starts `local` workers (v2 does not).
    assert call["env"]["RAY_UP_enable_autoscaler_v2"] == v2


def test_submit_ships_code_and_config_and_passes_tuner_arguments_through(fake_ray, tmp_path):
    stub, calls = fake_ray
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("name: 'demo'\ntrials: 2\n")
    out = run_script(str(CLUSTER / "submit.sh"), str(experiment), "--storage", "s3://b/t",
                     "--address", "http://127.0.0.1:9", "--", "--symbols", "AAPL,MSFT",
                     env={"RAY": str(stub)})
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    assert re.fullmatch(r"ft-demo-\d{8}-\d{6}", job_id)  # the only line on stdout
    (call,) = calls()
    args = call["args"]
    assert args[:2] == ["job", "submit"] and args[args.index("--submission-id") + 1] == job_id
    assert args[args.index("--address") + 1] == "http://127.0.0.1:9" and "--no-wait" in args
    entry = args[args.index("--") + 1:]
    assert entry == ["tuner", "run", "--config", "experiment.yaml", "--address", "auto",
                     "--storage", "s3://b/t", "--symbols", "AAPL,MSFT"]
    assert "experiment.yaml" in call["files"] and "tuner/cli.py" in call["files"]
    assert "configs/spaces/toto.yaml" in call["files"]
    assert not any("__pycache__" in f for f in call["files"])
    assert call["env"]["RAY_AUTH_MODE"] == "token"
    # --resume: `tuner resume` on the cluster; --installed: no upload, the nodes' own tuner.
    out = run_script(str(CLUSTER / "submit.sh"), "--resume", "demo", "--storage", "s3://b/t",
                     "--installed", env={"RAY": str(stub)})
    assert out.returncode == 0, out.stderr
    args = calls()[-1]["args"]
    assert "--working-dir" not in args
    assert args[args.index("--") + 1:] == ["tuner", "resume", "demo", "--storage", "s3://b/t",
                                           "--address", "auto"]
    assert re.fullmatch(r"ft-demo-resume-\d{8}-\d{6}", out.stdout.strip())
