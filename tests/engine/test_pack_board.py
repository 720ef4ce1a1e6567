"""The pack board's first-wave wait: a pack's Tune trial waits for the other packs in flight to
start, so that no pack ends while another's trial actor is still starting (Tune would hand that
trial the ended pack's actor and kill the one starting: one pack in four then stays PENDING)."""

from __future__ import annotations

import time

import pytest

from tuner.engine import actors
from tuner.engine.actors import PackBoard, _wait_for_the_others


def test_the_board_counts_the_packs_whose_trial_has_not_started():
    board = PackBoard()
    board.put("a", [{"slot": 1}]), board.put("b", [{"slot": 2}])
    assert board.not_started() == 2
    assert board.start("a") == [{"slot": 1}] and board.not_started() == 1
    board.drop("b")
    assert board.not_started() == 0
    board.drop("a")
    assert board.started == set()
    with pytest.raises(KeyError, match="pack c is not on the board"):
        board.start("c")


def test_a_pack_waits_for_an_unstarted_one_until_the_deadline_and_not_once_it_has_started(local_ray, monkeypatch):
    import ray

    board = ray.remote(PackBoard).remote()
    ray.get([board.put.remote("a", []), board.put.remote("b", [])])
    ray.get(board.start.remote("a"))
    monkeypatch.setattr(actors, "START_WAIT_S", 0.5)
    began = time.monotonic()
    _wait_for_the_others(board)
    assert time.monotonic() - began >= 0.5  # b never started: it waited the whole deadline
    ray.get(board.start.remote("b"))
    monkeypatch.setattr(actors, "START_WAIT_S", 600.0)
    began = time.monotonic()
    _wait_for_the_others(board)
    assert time.monotonic() - began < 300  # returned once nothing was left to start, not at 600 s
    assert ray.get(board.not_started.remote()) == 0
