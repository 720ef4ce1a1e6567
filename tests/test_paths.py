"""Names from data never become paths outside the experiment or configs/best/ (issue 21, item 1).

Every writer is tried with names that would leave its folder, add folders or break a line; each
must refuse before writing anything, and nothing may appear outside.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.summary_shapes import rewrite_entries
from tests.test_report import make_experiment
from tuner.cli import main
from tuner.core.errors import ConfigError, TunerError, UnsafePath
from tuner.core.metrics import Scores
from tuner.core.storage import Storage, contained
from tuner.core.trial import PeriodResult, TrialResult
from tuner.engine.collate import COMPLETED, TrialRecord, write_experiment

HOSTILE = ["../../../../tmp/x/T", "../T", "sub/dir", "A\nB", "{tmp}/abs/T", "a\\b", "tab\there"]
"""Symbols that would leave a folder (``..``, absolute), add folders (``sub/dir``) or hold a
control character (a newline). ``{tmp}`` becomes the test's own folder, so that a regression
writes there, not at the machine's root. (``..`` alone gives ``...json``, a name inside the folder: the
symbol rule refuses it where data is read, see tests/test_data.py.)"""

FAMILY = "bootstrap_returns"


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def naive(folder: Path, name: str) -> Path:
    """Where ``folder / f"{name}.json"`` would have landed had nobody checked."""
    return Path(os.path.normpath(os.path.join(folder, f"{name}.json")))


def scores(mae: float) -> Scores:
    return Scores(mae, 1.0, 0.1, 0.01, 10, tuple([mae] * 10))


def result(symbol: str) -> TrialResult:
    period = PeriodResult(scores(0.01), scores(0.02), 0.5)
    return TrialResult(symbol, FAMILY, {"lookback": 10}, 0, period, period, None, False)


def collate(storage: Storage, symbol: str, blend: bool = False) -> dict:
    """Collate one finished study of ``symbol`` (and a blend candidate of it) as the driver does."""
    rec = TrialRecord("t1", symbol, FAMILY, COMPLETED, {"lookback": 10}, {"pct_return_mae": 0.01},
                      number=0, session=1)
    derived = None
    if blend:
        derived = {(symbol, "blend"): {**result(symbol).to_dict(), "model_type": "blend",
                                       "config": {"members": [FAMILY]}}}
    return write_experiment(storage, [rec], {(symbol, FAMILY): result(symbol)}, [(symbol, FAMILY)], 1,
                            {"experiment": storage.name}, derived=derived)


def plant_symbol(root: Path, bad: str) -> None:
    """Rename symbol AAA to ``bad`` in a finished experiment's symbols.parquet (a hostile file)."""
    def rename(entries: dict) -> None:
        entries[bad] = entries.pop("AAA")

    rewrite_entries(root, rename)


@pytest.mark.parametrize("bad", HOSTILE, ids=repr)
@pytest.mark.parametrize("writer", ["winner", "blend", "promote", "promote-cli", "report", "export", "storage"])
def test_when_a_name_would_leave_its_folder_then_every_writer_refuses_and_writes_nothing_outside(
        tmp_path, writer, bad):
    bad = bad.format(tmp=tmp_path)
    sandbox = tmp_path / "a" / "b" / "c"
    results, configs = sandbox / "results", sandbox / "configs"
    before = files(tmp_path)
    if writer in ("winner", "blend"):
        storage = Storage(str(results), "exp")
        if writer == "blend":  # the family winner is fine; only the blend's file name is bad
            with pytest.raises(UnsafePath, match="refusing the path"):
                write_experiment(storage, [], {}, [], 1, {"experiment": "exp"},
                                 derived={(bad, "blend"): {**result(bad).to_dict(), "model_type": "blend",
                                                           "config": {"members": [FAMILY]}}})
        else:
            with pytest.raises(UnsafePath, match="refusing the path"):
                collate(storage, bad)
        for folder in (results / "exp" / FAMILY, results / "exp" / "blend"):
            assert not naive(folder, bad).exists()
    elif writer in ("promote", "promote-cli"):
        root = make_experiment(results, symbols=("AAA",))
        plant_symbol(root, bad)
        before = files(tmp_path)
        if writer == "promote":
            from tuner.decisions.promote import promote_winners

            with pytest.raises(UnsafePath):
                promote_winners("exp", str(results), configs, force=True, echo=lambda _: None)
        else:
            out = CliRunner().invoke(main, ["promote", "exp", "--storage", str(results), "--configs",
                                            str(configs), "--force"])
            assert out.exit_code == 1 and "refusing the path" in out.output, out.output
        assert not naive(configs / "best", bad).exists()
    elif writer == "report":
        root = make_experiment(results, symbols=("AAA",))
        summary = json.loads((root / "summary.json").read_text())
        (root / "summary.json").write_text(json.dumps({**summary, "experiment": bad}))
        before = files(tmp_path)
        out = CliRunner().invoke(main, ["report", "exp", "--storage", str(results), "--format", "html"])
        assert out.exit_code == 1 and "refusing the path" in out.output, out.output
        assert not naive(results, f"{bad}/report").exists()
    elif writer == "export":
        root = make_experiment(results, symbols=("AAA",))
        trials = pd.read_parquet(root / "trials.parquet").assign(symbol=bad)
        trials.to_parquet(root / "trials.parquet", index=False)
        before = files(tmp_path)
        out = CliRunner().invoke(main, ["export-optuna", "exp", "--storage", str(results),
                                        "--storage-url", str(sandbox / "tuning.log")])
        assert out.exit_code == 1 and "trials.parquet row 1: symbol" in out.output, out.output
    else:  # the experiment's own name: summary, progress, trials and the journal live under it
        with pytest.raises(UnsafePath):
            Storage(str(results), bad)
        storage = Storage(str(results), "exp")
        with pytest.raises(UnsafePath):
            storage.write_json((FAMILY, f"{bad}.json"), {})
    assert files(tmp_path) == before  # nothing written anywhere, inside or out


def test_when_names_are_plain_then_contained_joins_them_under_the_root(tmp_path):
    assert contained(str(tmp_path), "toto", "BRK.B.json") == str(tmp_path.resolve() / "toto" / "BRK.B.json")
    assert contained("s3://bucket/prefix/", "exp", "AAPL.json") == "s3://bucket/prefix/exp/AAPL.json"


@pytest.mark.parametrize("bad", [*HOSTILE, "..", ".", ""], ids=repr)
def test_when_a_uri_storage_gets_a_hostile_name_then_it_is_refused_without_io(bad):
    bad = bad.format(tmp="/tmp")
    with pytest.raises(UnsafePath, match=r"^s3://bucket/exp: refusing the path"):
        contained("s3://bucket/exp", "toto", bad)


def test_when_a_folder_inside_the_storage_links_outside_then_writes_through_it_are_refused(tmp_path):
    storage = Storage(str(tmp_path / "results"), "exp")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "results" / "exp").mkdir(parents=True)
    (tmp_path / "results" / "exp" / FAMILY).symlink_to(outside)
    with pytest.raises(UnsafePath, match="through a symbolic link, outside the storage"):
        collate(storage, "AAA")
    assert list(outside.iterdir()) == []


def test_when_symbols_are_valid_then_winner_and_blend_files_are_written_as_before(tmp_path):
    storage = Storage(str(tmp_path), "exp")
    collate(storage, "BRK.B", blend=True)
    assert {"bootstrap_returns/BRK.B.json", "blend/BRK.B.json", "summary.json",
            "trials.parquet"} <= files(tmp_path / "exp")


def test_when_a_report_goes_to_an_out_file_then_it_is_written_there(tmp_path):
    make_experiment(tmp_path / "results", symbols=("AAA",))
    out = CliRunner().invoke(main, ["report", "exp", "--storage", str(tmp_path / "results"), "--format",
                                    "csv", "--out", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "r.csv").read_text().startswith("experiment,state,")


def test_when_the_error_is_unsafe_path_then_it_is_a_tuner_error_the_cli_shows_in_one_line():
    assert issubclass(UnsafePath, TunerError) and not issubclass(UnsafePath, ConfigError)


@pytest.mark.parametrize("storage_root, expected", [
    ("results", "tuner resume exp"),
    ("elsewhere", "tuner resume exp --storage {cwd}/elsewhere"),
    ("s3://bucket/tuner", "tuner resume exp --storage s3://bucket/tuner"),
    ("with space", "tuner resume exp --storage '{cwd}/with space'"),
])
def test_when_a_command_is_suggested_then_it_names_the_storage_unless_it_is_the_default(
        tmp_path, monkeypatch, storage_root, expected):
    monkeypatch.chdir(tmp_path)
    if storage_root.startswith("s3://"):
        storage = Storage.__new__(Storage)
        storage.base, storage.name = storage_root, "exp"  # no bucket to open: only the words matter
    else:
        storage = Storage(storage_root, "exp")
    assert storage.command("resume") == expected.format(cwd=tmp_path.resolve())


def test_when_a_write_was_cut_short_then_its_temporary_file_is_removed_and_nothing_else(tmp_path):
    storage = Storage(str(tmp_path), "exp")
    storage.write_json(("fam", "AAA.json"), {"a": 1})
    folder = tmp_path / "exp" / "fam"
    stale = folder / ".BBB.json.4242.0123abcd.tmp"  # what write_bytes leaves when killed mid-write
    stale.write_text("{half")
    kept = [folder / ".hidden-notes.tmp", folder / "AAA.json"]  # not of write_bytes' making
    kept[0].write_text("mine")
    assert storage.remove_temp_files() == 1
    assert not stale.exists() and all(p.exists() for p in kept)
    assert storage.remove_temp_files() == 0
