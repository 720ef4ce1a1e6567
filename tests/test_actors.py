"""Model-actor bookkeeping that runs without Ray: the load ledger."""

from __future__ import annotations

from tuner.engine.actors import LoadLedger


def test_when_an_actor_restarts_then_the_ledger_counts_its_second_load_and_one_restart():
    ledger = LoadLedger()
    for name, pid, loads in (("toto-0", 10, 1), ("kronos-0", 11, 2), ("toto-0", 12, 1)):
        ledger.record(name, pid, loads)
    assert ledger.totals() == {"model_loads": 4, "actor_restarts": 1, "restarts_by_actor": {"toto-0": 1}}


def test_when_a_trial_actor_is_told_to_exit_inside_a_weakref_callback_then_nothing_is_reported_but_other_errors_are(
        monkeypatch):
    import sys
    import weakref

    from tuner.engine.actors import quiet_exit_in_callbacks

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: reported.append(unraisable.exc_type))
    quiet_exit_in_callbacks()
    quiet_exit_in_callbacks()  # once per pack: installed once

    class Thing:
        pass

    for error in (SystemExit(1), ValueError("a real bug")):  # Ray's SIGTERM handler raises the first
        thing = Thing()

        def callback(_ref, error=error):
            raise error

        ref = weakref.ref(thing, callback)
        del thing  # the callback runs here, where Python can only ignore what it raises
        assert ref() is None
    assert reported == [ValueError]
