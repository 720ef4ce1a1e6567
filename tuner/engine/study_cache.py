"""The Optuna studies of a multiplexed search, with only the active ones kept as live objects.

A live :class:`~ray.tune.search.optuna.OptunaSearch` with its study, TPE sampler and trials costs
~40 KB of driver memory at 10 trials (measured: 10,000 studies x 10 trials added 400 MB to the
driver), and a universe of all US equities and liquid crypto x 3 families is ~10,000 studies. Yet
only the studies with a trial in flight, at most ``pack_size x packs in flight``, are used at any
moment. So a study that has nothing in flight and is not among the ``hot`` most recently used is
kept as a zlib-compressed pickle of its whole ``OptunaSearch`` (~5 KB at 12 trials): its trials,
its queued warm-start points and its samplers' random state travel with it, so once revived it
suggests exactly what it would have suggested had it stayed live (tested).

Two more things keep the driver from growing with the universe (issue 22: flat from 1,000 to
10,000 studies):

* a study is **built when first used** (``factory``): studies waiting for their turn (see
  ``active_studies`` in :class:`tuner.engine.search.StudyMultiplexer`) hold no Optuna objects;
* a **finished** study (its whole budget told, nothing in flight: nothing will ask it again in
  this session, the journal holds its trials) that falls out of the ``hot`` set is dropped
  instead of compressed. Its compressed form was ~7.6 KB, mostly the samplers' random states,
  which do not compress: 60 MB at 10,000 studies for objects never used again.

The pickles are made and read only inside this process, from objects it built: nothing read
from disk is ever unpickled.
"""

from __future__ import annotations

import pickle
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_HOT = 1024
"""Studies kept live at most (besides those with trials in flight). Up to this many studies a
run never compresses one, so small and medium universes pay nothing; beyond it, studies are
admitted in turn (half this many at once) and finished ones dropped, so the driver holds about
as many live studies at 10,000 as at 1,000 (measured: peak 222 MB at 1,000 x 10; 268 MB at
10,000 x 10 with 2,048 kept live)."""


class StudyCache:
    """Study key → its search object, live or compressed.

    Args:
        busy: whether a study has trials in flight (such a study is never compressed: its
            asked Optuna trials must stay the same objects until they are told).
        hot: idle studies kept live, most recently used first.
        factory: builds a study's search object the first time it is asked for (None: every
            study is :meth:`add`-ed).
        finished: whether a study will never be asked for again (dropped, not compressed, once
            it leaves the hot set; None: never).
    """

    def __init__(self, busy: Callable[[str], bool], hot: int = DEFAULT_HOT,
                 factory: Callable[[str], Any] | None = None,
                 finished: Callable[[str], bool] | None = None) -> None:
        self.busy = busy
        self.hot = max(0, hot)
        self.factory = factory
        self.finished = finished
        self.live: OrderedDict[str, Any] = OrderedDict()
        self.cold: dict[str, bytes] = {}
        self.retired: set[str] = set()
        self.compressions = 0
        self.revivals = 0
        self.builds = 0

    def __len__(self) -> int:
        return len(self.live) + len(self.cold)

    def __contains__(self, key: str) -> bool:
        return key in self.live or key in self.cold

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def keys(self) -> list[str]:
        return [*self.live, *self.cold]

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every study held (built and not dropped), revived (for inspection and tests: at a
        large universe this brings them all back into memory until the next :meth:`settle`)."""
        for key in self.keys():
            yield key, self.get(key)

    def values(self) -> Iterator[Any]:
        for _, search in self.items():
            yield search

    def add(self, key: str, search: Any) -> None:
        """A new study; it may be compressed at once when the cache is over its size."""
        self.live[key] = search
        self.settle()

    def get(self, key: str) -> Any:
        """The live search object of ``key`` (revived if it was compressed, built if it is new),
        now most recent."""
        search = self.live.get(key)
        if search is None:
            if key in self.cold:
                search = pickle.loads(zlib.decompress(self.cold.pop(key)))
                self.revivals += 1
            elif key in self.retired or self.factory is None:
                raise KeyError(f"study {key!r} " + ("finished and was dropped" if key in self.retired
                                                      else "is not in the cache"))
            else:
                search = self.factory(key)
                self.builds += 1
            self.live[key] = search
        self.live.move_to_end(key)
        return search

    def settle(self) -> None:
        """Compress (or drop, when finished) the least recently used idle studies beyond ``hot``."""
        if len(self.live) <= self.hot:
            return
        for key in list(self.live):
            if len(self.live) <= self.hot:
                break
            if self.busy(key):
                continue
            search = self.live.pop(key)
            if self.finished is not None and self.finished(key):
                self.retired.add(key)
            else:
                self.cold[key] = zlib.compress(pickle.dumps(search, pickle.HIGHEST_PROTOCOL), 1)
                self.compressions += 1

    def stats(self) -> dict[str, int]:
        return {"live": len(self.live), "compressed": len(self.cold),
                "compressed_bytes": sum(map(len, self.cold.values())),
                "compressions": self.compressions, "revivals": self.revivals,
                "built": self.builds, "retired": len(self.retired)}
