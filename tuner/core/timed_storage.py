"""A :class:`~tuner.core.storage.Storage` that counts the seconds spent writing through it, so a
run can tell its "writing" phase (serialising and storing result files) from the collation
around it without the collation code knowing about timing."""

from __future__ import annotations

import time
from typing import Any

from tuner.core.storage import Storage


class TimedStorage(Storage):
    """The same experiment root as ``storage``; :attr:`write_s` sums the seconds its
    ``write_bytes``/``write_json``/``write_parquet``/``write_parquet_parts`` calls took (serialisation included; a
    write_json counted once, not again for the write_bytes inside it)."""

    def __init__(self, storage: Storage) -> None:  # no super().__init__: the root is resolved
        self.__dict__.update(storage.__dict__)
        self.write_s = 0.0
        self._depth = 0

    def _timed(self, write, *args: Any) -> str:
        self._depth += 1
        start = time.perf_counter()
        try:
            return write(*args)
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.write_s += time.perf_counter() - start

    def write_bytes(self, relative: str, data: bytes) -> str:
        return self._timed(super().write_bytes, relative, data)

    def write_json(self, relative: str, data: Any) -> str:
        return self._timed(super().write_json, relative, data)

    def write_parquet(self, relative: str, frame, row_group_size: int | None = None) -> str:
        return self._timed(super().write_parquet, relative, frame, row_group_size)

    def write_parquet_parts(self, relative: str, schema, parts) -> str:
        return self._timed(super().write_parquet_parts, relative, schema, parts)
