from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import random_walk_bars
from tuner.core.data import bundled_data_path, check_data, load_bars, load_dataset
from tuner.core.errors import DataError


def csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def test_when_folder_has_two_symbols_then_both_load_with_canonical_columns(data_folder):
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["AAA", "BBB"]
    frame = dataset.get("AAA").frame
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close", "volume", "amount"]
    assert frame["timestamp"].is_monotonic_increasing
    ohlc_mean = frame[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(frame["amount"], frame["volume"] * ohlc_mean)


def test_when_bundled_data_loads_then_every_symbol_is_usable():
    reports = check_data(bundled_data_path(), min_bars=72)
    assert {r.symbol for r in reports} >= {"AAPL", "MSFT", "IBM", "GOOG", "GOOGL", "EURUSD"}
    assert all(r.usable for r in reports), [r.problems for r in reports if not r.usable]
    assert next(r for r in reports if r.symbol == "EURUSD").frequency == "01:00:00"




@pytest.mark.parametrize(
    "row, value, column, message",
    [
        (5, "not a date", "Date", "line 7: cannot parse timestamp 'not a date'"),
        (5, "", "Date", "line 7: missing timestamp"),
        (5, "", "Close", "line 7: empty close"),
        (5, "abc", "Close", "line 7: close 'abc' is not a number"),
        (5, "0", "Close", "line 7: close 0 is not a positive price"),
        (5, "-3.5", "Open", "line 7: open -3.5 is not a positive price"),
        (5, "nan", "Close", "line 7: close 'nan' is NaN (not a number), not a price"),
        (5, "NaN", "High", "line 7: high 'NaN' is NaN (not a number), not a price"),
        (5, "-10", "Volume", "line 7: negative volume -10"),
    ],
)
def test_when_a_cell_is_bad_then_error_names_file_line_and_problem(write_csv, row, value, column, message):
    frame = random_walk_bars(100).astype({column: object})
    frame.loc[row, column] = value
    file = write_csv("BAD.csv", frame)
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == f"{file} {message}"


def test_when_a_quoted_field_spans_lines_then_errors_name_the_line_an_editor_shows(write_csv):
    frame = random_walk_bars(100).astype({"Close": object})
    frame["Note"] = ""
    frame.loc[2, "Note"] = "split\nacross\nlines"  # row 2 takes lines 4-6 of the file
    frame.loc[5, "Close"] = "abc"  # the 7th row: line 7 without the note, line 9 with it
    file = write_csv("NOTE.csv", frame)
    assert file.read_text().splitlines()[8].split(",")[4] == "abc"
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == f"{file} line 9: close 'abc' is not a number"


def test_when_timestamp_repeats_then_error_names_both_lines(write_csv):
    frame = random_walk_bars(100)
    frame.loc[9, "Date"] = frame.loc[8, "Date"]
    file = write_csv("DUP.csv", frame)
    with pytest.raises(DataError, match=r"line 11: timestamp 2020-01-09 00:00:00 repeats line 10$"):
        load_bars(file)


def test_when_rows_are_unsorted_then_error_names_the_line(write_csv):
    frame = random_walk_bars(100)
    frame.loc[[20, 21], "Date"] = frame.loc[[21, 20], "Date"].values
    file = write_csv("UNSORTED.csv", frame)
    with pytest.raises(DataError, match=r"line 23: timestamp .* is earlier than the row before it"):
        load_bars(file)


def test_when_rows_are_newest_first_then_they_are_reversed_with_a_note(write_csv):
    frame = random_walk_bars(100)
    bars = load_bars(write_csv("REV.csv", frame.iloc[::-1]))
    assert bars.frame["timestamp"].is_monotonic_increasing
    np.testing.assert_allclose(bars.close, frame["Close"])
    assert any("newest-first" in n for n in bars.notes)
    assert bars.where(0).endswith("line 101")  # the oldest bar sits on the file's last line


def test_when_high_below_low_then_error(write_csv):
    frame = random_walk_bars(100)
    frame.loc[3, ["High", "Low"]] = [90.0, 95.0]
    file = write_csv("HL.csv", frame)
    with pytest.raises(DataError, match=r"line 5: high 90 < low 95"):
        load_bars(file)


def test_when_file_is_empty_then_error(write_csv):
    file = write_csv("EMPTY.csv", "")
    with pytest.raises(DataError, match="EMPTY.csv: empty file"):
        load_bars(file)


def test_when_only_a_header_then_error(write_csv):
    file = write_csv("HEAD.csv", "Date,Close\n")
    with pytest.raises(DataError, match="header but no rows"):
        load_bars(file)


def test_when_semicolon_delimited_then_it_loads(write_csv):
    frame = random_walk_bars(50)
    file = write_csv("SEMI.csv", frame.to_csv(index=False, sep=";"))
    np.testing.assert_allclose(load_bars(file).close, frame["Close"])


def test_when_whitespace_delimited_then_error_says_so(write_csv):
    file = write_csv("WS.csv", "Date Open High Low Close\n2020-01-01 1 2 0.5 1.5\n")
    with pytest.raises(DataError, match="line 1: .*looks whitespace-delimited"):
        load_bars(file)


def test_when_not_utf8_then_error_names_line(tmp_path):
    folder = tmp_path / "enc"
    folder.mkdir()
    file = folder / "LAT.csv"
    file.write_bytes("Date,Close\n2020-01-01,1.0\n2020-01-02,2.0 \xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"LAT.csv line 3: not UTF-8 text \(byte 0xe9"):
        load_bars(file)


def test_when_utf16_with_bom_then_it_loads(tmp_path):
    file = tmp_path / "U16.csv"
    file.write_bytes(csv_text(random_walk_bars(50)).encode("utf-16"))
    assert len(load_bars(file)) == 50


def test_when_a_file_has_no_close_column_then_it_is_skipped_not_tuned(data_folder, write_csv, caplog):
    write_csv("data_summary.csv", "symbol,rows,best_mae\nAAA,400,0.01\n")
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["AAA", "BBB"]
    assert [f.name for f, _ in dataset.skipped] == ["data_summary.csv"]
    assert "skipped" in caplog.text and "no close column" in caplog.text


def test_when_one_file_is_bad_then_the_others_still_load(data_folder, write_csv):
    write_csv("CCC.csv", "Date,Close\n2020-01-01,1\n2020-01-01,2\n")
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["AAA", "BBB"]
    assert "repeats line 2" in str(dataset.errors["CCC"])
    with pytest.raises(DataError, match="repeats"):
        dataset.get("CCC")


def test_when_one_file_holds_many_symbols_then_each_is_split_out(tmp_path):
    a, b = random_walk_bars(60, seed=1), random_walk_bars(60, seed=2)
    both = pd.concat([a.assign(Ticker="A"), b.assign(Ticker="B")])
    file = tmp_path / "all.parquet"
    both.to_parquet(file)
    dataset = load_dataset(file)
    assert dataset.symbols == ["A", "B"]
    np.testing.assert_allclose(dataset.get("B").close, b["Close"])
    assert dataset.get("B").where(0).endswith("row 61")


def test_when_one_symbol_of_a_many_symbol_file_is_bad_then_only_it_is_lost(write_csv, tmp_path):
    a, b = random_walk_bars(60, seed=1), random_walk_bars(60, seed=2)
    b.loc[10, "Close"] = -1.0
    write_csv("long.csv", pd.concat([a.assign(Symbol="AAA"), b.assign(Symbol="BBB"),
                                     a.head(3).assign(Symbol="")]))
    dataset = load_dataset(tmp_path / "data" / "long.csv")
    assert dataset.symbols == ["AAA"]
    assert "line 72" in str(dataset.errors["BBB"])  # header + 60 AAA rows + row 10 of BBB
    assert "empty symbol" in str(dataset.errors["long (rows without a symbol)"])
    np.testing.assert_allclose(dataset.get("AAA").close, a["Close"])


def test_when_adjusted_close_present_then_it_is_the_close_and_ohlc_are_scaled(write_csv):
    frame = random_walk_bars(50)
    frame["Adj Close"] = frame["Close"] / 2
    bars = load_bars(write_csv("ADJ.csv", frame))
    np.testing.assert_allclose(bars.close, frame["Close"] / 2)
    np.testing.assert_allclose(bars.frame["high"], frame["High"] / 2)
    np.testing.assert_allclose(bars.frame["volume"], frame["Volume"] * 2)  # traded value unchanged
    assert any("Adj Close" in n and "volume" in n for n in bars.notes)


def test_when_close_only_then_ohlc_filled_and_volume_zero(write_csv):
    bars = load_bars(write_csv("C.csv", "timestamp,close\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n"))
    assert (bars.frame["open"] == bars.close).all() and (bars.frame["volume"] == 0).all()


def test_when_a_split_is_unadjusted_then_the_jump_is_reported(write_csv):
    frame = random_walk_bars(100)
    frame.loc[60:, ["Open", "High", "Low", "Close"]] /= 2
    write_csv("SPLIT.csv", frame)
    (report,) = check_data(write_csv("SPLIT.csv", frame))
    assert report.usable
    assert any("line 62" in w and "jumps -5" in w for w in report.warnings), report.warnings


def test_when_too_few_bars_then_check_says_how_many_are_needed(write_csv):
    (report,) = check_data(write_csv("SHORT.csv", random_walk_bars(50)), min_bars=72, need="ctx 32 + 40")
    assert report.problems == ("too few bars: has 50, needs 72 (ctx 32 + 40)",)


def test_when_symbols_are_requested_then_only_those_load_and_missing_ones_are_errors(data_folder):
    dataset = load_dataset(data_folder, symbols=["AAA", "ZZZ"])
    assert dataset.symbols == ["AAA"]
    assert "ZZZ" in dataset.errors


def test_when_epoch_seconds_then_timestamps_parse(write_csv):
    bars = load_bars(write_csv("EP.csv", "time,close\n1700000000,1\n1700003600,2\n"))
    assert str(bars.frame["timestamp"][1]) == "2023-11-14 23:13:20"


# ---------------------------------------------------------------- issue 12: silent data problems


def test_when_a_symbol_is_in_a_csv_and_a_parquet_then_it_is_an_error_naming_both(data_folder):
    random_walk_bars(100, seed=5).to_parquet(data_folder / "AAA.parquet")
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["BBB"]
    assert str(dataset.errors["AAA"]) == (
        f"symbol 'AAA' is in 2 sources: {data_folder / 'AAA.csv'}, {data_folder / 'AAA.parquet'}; keep it in one")


@pytest.mark.parametrize("symbols", [None, ["AAA"]], ids=["all", "asked-for"])
def test_when_a_symbol_column_repeats_a_file_symbol_then_it_is_an_error_naming_both(data_folder, symbols):
    random_walk_bars(100, seed=6).assign(Symbol="AAA").to_csv(data_folder / "more.csv", index=False)
    dataset = load_dataset(data_folder, symbols=symbols)
    assert "AAA" not in dataset.bars
    assert str(dataset.errors["AAA"]) == (
        f"symbol 'AAA' is in 2 sources: {data_folder / 'AAA.csv'}, {data_folder / 'more.csv'}; keep it in one")


def test_when_close_is_outside_the_bar_then_a_warning_names_the_line_and_count(write_csv):
    frame = random_walk_bars(100)
    frame.loc[5, "Close"] = frame.loc[5, "High"] + 5
    frame.loc[9, "Open"] = frame.loc[9, "Low"] - 1
    file = write_csv("OUT.csv", frame)
    bars = load_bars(file)
    np.testing.assert_allclose(bars.close, frame["Close"])  # kept as is
    assert f"{file} line 7: close {frame.loc[5, 'Close']:g} above high {frame.loc[5, 'High']:g}; " \
           "2 open/close value(s) outside their bar's [low, high] in this file, kept as is" in bars.notes
    (report,) = check_data(file)
    assert report.usable and any("line 7: close" in w for w in report.warnings)


def test_when_bars_are_consistent_then_no_outside_bar_warning(write_csv):
    assert not any("outside" in n for n in load_bars(write_csv("OK.csv", random_walk_bars(100))).notes)


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("Close", "1e300", "close 1e+300 is beyond float32's range (max 3.4e+38; the models compute in "
                           "float32); rescale the values"),
        ("High", "inf", "high inf is not finite"),
        ("Close", "1e-40", "close 1e-40 is below float32's smallest normal 1.18e-38 (the models compute "
                           "in float32); rescale the prices"),
        ("Volume", "1e39", "volume 1e+39 is beyond float32's range (max 3.4e+38; the models compute in "
                           "float32); rescale the values"),
    ],
)
def test_when_a_value_is_beyond_float32_then_error_names_file_and_line(write_csv, column, value, message):
    frame = random_walk_bars(100).astype({column: object})
    frame.loc[3, column] = value
    file = write_csv("BIG.csv", frame)
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == f"{file} line 5: {message}"


def test_when_volume_times_price_overflows_float32_then_the_amount_is_refused(write_csv):
    frame = random_walk_bars(100).astype({"Volume": float})
    frame.loc[3, "Volume"] = 1e37  # within float32, but volume × ~100 is not
    file = write_csv("AMT.csv", frame)
    with pytest.raises(DataError, match=r"line 5: amount .* \(volume × mean price\) is beyond float32's range"):
        load_bars(file)


def test_when_parquet_prices_overflow_float32_then_error_names_the_row(tmp_path):
    frame = random_walk_bars(100)
    frame.loc[7, "Close"] = 1e300
    file = tmp_path / "HUGE.parquet"
    frame.to_parquet(file)
    with pytest.raises(DataError, match=rf"^{file} row 8: close 1e\+300 is beyond float32's range"):
        load_bars(file)


def test_when_timestamps_mix_utc_offsets_then_a_warning_names_the_file_and_lines(write_csv):
    frame = random_walk_bars(100)
    frame["Date"] = [d + ("+01:00" if i < 50 else "+02:00") for i, d in enumerate(frame["Date"])]
    file = write_csv("TZ.csv", frame)
    bars = load_bars(file)
    assert str(bars.frame["timestamp"][0]) == "2019-12-31 23:00:00"  # still converted to UTC
    assert f"{file} line 2: timestamps mix UTC offsets (+01:00 here, +02:00 from line 52; 2 different); " \
           "all converted to UTC" in bars.notes


def test_when_some_timestamps_have_no_offset_then_the_warning_says_they_are_taken_as_utc(write_csv):
    file = write_csv("NAIVE.csv", "Date,Close\n2020-01-01 00:00+01:00,1\n2020-01-02 00:00,2\n2020-01-03 00:00,3\n")
    assert f"{file} line 2: timestamps mix UTC offsets (+01:00 here, no offset from line 3; 2 different); " \
           "all converted to UTC, those without one taken as UTC" in load_bars(file).notes


def test_when_only_a_late_timestamp_has_an_offset_then_the_warning_still_names_it(write_csv):
    # Reading skips the row-by-row offset pass when no row has one: the check must see the last row.
    file = write_csv("LATE.csv", "Date,Close\n2020-01-01 00:00,1\n2020-01-02 00:00,2\n2020-01-03 00:00-05:00,3\n")
    assert f"{file} line 2: timestamps mix UTC offsets (no offset here, -05:00 from line 4; 2 different); " \
           "all converted to UTC, those without one taken as UTC" in load_bars(file).notes


def test_when_only_a_late_date_is_day_first_then_the_dates_are_not_read_day_first(write_csv):
    # Reading decides from the first row when it is no slash date: no row-by-row pass for ISO dates.
    file = write_csv("MIXED.csv", "Date,Close\n2020-01-02,1\n13/01/2020,2\n")
    assert not any("day/month" in n for n in load_bars(file).notes)


def test_when_one_utc_offset_throughout_then_no_warning(write_csv):
    file = write_csv("ONE.csv", "Date,Close\n2020-01-01T00:00Z,1\n2020-01-02T00:00Z,2\n")
    assert not any("offset" in n for n in load_bars(file).notes)


def test_when_data_folder_holds_unreadable_entries_then_each_is_reported_with_its_reason(data_folder):
    (data_folder / "x.csv").mkdir()
    (data_folder / "loop.csv").symlink_to("loop.csv")
    (data_folder / "gone.parquet").symlink_to("nowhere.parquet")
    reports = {r.symbol: r for r in check_data(data_folder)}
    assert reports["x.csv"].problems == (f"{data_folder / 'x.csv'}: unreadable: a directory, not a file",)
    assert reports["loop.csv"].problems == (f"{data_folder / 'loop.csv'}: unreadable: symbolic link loop",)
    assert reports["gone.parquet"].problems == (
        f"{data_folder / 'gone.parquet'}: unreadable: dangling symbolic link to nowhere.parquet",)
    assert reports["AAA"].usable and reports["BBB"].usable


def test_when_the_csv_has_blank_lines_then_reported_lines_are_the_files_lines(write_csv):
    lines = random_walk_bars(100).to_csv(index=False).splitlines()
    lines.insert(3, "")
    lines.insert(0, "")  # before the header too
    lines[10] = lines[10].replace(lines[10].split(",")[4], "abc")  # the close on line 11
    file = write_csv("BLANK.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == f"{file} line 11: close 'abc' is not a number"


def test_when_the_csv_has_blank_lines_then_rows_and_locations_skip_them(write_csv):
    file = write_csv("GAPS.csv", "Date,Close\n2020-01-01,1\n\n2020-01-02,2\n  \n2020-01-03,3\n")
    bars = load_bars(file)
    assert bars.close.tolist() == [1, 2, 3]
    assert bars.locations == ("line 2", "line 4", "line 6")


@pytest.mark.parametrize("gap", ["", "  ", ",", " , ", '"",""', "\t"])
def test_when_a_line_holds_only_spaces_delimiters_or_quotes_then_it_is_a_blank_row_and_skipped(write_csv, gap):
    # Clean files skip the per-column blank check: only such lines can make a blank row.
    file = write_csv("GAP.csv", f"Date,Close\n2020-01-01,1\n{gap}\n2020-01-02, 2 \n")
    bars = load_bars(file)
    assert bars.close.tolist() == [1, 2] and bars.locations == ("line 2", "line 4")
    clean = load_bars(write_csv("CLEAN.csv", "Date,Close\n2020-01-01,1\n2020-01-02, 2 \n"))
    assert clean.close.tolist() == [1, 2] and clean.locations == ("line 2", "line 3")


@pytest.mark.parametrize("encoding, order", [("utf-16-le", "little-endian"), ("utf-16-be", "big-endian")])
def test_when_utf16_has_no_byte_order_mark_then_the_error_says_so(tmp_path, encoding, order):
    file = tmp_path / "U16.csv"
    file.write_bytes(csv_text(random_walk_bars(50)).encode(encoding))
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == (f"{file}: looks like UTF-16 ({order}) text without a byte-order mark; "
                               "save it as UTF-8 (or UTF-16 with a byte-order mark)")


def test_when_dates_are_day_first_then_they_are_read_so_with_a_warning(write_csv):
    frame = random_walk_bars(40)
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.strftime("%d/%m/%Y")
    file = write_csv("DMY.csv", frame)
    bars = load_bars(file)
    assert bars.frame["timestamp"].tolist() == list(pd.date_range("2020-01-01", periods=40))
    assert f"{file} line 14: date '13/01/2020' is day/month/year; the file's dates read that way" in bars.notes


def test_when_dates_mix_day_first_and_month_first_then_error_names_a_line_of_each(write_csv):
    file = write_csv("MIX.csv", "Date,Close\n13/01/2020,1\n01/14/2020,2\n")
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == (f"{file} line 2: date '13/01/2020' is day/month but line 3 has '01/14/2020', "
                               "month/day; use one date order (ISO yyyy-mm-dd is unambiguous)")


# ------------------------------------------------ issue 21: hostile names, data read wrong silently

HOSTILE_SYMBOLS = ["../../../../tmp/x/T", "sub/dir", "A\nB", "..", ".env", "A B", "x" * 65, "BTC/USD"]


@pytest.mark.parametrize("bad", HOSTILE_SYMBOLS, ids=repr)
def test_when_a_symbol_column_holds_an_unsafe_name_then_it_is_refused_with_file_and_line(write_csv, bad):
    a, b = random_walk_bars(60, seed=1), random_walk_bars(60, seed=2)
    file = write_csv("long.csv", pd.concat([a.assign(Symbol="AAA"), b.assign(Symbol=bad)]))
    dataset = load_dataset(file)
    assert dataset.symbols == ["AAA"]  # the good symbol beside it still loads
    assert list(dataset.errors) == [repr(bad)]  # keyed so that it cannot stand for a real symbol
    message = str(dataset.errors[repr(bad)])
    assert message.startswith(f"{file} line 62: column 'Symbol' holds {bad!r} is not a valid symbol: it ")
    assert "a symbol is 1 to 64 ASCII letters, digits and" in message


def test_when_a_symbol_has_a_slash_then_the_error_suggests_a_name(write_csv):
    file = write_csv("pairs.csv", random_walk_bars(60).assign(Symbol="BTC/USD"))
    assert str(load_dataset(file).errors["'BTC/USD'"]).endswith("rename it, e.g. 'BTC-USD'")


@pytest.mark.parametrize("name", ["A B.csv", "A..B.csv", "é.csv"], ids=repr)
def test_when_a_file_name_is_not_a_valid_symbol_then_that_file_is_an_error_and_the_others_load(
        data_folder, write_csv, name):
    file = write_csv(name, random_walk_bars(60))
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["AAA", "BBB"]
    stem = name[:-4]
    assert str(dataset.errors[repr(stem)]).startswith(
        f"{file}: the file name gives the symbol {stem!r} is not a valid symbol: it ")


def test_when_a_file_name_holds_a_newline_then_it_is_an_error_shown_escaped_and_never_read(
        data_folder, write_csv):
    write_csv("x\ny.csv", "not even a csv")
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["AAA", "BBB"]
    assert str(dataset.errors["'x\\ny.csv'"]) == (
        f"{data_folder}/'x\\ny.csv': the file name holds a control character (newline, tab...); rename the file")


def test_when_data_check_meets_unsafe_symbols_then_they_are_not_usable_and_it_exits_1(write_csv, tmp_path):
    from click.testing import CliRunner

    from tuner.cli import main

    a, b = random_walk_bars(100, seed=1), random_walk_bars(100, seed=2)
    write_csv("long.csv", pd.concat([a.assign(Symbol="AAA"), b.assign(Symbol="../../../../tmp/x/T"),
                                     a.assign(Symbol="sub/dir")]))
    out = CliRunner().invoke(main, ["data", "check", str(tmp_path / "data"), "--val-windows", "10",
                                    "--test-windows", "10"])
    assert out.exit_code == 1, out.output
    lines = out.output.splitlines()
    assert "AAA: ok" in lines
    assert "'../../../../tmp/x/T': NOT USABLE" in lines and "'sub/dir': NOT USABLE" in lines


@pytest.mark.parametrize("name", [".BAD.csv", "..csv", "._AAA.csv"])
def test_when_a_data_file_is_hidden_then_it_is_reported_as_skipped(data_folder, write_csv, name, caplog):
    file = write_csv(name, random_walk_bars(60))
    dataset = load_dataset(data_folder)
    assert dataset.symbols == ["AAA", "BBB"]
    assert dataset.skipped == [(file, "hidden file (its name starts with '.'), not read; rename it to use it")]
    assert f"skipped {file}: hidden file" in caplog.text
    report = next(r for r in check_data(data_folder) if r.symbol == name)
    assert report.problems == ("skipped, hidden file (its name starts with '.'), not read; rename it to use it",)


def test_when_a_folder_holds_only_hidden_files_then_the_error_names_them(write_csv, tmp_path):
    write_csv(".AAA.csv", random_walk_bars(60))
    with pytest.raises(DataError, match=r"no .* files in this folder \(only hidden ones: .AAA.csv\)"):
        load_dataset(tmp_path / "data")


def test_when_every_date_is_beyond_pandas_range_then_it_is_refused_not_read_as_1715(write_csv):
    frame = random_walk_bars(50, start="2300-01-01")
    file = write_csv("FAR.csv", frame)
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == (f"{file} line 2: timestamp '2300-01-01 00:00:00' is outside the supported "
                               "range 1677-09-22 .. 2262-04-11 (pandas' nanosecond timestamps)")


def test_when_one_date_is_beyond_pandas_range_then_its_own_line_and_value_are_named(write_csv):
    frame = random_walk_bars(50).astype({"Date": object})
    frame.loc[5, "Date"] = "2300-01-06"
    file = write_csv("ONEFAR.csv", frame)
    with pytest.raises(DataError, match=r"^.*ONEFAR.csv line 7: timestamp '2300-01-06' is outside the supported"):
        load_bars(file)


def test_when_a_parquet_date_is_beyond_pandas_range_then_the_row_is_named(tmp_path):
    frame = random_walk_bars(20)
    frame["Date"] = pd.to_datetime(frame["Date"]).astype("datetime64[us]")
    frame.loc[3, "Date"] = pd.Timestamp("2300-01-04").as_unit("us")
    file = tmp_path / "FARP.parquet"
    frame.to_parquet(file)
    with pytest.raises(DataError, match=r"FARP.parquet row 4: timestamp '2300-01-04.*' is outside"):
        load_bars(file)


@pytest.mark.parametrize("header, shown", [
    ("Date,Open,High,Low,close,Close", "'close' and 'Close'"),
    ("Date,Open,High,Low,Close,Close", "'Close' and 'Close' again"),
    ("Date,Open,High,Low,Close,Volume,VOLUME", "'Volume' and 'VOLUME'"),
])
def test_when_two_columns_give_the_same_field_then_the_error_names_both(write_csv, header, shown):
    row = "2020-01-01,1,2,0.5,1.5" + ",1" * (header.count(",") - 4)
    file = write_csv("TWO.csv", f"{header}\n{row}\n")
    field = "volume" if "Volume" in header else "close"
    with pytest.raises(DataError) as info:
        load_bars(file)
    assert str(info.value) == (f"{file}: columns {shown} both give the {field} (column names are matched "
                               "case-insensitively); keep one")


def test_when_the_close_never_moves_then_a_flat_series_warning_says_so(write_csv):
    frame = random_walk_bars(100)
    frame[["Open", "High", "Low", "Close"]] = 42.0
    file = write_csv("FLAT.csv", frame)
    (report,) = check_data(file)
    assert report.usable
    assert f"{file}: the close is 42 on all 100 bars: a flat series (every return is 0, so the naive " \
           "baseline is exact and no forecast can beat it)" in report.warnings


def test_when_daily_and_hourly_bars_share_a_file_then_a_warning_names_a_line_of_each(write_csv):
    daily = random_walk_bars(60, start="2020-01-01", freq="D")
    hourly = random_walk_bars(60, start="2020-03-01", freq="h", seed=1)
    file = write_csv("MIXED.csv", pd.concat([daily, hourly]))
    (warning,) = [n for n in load_bars(file).notes if "mixes bar frequencies" in n]
    # line 7: amid the daily bars; line 63: the first bar an hour after the one before it
    assert warning == (f"{file} line 7: bars come every 1 days here but every 01:00:00 at line 63: the "
                       "file mixes bar frequencies (daily and hourly?); keep one frequency per file")


def test_when_a_few_hourly_bars_sit_among_daily_ones_then_the_warning_still_comes(write_csv):
    frame = random_walk_bars(100)
    frame.loc[50, "Date"] = "2020-02-19 01:00:00"  # an hour after the bar before it
    file = write_csv("STRAY.csv", frame)
    assert any("mixes bar frequencies" in n for n in load_bars(file).notes)


@pytest.mark.parametrize("dates", [
    pd.bdate_range("2020-01-01", periods=300),  # weekends and a holiday-free calendar
    pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in pd.bdate_range("2020-01-01", periods=60)
                      for h in range(9, 16)]),  # hourly stock bars, 7 a day
    pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in pd.bdate_range("2020-01-01", periods=100)
                      for h in (9, 13)]),  # 4-hourly bars with the night between
], ids=["business-days", "hourly-stock", "four-hourly"])
def test_when_bars_have_one_frequency_with_nights_and_weekends_then_no_mixed_warning(write_csv, dates):
    frame = random_walk_bars(len(dates))
    frame["Date"] = dates.strftime("%Y-%m-%d %H:%M:%S")
    assert not any("mixes" in n for n in load_bars(write_csv("ONE.csv", frame)).notes)


def test_when_offsets_change_with_daylight_saving_then_no_mixed_offset_warning(write_csv):
    local = pd.date_range("2020-01-01 09:00", periods=400, freq="D", tz="Europe/Berlin")
    frame = random_walk_bars(400)
    frame["Date"] = [t.isoformat() for t in local]  # +01:00 in winter, +02:00 in summer
    bars = load_bars(write_csv("DST.csv", frame))
    assert not any("offset" in n for n in bars.notes), bars.notes
    assert str(bars.frame["timestamp"][0]) == "2020-01-01 08:00:00"
    assert str(bars.frame["timestamp"][200]) == "2020-07-19 07:00:00"


def test_when_offsets_change_against_every_time_zone_rule_then_the_warning_stays(write_csv):
    local = pd.date_range("2020-01-01 09:00", periods=400, freq="D", tz="Europe/Berlin")
    frame = random_walk_bars(400)
    frame["Date"] = [t.isoformat() for t in local]
    frame.loc[10, "Date"] = frame.loc[10, "Date"].replace("+01:00", "+02:00")  # January, +02:00: stitched
    file = write_csv("DSTBAD.csv", frame)
    assert any("timestamps mix UTC offsets" in n for n in load_bars(file).notes)


def test_when_two_symbols_differ_only_in_letter_case_then_both_are_refused_and_the_rest_load(write_csv, tmp_path):
    for name in ("aapl", "AAPL", "MSFT"):
        write_csv(f"{name}.csv", random_walk_bars(120))
    dataset = load_dataset(tmp_path / "data")
    assert dataset.symbols == ["MSFT"]
    for name in ("aapl", "AAPL"):
        message = str(dataset.errors[name])
        assert "differ only in letter case" in message and "AAPL.csv" in message and "aapl.csv" in message
