"""Warm start: seed each study with what won before, so monthly re-tuning starts from there.

Sources, per (symbol, family) study:

* the production config (``configs/best/<SYMBOL>.json``, written by ``tuner promote``) when its
  family is the study's;
* the ``top_k`` best completed trials of a previous experiment (its ``trials.parquet``) that fit
  the current search space.

Points are handed to the study's OptunaSearch as ``points_to_evaluate``: they are its first
trials (counted in its budget), and TPE learns from their scores like any other trial. Only the
searched parameters are kept, and a point outside the current search space is dropped (logged),
since the space may have changed since.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tuner.core.search_space import Dimension, SearchSpace
from tuner.core.storage import TRIALS_FILE, Storage

log = logging.getLogger(__name__)


def _inside(dim: Dimension, value: Any) -> bool:
    if dim.kind == "categorical":
        return value in dim.choices
    return isinstance(value, (int, float)) and dim.low <= value <= dim.high


def fit_point(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any] | None:
    """The searched parameters of ``config``, or None when one is missing or outside the space."""
    point = {}
    values: dict[str, Any] = {}
    for dim in space.dimensions:
        if not dim.applies(values):  # not searched here: the space supplies its value
            values[dim.name] = dim.otherwise
            continue
        value = config.get(dim.name)
        if value is None or not _inside(dim, value):
            return None
        if dim.at_least is not None and value < values[dim.at_least]:
            return None
        point[dim.name] = values[dim.name] = value
    return point


def warm_start_points(studies: Iterable[tuple[str, str]], spaces: dict[str, SearchSpace], *,
                      previous: Storage | None = None, production: Path | None = None,
                      top_k: int = 3, budget: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Study key (``"AAPL/toto"``) → points to evaluate first, best first, without duplicates."""
    previous_best = _previous_ranked(previous) if previous is not None else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for symbol, family in studies:
        points: list[dict[str, Any]] = []
        where = f"{symbol}/{family}"
        for config in _production(production, symbol, family) if production is not None else []:
            _add(points, spaces[family], config, where)
        taken = 0
        for config in previous_best.get((symbol, family), []):
            if taken >= top_k:
                break
            taken += _add(points, spaces[family], config, where)
        if points:
            out[f"{symbol}/{family}"] = points[:budget] if budget else points
    return out


def _add(points: list[dict[str, Any]], space: SearchSpace, config: dict[str, Any], where: str) -> bool:
    """Append ``config``'s point unless it is outside the space or already there."""
    point = fit_point(space, config)
    if point is None:
        log.info("%s: warm-start config %s is outside the current search space; skipped", where, config)
        return False
    if point in points:
        return False
    points.append(point)
    return True


def _production(folder: Path, symbol: str, family: str) -> list[dict[str, Any]]:
    file = folder / f"{symbol}.json"
    if not file.is_file():
        return []
    data = json.loads(file.read_text())
    return [data["config"]] if data.get("family") == family and isinstance(data.get("config"), dict) else []


def _previous_ranked(storage: Storage) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per study, the completed trials' configs of an earlier experiment, best first."""
    table = storage.read_parquet(TRIALS_FILE)
    table = table[table["status"] == "completed"].sort_values("pct_return_mae", kind="stable")
    ranked: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table.itertuples():
        ranked.setdefault((row.symbol, row.family), []).append(json.loads(row.config))
    return ranked
