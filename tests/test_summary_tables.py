"""summary.json stays short, the per-symbol and per-study tables sit beside it, and one reader
serves every consumer: the new shape and the old one (dicts inside summary.json) read the same,
status never parses a symbol's entry, and tables of another collation are refused (issue 22)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.summary_shapes import entries, tables, to_legacy
from tests.test_report import make_experiment
from tuner.cli import main
from tuner.core.errors import DamagedFile
from tuner.core.storage import STUDIES_FILE, SUMMARY_FILE, SYMBOLS_FILE, Storage
from tuner.core.summary_tables import ENTRY, ExperimentSummary, short_summary, write_summary
from tuner.decisions.decided import decided_configs
from tuner.engine.collate import build_summary, trial_counts


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (0, 3), result.output
    return result.output


def outputs(results, configs) -> dict[str, str]:
    """What a user reads of the experiment, through every reading command."""
    where = ["--storage", str(results)]
    return {
        "status": cli("status", "exp", *where),
        "status --all": cli("status", "exp", *where, "--all"),
        "status --symbol": cli("status", "exp", *where, "--symbol", "BBB"),
        "report": cli("report", "exp", *where),
        "report csv": cli("report", "exp", *where, "--format", "csv"),
        "promote --dry-run": cli("promote", "exp", *where, "--configs", str(configs), "--dry-run"),
    }


def test_when_an_experiment_is_collated_then_summary_json_is_short_and_the_tables_hold_the_rest(tmp_path):
    root = make_experiment(tmp_path, failed=3)
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert not {"symbols", "studies", "studies_without_winner"} & set(summary)
    assert summary["tables"] == {"symbols": SYMBOLS_FILE, "studies": STUDIES_FILE}
    assert summary["counts"] == {"symbols": 3, "studies": 9, "studies_without_winner": 1}
    read = tables(root)
    assert read.symbol_names() == ["AAA", "BBB", "CCC"] and read.symbol_count() == 3
    assert read.without_winner() == {"CCC/kronos_ensemble": "no completed trial"}
    assert read.study_counts()["CCC/kronos_ensemble"] == {"completed": 0, "failed": 3, "never_ran": 0, "budget": 3}
    key = read.symbols(["best_family", "validation_pct_return_mae", "families"], symbols=["BBB"])
    entry = read.entry("BBB")
    assert key["best_family"].tolist() == [entry["best_family"]]
    assert key["validation_pct_return_mae"].tolist() == [entry["validation_pct_return_mae"]]
    assert list(key["families"][0]) == sorted(entry["families"])
    assert read.entry("ZZZ") is None
    assert json.loads(pq.read_table(root / SYMBOLS_FILE, columns=[ENTRY]).column(0)[0].as_py()) == entries(root)["AAA"]


def test_when_a_summary_is_written_then_its_tables_give_back_what_the_collation_held(tmp_path):
    doc = {"config": {"a": 1}, "validation": {"pct_return_mae": float("nan"), "skill": 0.1},
           "test": {"pct_return_mae": 0.02, "skill": 0},
           "baseline": {"validation": {"pct_return_mae": 0.02}, "test": {"pct_return_mae": 0.02}}}
    counts = trial_counts([], [("AAA", "toto"), ("AAA", "kronos")], budget=2)
    full = build_summary({("AAA", "toto"): doc}, counts, {"created_at": "now", "windows_used": {
        "AAA": {"validation": 20, "test": 30}, "BBB": {"validation": 40, "test": 10}}})
    storage = Storage(str(tmp_path), "exp")
    short = write_summary(storage, full)
    assert short == short_summary(full) == storage.read_json(SUMMARY_FILE)
    assert short["windows_used"] == {"symbols": 2, "validation": {"min": 20, "max": 40}, "test": {"min": 10, "max": 30}}
    read = ExperimentSummary.read(storage)
    # NaN is written as summary.json always wrote it: null, with the reason beside it
    assert read.entry("AAA")["validation_pct_return_mae"] is None
    assert read.entry("AAA")["validation_pct_return_mae_reason"].startswith("NaN")
    assert read.study_counts() == {k: dict(v) for k, v in full["studies"].items()}
    assert read.without_winner() == full["studies_without_winner"] == {"AAA/kronos": "no completed trial"}
    assert read.windows_used() == {"AAA": {"validation": 20, "test": 30}}  # the studies' symbols


def test_when_an_old_experiment_holds_the_dicts_then_every_reader_shows_the_same(tmp_path):
    results, configs = tmp_path / "results", tmp_path / "configs"
    root = make_experiment(results, failed=3, blend=True)
    new = outputs(results, configs)
    before = tables(root)
    read = (before.entries_dict(), before.study_counts(), before.without_winner(), decided_configs(before),
            before.symbols().drop(columns=["families"]))
    old_summary = to_legacy(root)
    assert "tables" not in old_summary and not (root / SYMBOLS_FILE).exists()
    old = tables(root)
    assert old.legacy and not before.legacy
    assert (old.entries_dict(), old.study_counts(), old.without_winner(), decided_configs(old)) == read[:4]
    assert old.symbols().drop(columns=["families"]).equals(read[4])
    assert outputs(results, configs) == new
    assert "CCC/kronos_ensemble (no completed trial)" in new["report"]  # the reader's without_winner
    assert "would promote" in new["promote --dry-run"] and "BBB" in new["status --symbol"]


def test_when_status_runs_then_it_reads_key_columns_and_never_a_symbols_entry(tmp_path):
    root = make_experiment(tmp_path)
    table = pq.read_table(root / SYMBOLS_FILE)
    broken = table.set_column(table.schema.get_field_index(ENTRY), pa.field(ENTRY, pa.string()),
                              pa.array(["{not json"] * len(table)))
    pq.write_table(broken.replace_schema_metadata(table.schema.metadata), root / SYMBOLS_FILE)
    lines = cli("status", "exp", "--storage", str(tmp_path), "--all")
    assert "3 symbols, " in lines and "AAA " in lines
    with pytest.raises(DamagedFile, match="the entry of 'AAA' is not valid JSON"):
        tables(root).entry("AAA")


@pytest.mark.parametrize("damage", ["another collation", "missing", "not parquet"])
def test_when_the_tables_do_not_belong_to_the_summary_then_readers_name_them_and_the_way_back(tmp_path, damage):
    root = make_experiment(tmp_path)
    summary = json.loads((root / SUMMARY_FILE).read_text())
    if damage == "another collation":  # a run stopped between writing the tables and the summary
        (root / SUMMARY_FILE).write_text(json.dumps({**summary, "created_at": "2020-01-01T00:00:00+00:00"}))
    elif damage == "missing":
        (root / SYMBOLS_FILE).unlink()
    else:
        (root / SYMBOLS_FILE).write_text("PAR1 not parquet")
    result = CliRunner().invoke(main, ["status", "exp", "--storage", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: {root / SYMBOLS_FILE}: " in result.output
    assert f"`tuner resume exp --storage {tmp_path}` rebuilds it from the experiment's journal" in result.output


def test_when_status_prints_json_then_the_entries_asked_for_are_where_summary_json_held_them(tmp_path):
    root = make_experiment(tmp_path)
    short = json.loads(cli("status", "exp", "--storage", str(tmp_path), "--json"))
    assert "symbols" not in short["summary"] and short["summary"]["counts"]["symbols"] == 3
    one = json.loads(cli("status", "exp", "--storage", str(tmp_path), "--json", "--symbol", "BBB"))
    assert one["summary"]["symbols"] == {"BBB": entries(root)["BBB"]}
    every = json.loads(cli("status", "exp", "--storage", str(tmp_path), "--json", "--all"))
    assert every["summary"]["symbols"] == entries(root)


def test_when_the_symbols_table_is_written_in_parts_then_it_is_the_whole_table_in_row_groups(tmp_path, monkeypatch):
    from tuner.core import summary_tables

    symbols = {f"S{i:03d}": {"best_family": "toto", "validation_pct_return_mae": 0.01 * i, "beats_baseline": i % 2 == 0,
                             "families": {"toto": {"config": {"lookback": i}}}} for i in range(7)}
    storage = Storage(str(tmp_path), "exp")
    monkeypatch.setattr(summary_tables, "ROW_GROUP", 3)
    write_summary(storage, {"created_at": "2026-12-06T00:00:00+00:00", "symbols": symbols, "studies": {}})
    written = pq.ParquetFile(storage.path(SYMBOLS_FILE))
    assert [written.metadata.row_group(g).num_rows for g in range(written.num_row_groups)] == [3, 3, 1]
    assert written.read().equals(summary_tables.symbols_table(symbols, "2026-12-06T00:00:00+00:00"))
    assert written.schema_arrow.metadata == summary_tables.symbols_schema("2026-12-06T00:00:00+00:00").metadata

    write_summary(storage, {"created_at": "2026-12-06T00:00:00+00:00", "symbols": {}, "studies": {}})
    assert pq.read_table(storage.path(SYMBOLS_FILE)).num_rows == 0  # no winner at all: an empty table, readable


def test_when_the_symbols_table_comes_in_parts_of_any_size_then_it_is_written_whole_in_row_groups(
        tmp_path, monkeypatch):
    from tuner.core import summary_tables

    stamp = "2026-12-06T00:00:00+00:00"
    symbols = {f"S{i:03d}": {"best_family": "toto", "validation_pct_return_mae": 0.01 * i,
                             "families": {"toto": {"config": {"lookback": i}}}} for i in range(7)}
    names = sorted(symbols)
    parts = [summary_tables.symbols_table({s: symbols[s] for s in names[a:b]}, stamp)
             for a, b in ((0, 2), (2, 6), (6, 7))]  # as the collation tasks make them
    storage = Storage(str(tmp_path), "exp")
    monkeypatch.setattr(summary_tables, "ROW_GROUP", 3)
    storage.write_parquet_parts(SYMBOLS_FILE, summary_tables.symbols_schema(stamp),
                                summary_tables.row_groups(iter(parts)))
    short = write_summary(storage, {"created_at": stamp, "studies": {}}, symbols_written=7)
    written = pq.ParquetFile(storage.path(SYMBOLS_FILE))
    assert [written.metadata.row_group(g).num_rows for g in range(written.num_row_groups)] == [3, 3, 1]
    assert written.read().equals(summary_tables.symbols_table(symbols, stamp))
    assert short["counts"]["symbols"] == 7 and "symbols" not in short
    assert ExperimentSummary.read(storage).symbol_names() == names
