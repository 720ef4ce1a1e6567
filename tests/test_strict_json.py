from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tuner.cli import main
from tuner.core import strict_json
from tuner.core.storage import Storage


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity, as JavaScript's JSON.parse does."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_when_a_result_holds_non_finite_floats_then_they_are_written_as_null_with_a_reason(tmp_path):
    storage = Storage(str(tmp_path), "exp")
    storage.write_json("summary.json", {
        "AAA": {"validation_skill": float("-inf"), "spread": np.float64("nan"),
                "test_skill": float("inf"), "test_skill_reason": "kept: the writer's own reason"},
        "values": [1.0, float("nan"), np.array([2.0, np.inf])],
    })
    data = strict_loads((tmp_path / "exp" / "summary.json").read_text())
    assert data == {
        "AAA": {"validation_skill": None,
                "validation_skill_reason": "-Infinity is not a JSON number; written as null",
                "spread": None, "spread_reason": "NaN is not a JSON number; written as null",
                "test_skill": None, "test_skill_reason": "kept: the writer's own reason"},
        "values": [1.0, None, [2.0, None]],
    }


def test_when_a_non_finite_value_slips_past_the_sanitiser_then_dumps_raises(monkeypatch):
    monkeypatch.setattr(strict_json, "strict", lambda data: data)  # a regression in the sanitiser
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        strict_json.dumps({"skill": float("-inf")})


def test_when_prices_are_flat_then_evaluate_prints_strict_json_with_a_null_skill_and_its_reason(
        write_csv, tiny_weights):
    flat = "Date,Close\n" + "".join(f"2020-01-{1 + i // 24:02d} {i % 24:02d}:00,100\n" for i in range(120))
    file = write_csv("FLAT.csv", flat)
    result = CliRunner().invoke(main, [
        "evaluate", "--family", "toto", "--symbol", "FLAT", "--data", str(file), "--weights", str(tiny_weights),
        "--device", "cpu", "--params", '{"num_samples": 16, "aggregate": "mean"}', "--json"])
    assert result.exit_code == 0, result.output
    data = strict_loads(result.output[result.output.index("{"):])
    assert data["baseline"]["validation"]["pct_return_mae"] == 0.0
    assert data["validation"]["pct_return_mae"] > 0  # the tiny model does not forecast "no change"
    assert data["validation"]["skill"] is None
    assert data["validation"]["skill_reason"] == "baseline pct_return_mae is 0 (flat prices), so skill is undefined"


def test_when_a_key_is_added_to_a_written_object_then_the_file_is_what_writing_it_whole_gives(tmp_path):
    from tuner.core.errors import DamagedFile

    storage = Storage(str(tmp_path), "exp")
    doc = {"symbol": "ÅAA", "test": {"errors": [0.1, float("nan")], "skill": None}, "trials": [1, 2]}
    decision = {"choice": "own", "p_value": float("inf"), "why": "line one\nline two", "nested": {"a": [1, {}]}}
    storage.write_json("whole.json", {**doc, "decision": decision})
    storage.write_json("added.json", doc)
    storage.add_json_key("added.json", "decision", decision)
    assert (tmp_path / "exp" / "added.json").read_bytes() == (tmp_path / "exp" / "whole.json").read_bytes()
    with pytest.raises(ValueError, match="decision"):  # a second one would be a duplicate key
        storage.add_json_key("added.json", "decision", {"choice": "pooled"})
    (tmp_path / "exp" / "cut.json").write_text('{\n  "symbol": "AAA",\n')
    with pytest.raises(DamagedFile, match="cut.json"):
        storage.add_json_key("cut.json", "decision", decision)


def test_dumps_writes_what_the_sanitised_copy_gives_whether_or_not_the_data_needs_it(monkeypatch):
    """dumps first writes the data as it is and makes the sanitised copy only when that fails:
    the text must be the copy's in every case, and the copy must be skipped when nothing needs it."""
    import datetime
    from collections import OrderedDict
    from types import MappingProxyType

    plain = {"a": [1, 2.5, None, True, "é"], "b": {"c": (1, 2), "3": "key"}, "d": OrderedDict(x=1.0),
             "when": datetime.date(2026, 1, 2), "big": 1e-05, "sub": np.float64(0.25)}
    changed = [
        {**plain, "nan": float("nan")},
        {**plain, "np_int": np.int64(3)},
        {**plain, "array": np.array([1.0, 2.0])},
        {**plain, "view": MappingProxyType({"k": 1})},
        {**plain, "flag": np.bool_(True)},
        {**plain, "deep": [{"x": [np.float32(0.5)]}]},
    ]
    for data in [plain, *changed]:
        for kwargs in ({}, {"indent": 2, "default": str}, {"sort_keys": True, "default": str}):
            if "when" in data and "default" not in kwargs:
                with pytest.raises(TypeError, match="date"):
                    strict_json.dumps(data, **kwargs)
                continue
            assert strict_json.dumps(data, **kwargs) == json.dumps(strict_json.strict(data), allow_nan=False, **kwargs)
    walked = []
    original = strict_json.strict
    monkeypatch.setattr(strict_json, "strict", lambda data: walked.append(1) or original(data))
    strict_json.dumps(plain, default=str)
    assert walked == []  # nothing to change: no copy made
    strict_json.dumps(changed[0], default=str)
    assert walked  # a NaN: the copy is made
