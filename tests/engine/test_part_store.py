"""The part store (tuner/engine/part_store.py) that hands collation parts from one round of tasks
to the next, run here as plain Python (the engine runs it as an actor)."""

from __future__ import annotations

import pytest

from tuner.engine.part_store import PartStore, pack, unpack


def test_parts_are_kept_by_kind_and_batch_and_read_again_by_a_retried_task():
    store = PartStore()
    store.put("entries", 0, pack({"AAPL": 1}))
    store.put("entries", 1, pack({"MSFT": 2}))
    store.put_each("decisions", [pack({"AAPL": "keep"}), pack({"MSFT": "promote"})])
    assert unpack(store.get("entries", 1)) == {"MSFT": 2}
    assert unpack(store.get("entries", 1)) == {"MSFT": 2}  # reading leaves it for a retry
    assert unpack(store.get("decisions", 0)) == {"AAPL": "keep"}
    store.put("entries", 1, pack({"MSFT": 3}))  # a retried task's part replaces the first
    assert unpack(store.get("entries", 1)) == {"MSFT": 3}


def test_a_part_not_packed_is_refused_naming_it():
    with pytest.raises(TypeError, match="the entries part of batch 2 is a dict: parts are packed"):
        PartStore().put("entries", 2, {"AAPL": 1})


def test_dropping_a_kind_keeps_the_others_and_a_missing_part_is_named():
    store = PartStore()
    store.put_each("inputs", [b"a", b"b"])
    store.put("rows", 0, b"r")
    store.drop("inputs")
    assert store.get("rows", 0) == b"r"
    with pytest.raises(KeyError, match="no inputs part of batch 1 in the part store"):
        store.get("inputs", 1)
