"""Model-actor bookkeeping that runs without Ray: the load ledger."""

from __future__ import annotations

from tuner.engine.actors import LoadLedger


def test_when_an_actor_restarts_then_the_ledger_counts_its_second_load_and_one_restart():
    ledger = LoadLedger()
    for name, pid, loads in (("toto-0", 10, 1), ("kronos-0", 11, 2), ("toto-0", 12, 1)):
        ledger.record(name, pid, loads)
    assert ledger.totals() == {"model_loads": 4, "actor_restarts": 1, "restarts_by_actor": {"toto-0": 1}}
