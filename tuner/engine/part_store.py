"""What one round of collation tasks hands the next, held by a Ray actor rather than the driver.

A task's return value under Ray's inline limit (100 KB) is kept in the memory of its caller, the
driver, for as long as the driver holds its reference. Collation's per-batch parts (each
batch's decision inputs, summary entries, decisions and table rows) are just under it, and the
driver held them from one round to the next: +15 MB at 4,000 symbols, +35 MB at 10,000
(bench/bench_driver_phases.py; with ``RAY_max_direct_call_object_size=1024``, which sends them to
the object store instead, +4 MB). So the tasks put their parts in a :class:`PartStore` actor and
the next round's tasks get them from it; the driver holds the actor's handle and numbers.

The parts travel and are kept as bytes (:func:`pack`, :func:`unpack`, the C pickler's): given
objects, the store unpickled each part on arrival and pickled it again on the way out, and
first imported the modules that define them (pandas among them). Measured at 1,000 symbols:
1.1 s of the store's CPU, 0.6 s of it imports, while each first-round task waited for its put.
"""

from __future__ import annotations

import pickle
from typing import Any


def pack(part: Any) -> bytes:
    """A part as the store keeps it."""
    return pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes) -> Any:
    """A part as :func:`pack` was given it (bytes from our own store: a trusted source)."""
    return pickle.loads(blob)


class PartStore:
    """The actor's body (plain Python; :func:`open_parts` runs it as an actor): parts, packed
    (:func:`pack`), by (kind, batch index). Reading leaves a part in place, so a retried task
    finds it again; the whole store goes when the collation ends (the actor is killed)."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, int], bytes] = {}

    def put(self, kind: str, index: int, part: bytes) -> None:
        """Keep ``part``; a retried task's part replaces the first one's, which is the same.

        Raises:
            TypeError: ``part`` is not packed (the store would unpickle it)."""
        if not isinstance(part, bytes):
            raise TypeError(f"the {kind} part of batch {index} is a {type(part).__name__}: parts are packed "
                            "(part_store.pack) before they are put")
        self.parts[(kind, index)] = part

    def put_each(self, kind: str, parts: list[bytes]) -> None:
        """Keep ``parts[i]`` as batch ``i``'s ``kind`` part."""
        for index, part in enumerate(parts):
            self.put(kind, index, part)

    def get(self, kind: str, index: int) -> bytes:
        """Batch ``index``'s ``kind`` part.

        Raises:
            KeyError: no task has put it (a round run before the one that makes it).
        """
        try:
            return self.parts[(kind, index)]
        except KeyError:
            raise KeyError(f"no {kind} part of batch {index} in the part store") from None

    def drop(self, kind: str) -> None:
        """Forget every ``kind`` part (once the round that reads them has finished)."""
        for key in [k for k in self.parts if k[0] == kind]:
            del self.parts[key]


def open_parts():
    """Start a part store (no CPU: it only keeps and hands out parts; several calls at once)."""
    import ray

    return ray.remote(PartStore).options(num_cpus=0, max_concurrency=4).remote()
