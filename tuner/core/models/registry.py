"""A per-process cache of loaded models, so weights are loaded once per process (or Ray actor).

Keys are only what identifies the weights: model kind, sources, device and dtype. Never a
trial parameter: the predecessor keyed Kronos on ``clip`` (a continuous float), loaded a new
copy for nearly every trial and ran out of memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

_models: dict[Hashable, Any] = {}
_loads: list[Hashable] = []
_lock = threading.Lock()


def get_model(key: Hashable, load: Callable[[], Any]) -> Any:
    """The model cached under ``key``, calling ``load()`` the first time only."""
    with _lock:
        if key not in _models:
            log.info("loading model %s (load #%d in this process)", key, len(_loads) + 1)
            _models[key] = load()
            _loads.append(key)
        return _models[key]


def load_count() -> int:
    """How many models this process has loaded (each key counts once)."""
    return len(_loads)



def clear() -> None:
    """Drop every cached model (frees memory; the load count is kept)."""
    with _lock:
        _models.clear()
