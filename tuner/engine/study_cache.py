"""The Optuna studies of a multiplexed search, with only the active ones kept as live objects.

A live :class:`~ray.tune.search.optuna.OptunaSearch` with its study, TPE sampler and trials costs
~40 KB of driver memory at 10 trials (measured: 10,000 studies x 10 trials added 400 MB to the
driver), and a universe of all US equities and liquid crypto x 3 families is ~10,000 studies. Yet
only the studies with a trial in flight, at most ``pack_size x packs in flight``, are used at any
moment. So a study that has nothing in flight and is not among the ``hot`` most recently used is
kept as a zlib-compressed pickle of its whole ``OptunaSearch`` (~5 KB at 12 trials): its trials,
its queued warm-start points and its samplers' random state travel with it, so once revived it
suggests exactly what it would have suggested had it stayed live (tested).

The pickles are made and read only inside this process, from objects it built: nothing read
from disk is ever unpickled.
"""

from __future__ import annotations

import pickle
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_HOT = 2048
"""Studies kept live at most (besides those with trials in flight). Up to this many studies a
run never compresses one, so small and medium universes pay nothing."""


class StudyCache:
    """Study key → its search object, live or compressed.

    Args:
        busy: whether a study has trials in flight (such a study is never compressed: its
            asked Optuna trials must stay the same objects until they are told).
        hot: idle studies kept live, most recently used first.
    """

    def __init__(self, busy: Callable[[str], bool], hot: int = DEFAULT_HOT) -> None:
        self.busy = busy
        self.hot = max(0, hot)
        self.live: OrderedDict[str, Any] = OrderedDict()
        self.cold: dict[str, bytes] = {}
        self.compressions = 0
        self.revivals = 0

    def __len__(self) -> int:
        return len(self.live) + len(self.cold)

    def __contains__(self, key: str) -> bool:
        return key in self.live or key in self.cold

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def keys(self) -> list[str]:
        return [*self.live, *self.cold]

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every study, revived (for inspection and tests: at a large universe this brings them
        all back into memory until the next :meth:`settle`)."""
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
        """The live search object of ``key`` (revived if it was compressed), now most recent."""
        search = self.live.get(key)
        if search is None:
            search = pickle.loads(zlib.decompress(self.cold.pop(key)))
            self.live[key] = search
            self.revivals += 1
        self.live.move_to_end(key)
        return search

    def settle(self) -> None:
        """Compress the least recently used idle studies beyond ``hot``."""
        if len(self.live) <= self.hot:
            return
        for key in list(self.live):
            if len(self.live) <= self.hot:
                break
            if not self.busy(key):
                self.cold[key] = zlib.compress(pickle.dumps(self.live.pop(key), pickle.HIGHEST_PROTOCOL), 1)
                self.compressions += 1

    def stats(self) -> dict[str, int]:
        return {"live": len(self.live), "compressed": len(self.cold),
                "compressed_bytes": sum(map(len, self.cold.values())),
                "compressions": self.compressions, "revivals": self.revivals}
