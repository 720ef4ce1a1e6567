from __future__ import annotations

import json
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from tests.conftest import random_walk_bars
from tuner.cli import main

PARAMS = '{"num_samples": 64, "aggregate": "median"}'


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *all_commands(main)], ids=lambda p: " ".join(p) or "tuner")
def test_when_help_is_asked_then_every_command_explains_itself_with_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output, f"tuner {' '.join(path)} --help has no Example block"


def test_when_evaluate_on_bundled_data_then_json_has_validation_test_and_baseline():
    result = CliRunner().invoke(main, ["evaluate", "--family", "bootstrap_returns", "--symbol", "IBM",
                                       "--params", PARAMS, "--seed", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["symbol"] == "IBM" and data["seed"] == 4 and data["model_type"] == "bootstrap_returns"
    assert data["validation"]["windows"] == 20 and data["test"]["windows"] == 20
    assert data["baseline"]["validation"]["latency_s"] == 0.0


def test_when_evaluate_prints_for_people_then_it_ends_with_a_one_line_summary():
    result = CliRunner().invoke(main, ["evaluate", "--family", "bootstrap_returns", "--symbol", "IBM",
                                       "--params", PARAMS, "--seed", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 and "{" not in result.output
    assert lines[0].startswith("validation  pct_return_mae ") and "naive baseline" in lines[0]
    assert lines[1].startswith("test        pct_return_mae ") and "20 windows" in lines[1]
    assert re.fullmatch(r"IBM bootstrap_returns: validation 0\.\d{5} (beats|does not beat) the baseline's 0\.\d{5}; "
                        r"test 0\.\d{5} (beats|does not beat) the baseline's 0\.\d{5} \(--json for everything\)",
                        lines[2]), lines[2]


def test_when_family_is_unknown_then_error_lists_known_families():
    result = CliRunner().invoke(main, ["evaluate", "--family", "prophet", "--symbol", "IBM", "--params", "{}"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown family 'prophet'; known: bootstrap_returns, kronos_ensemble")


def test_when_params_is_not_json_then_usage_error_names_the_option():
    result = CliRunner().invoke(main, ["evaluate", "--family", "toto", "--symbol", "IBM", "--params", "{num"])
    assert result.exit_code == 2 and "--params" in result.output and "not valid JSON" in result.output


def test_when_symbol_is_missing_then_error_lists_symbols():
    result = CliRunner().invoke(main, ["evaluate", "--family", "bootstrap_returns", "--symbol", "TSLA",
                                       "--params", PARAMS])
    assert result.exit_code == 1 and "symbol 'TSLA' not found" in result.output


def test_when_data_check_finds_a_bad_file_then_it_reports_it_and_exits_1(write_csv, tmp_path):
    write_csv("GOOD.csv", random_walk_bars(100))
    write_csv("BAD.csv", "Date,Close\n2020-01-01,1\n2020-01-02,x\n")
    write_csv("data_summary.csv", "symbol,score\nGOOD,1\n")
    result = CliRunner().invoke(main, ["data", "check", str(tmp_path / "data")])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "GOOD: ok"
    assert f"  problem: {tmp_path / 'data' / 'BAD.csv'} line 3: close 'x' is not a number" in lines
    assert any(line.startswith("data_summary: NOT USABLE") for line in lines)


def test_when_data_check_finds_duplicates_and_unreadable_entries_then_it_names_each_and_exits_1(
        write_csv, tmp_path):
    folder = tmp_path / "data"
    write_csv("KO.csv", random_walk_bars(100))
    random_walk_bars(100).to_parquet(folder / "KO.parquet")
    (folder / "x.csv").mkdir()
    result = CliRunner().invoke(main, ["data", "check", str(folder)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines == [
        "KO: NOT USABLE",
        f"  problem: symbol 'KO' is in 2 sources: {folder / 'KO.csv'}, {folder / 'KO.parquet'}; keep it in one",
        "x.csv: NOT USABLE",
        f"  problem: {folder / 'x.csv'}: unreadable: a directory, not a file",
        "2 checked: 0 usable, 2 not usable; 0 warnings in 0 files",
    ]


def test_when_data_check_sees_the_same_warning_in_many_files_then_it_says_it_once_with_totals(
        write_csv, tmp_path):
    for i in range(7):
        close_only = random_walk_bars(100, seed=i)[["Date", "Close"]]
        write_csv(f"S{i}_1d.csv", close_only)
    write_csv("HOURLY.csv", random_walk_bars(100, freq="h"))
    result = CliRunner().invoke(main, ["data", "check", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  rows 100, 2020-01-01 00:00:00 .. 2020-04-09 00:00:00, daily, gaps 0" in lines
    assert any(line.startswith("  rows 100, ") and line.endswith(", hourly, gaps 0") for line in lines)
    assert not any("every 1 days" in line or line.startswith("  warning: ") for line in lines)
    shared = [line for line in lines if line.startswith("  7 files: ")]
    assert shared and all(line.endswith("(S0_1d, S1_1d, S2_1d, S3_1d, S4_1d and 2 more)") for line in shared)
    assert lines[-1] == (f"8 checked: 8 usable, 0 not usable; {7 * len(shared)} warnings in 7 files "
                         f"({len(shared)} shared, said once above)")


def test_when_data_check_json_then_it_parses():
    result = CliRunner().invoke(main, ["data", "check", "tuner/sample_data", "--json"])
    assert result.exit_code == 0
    assert {r["symbol"] for r in json.loads(result.output)} >= {"AAPL", "EURUSD"}


def test_when_run_as_a_real_process_then_evaluate_prints_json():
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "evaluate", "--family", "bootstrap_returns",
                          "--symbol", "MSFT", "--params", PARAMS, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["symbol"] == "MSFT"


@pytest.mark.parametrize(("flag", "expected"), [([], "bf16"), (["--autocast-dtype", "fp32"], None),
                                                (["--autocast-dtype", "fp16"], "fp16")])
def test_when_run_gets_options_then_they_override_the_experiment_yaml(monkeypatch, flag, expected):
    import tuner.engine.experiment

    seen = {}
    monkeypatch.setattr(tuner.engine.experiment, "run_experiment",
                        lambda config, **kwargs: seen.setdefault("config", config) and {})
    result = CliRunner().invoke(main, ["run", "--config", "monthly", "--trials", "3", *flag])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.autocast_dtype == expected  # monthly.yaml says bf16
    assert config.trials == 3 and config.name == "monthly"


@pytest.mark.parametrize("command", [
    ["run", "--device", "cuda", "--trials", "1"],
    ["evaluate", "--family", "toto", "--symbol", "AAPL", "--device", "cuda", "--params", PARAMS],
], ids=["run", "evaluate"])
def test_when_cuda_is_asked_on_a_machine_without_it_then_one_error_line_and_exit_1_before_ray(
        monkeypatch, command):
    import torch

    import tuner.decisions.evaluate
    import tuner.engine.experiment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    never = lambda *a, **k: pytest.fail("got past the device check")  # noqa: E731
    monkeypatch.setattr(tuner.engine.experiment, "run_experiment", never)
    monkeypatch.setattr(tuner.decisions.evaluate, "evaluate_symbol", never)
    result = CliRunner().invoke(main, command)
    fix = "--device auto or cpu" if command[0] == "run" else "cpu or leave --device out"
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: --device cuda: torch.cuda.is_available() is False on this machine; use {fix}"]


def test_when_a_cuda_index_is_beyond_the_devices_then_the_error_names_how_many_there_are(monkeypatch):
    import torch

    import tuner.decisions.evaluate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(tuner.decisions.evaluate, "evaluate_symbol", lambda *a, **k: pytest.fail("not checked"))
    result = CliRunner().invoke(main, ["evaluate", "--family", "toto", "--symbol", "AAPL",
                                       "--device", "cuda:2", "--params", PARAMS])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: --device cuda:2: this machine has 2 CUDA device(s) (cuda:0..cuda:1); "
        "use one of them or cpu or leave --device out"]


def test_when_the_driver_gets_sighup_then_it_unwinds_with_system_exit():
    import os
    import signal

    from tuner.cli import exit_cleanly_on_hangup

    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)}
    unwound = []
    try:
        exit_cleanly_on_hangup()
        with pytest.raises(SystemExit) as info:
            try:
                os.kill(os.getpid(), signal.SIGHUP)  # the handler runs in this, the main thread
            finally:
                unwound.append(True)  # where run_experiment shuts Ray down
        assert info.value.code == 128 + signal.SIGHUP and unwound == [True]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # a second one is not caught
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def run_config(monkeypatch, args):
    """The config `tuner run ARGS` would tune, without starting Ray (run_experiment is stubbed)."""
    import tuner.engine.experiment

    seen = {}
    monkeypatch.setattr(tuner.engine.experiment, "run_experiment",
                        lambda config, **kwargs: seen.setdefault("config", config) and {})
    result = CliRunner().invoke(main, ["run", *args])
    return result, seen.get("config")


def test_when_run_gets_a_data_folder_without_symbols_then_every_symbol_in_it_is_tuned(
        monkeypatch, write_csv, tmp_path):
    from tuner.core.data import load_dataset

    write_csv("AAPL.csv", random_walk_bars(300, seed=1))
    write_csv("IBM.csv", random_walk_bars(300, seed=2))
    result, config = run_config(monkeypatch, ["--data", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert config.data == str(tmp_path / "data") and config.symbols is None  # sample.yaml lists AAPL, MSFT, EURUSD
    assert load_dataset(config.data, symbols=config.symbols).symbols == ["AAPL", "IBM"]


def test_when_run_gets_a_data_folder_and_symbols_then_only_those_are_tuned(monkeypatch, write_csv, tmp_path):
    write_csv("AAPL.csv", random_walk_bars(300, seed=1))
    write_csv("IBM.csv", random_walk_bars(300, seed=2))
    result, config = run_config(monkeypatch, ["--data", str(tmp_path / "data"), "--symbols", "IBM"])
    assert result.exit_code == 0, result.output
    assert config.symbols == ("IBM",)


def test_when_run_gets_no_data_then_the_experiments_symbols_stay(monkeypatch):
    result, config = run_config(monkeypatch, [])
    assert result.exit_code == 0, result.output
    assert config.data is None and config.symbols == ("AAPL", "MSFT", "EURUSD")


@pytest.mark.parametrize("option", ["--families", "--symbols"])
def test_when_run_gets_an_empty_list_option_then_it_is_a_usage_error(monkeypatch, option):
    result, config = run_config(monkeypatch, [option, " , "])
    assert result.exit_code == 2 and config is None
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for {option}: empty; give a comma-separated list or leave the option out")


def test_when_evaluate_runs_offline_without_weights_then_it_falls_back_to_tiny_weights_and_says_so(
        monkeypatch, tiny_weights):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("no connection and nothing cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("TUNER_TINY_WEIGHTS", str(tiny_weights))  # already made: no rewrite
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = CliRunner().invoke(main, ["evaluate", "--family", "toto", "--symbol", "AAPL", "--params", PARAMS,
                                       "--val-windows", "2", "--test-windows", "2", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tiny_weights"] is True and data["weights"] == f"toto={tiny_weights / 'toto'}"
    assert result.stderr.splitlines() == [
        "WARNING: published weights unavailable (weights 'Datadog/Toto-Open-Base-1.0': the hub cannot be "
        "reached and the checkpoint is not in the local cache. Download it on a machine with access "
        "(huggingface-cli download Datadog/Toto-Open-Base-1.0) and copy the folder here, then pass it as "
        "--weights /path/to/folder; or make tiny random-init checkpoints for a dry run with `tuner models "
        "make-tiny DIR` and pass --weights DIR.)",
        f"WARNING: falling back to TINY RANDOM-INIT weights in {tiny_weights}: the pipeline runs end to end "
        "but every score is noise. Results are labelled tiny_weights=true.",
        "WARNING: tiny random-init weights: these scores are noise, not a model's skill.",
    ]


def test_when_evaluate_gets_explicit_weights_that_are_missing_then_it_does_not_fall_back(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--family", "toto", "--symbol", "AAPL", "--params", PARAMS,
                                       "--weights", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: weights {str(tmp_path / 'nowhere')!r}: no such folder")
