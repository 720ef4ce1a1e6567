"""Champion/challenger on new bars: the forward ledger and its sequential test.

When the data holds bars after an experiment's test period (a daily append), each new bar is
forecast (horizon 1, context bars ``< t`` only, the experiment's seed and window rule) by

* the **champion**: the production config ``configs/best/<SYMBOL>.json`` (or, when the symbol
  has none, the decided family's default config, ``champion_source`` says which), and
* the **challenger**: the experiment's decided config (:mod:`tuner.decisions.decided`),

and one row per symbol, bar and config is appended to ``forward/ledger.parquet`` in the
experiment's storage. A config is identified by ``config_id`` (a hash of family and config), so
re-running scores only (symbol, bar, config) triples not yet in the ledger: idempotent, and a
promotion (a new champion) starts its own rows. The ledger is rewritten whole and atomically
(:class:`~tuner.core.storage.Storage`), never appended in place. The per-bar error differences of
the current champion and challenger feed the always-valid sequential test
(:mod:`tuner.core.statistics.sequential`), which can be read after every bar: the challenger is proven
``better``, proven ``worse``, or ``undecided``. ``forward/status.json`` holds the verdicts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.core import strict_json
from tuner.core.config import load_family_config
from tuner.core.data import load_dataset
from tuner.core.errors import ConfigError
from tuner.core.statistics.sequential import ALPHA, BETTER, SequentialResult, sequential_test
from tuner.core.storage import Storage
from tuner.decisions.bar_forecasts import Forecasters, experiment_context_length, target_batch
from tuner.decisions.decided import DERIVED_FAMILIES, decided_configs, locate_test_end, read_summary
from tuner.decisions.promote import (
    PROMOTE,
    SKIP,
    Promotion,
    apply_promotions,
    best_dir,
    plan_promotions,
)

LEDGER = "forward/ledger.parquet"
STATUS = "forward/status.json"
CHAMPION, CHALLENGER = "champion", "challenger"
LEDGER_COLUMNS = ("symbol", "timestamp", "role", "family", "config", "config_id", "champion_source",
                  "prev_close", "forecast", "actual_close", "predicted_return", "actual_return", "error",
                  "experiment", "seed", "scored_at")
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Contender:
    """A config scored on new bars. ``source``: ``production`` (configs/best) , ``default`` or
    ``experiment``."""

    role: str
    family: str
    config: Mapping[str, Any]
    source: str

    @property
    def config_json(self) -> str:
        return strict_json.dumps(dict(self.config), sort_keys=True)

    @property
    def config_id(self) -> str:
        return hashlib.sha1(f"{self.family}|{self.config_json}".encode()).hexdigest()[:12]


def champion_for(symbol: str, family: str, configs: str | Path | None) -> Contender:
    """The production config of ``symbol``, or the default config of ``family`` when there is none.

    Raises:
        ConfigError: the production file is not valid JSON or lacks family/config.
    """
    path = best_dir(configs) / f"{symbol}.json"
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            return Contender(CHAMPION, str(doc["family"]), dict(doc["config"]), "production")
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not a production config with family and config ({e})") from e
    default = load_family_config(family, configs).default
    if default is None:
        raise ConfigError(f"{symbol}: no production config in {path.parent} and family {family} has no default")
    return Contender(CHAMPION, family, dict(default), "default")


def read_ledger(storage: Storage) -> pd.DataFrame:
    """The ledger (empty with its columns when there is none yet)."""
    if storage.exists(LEDGER):
        return storage.read_parquet(LEDGER)
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "timestamp" else object)
                         for c in LEDGER_COLUMNS})


def score_new_bars(bars, contender: Contender, test_end: int, windows: Mapping[str, Any], seed: int,
                   done: set, forecasters: Forecasters, experiment: str, now: str) -> pd.DataFrame:
    """Ledger rows of ``contender`` for every bar after ``test_end`` whose timestamp is not in
    ``done`` (timestamps already scored for this config)."""
    times = bars.timestamps
    targets = np.array([t for t in range(test_end + 1, len(bars)) if times[t] not in done], dtype=np.int64)
    if not targets.size:
        return pd.DataFrame(columns=list(LEDGER_COLUMNS))
    length = experiment_context_length(forecasters.context(contender.family), test_end, windows)
    batch = target_batch(bars, targets, length, "forward")
    predicted = forecasters.predicted_returns(contender.family, contender.config, batch, seed)
    actual = batch.actual_return
    return pd.DataFrame({
        "symbol": bars.symbol, "timestamp": times[targets], "role": contender.role,
        "family": contender.family, "config": contender.config_json, "config_id": contender.config_id,
        "champion_source": contender.source if contender.role == CHAMPION else None,
        "prev_close": batch.prev_close, "forecast": batch.prev_close * (1 + predicted),
        "actual_close": batch.actual_close, "predicted_return": predicted, "actual_return": actual,
        "error": np.abs(predicted - actual), "experiment": experiment, "seed": seed, "scored_at": now})


def paired_differences(ledger: pd.DataFrame, symbol: str, champion_id: str, challenger_id: str) -> pd.DataFrame:
    """Bars scored by both configs, in time order: ``timestamp, champion, challenger, difference``
    (champion error − challenger error; > 0 favours the challenger)."""
    part = ledger[ledger["symbol"] == symbol]
    a = part[part["config_id"] == champion_id].drop_duplicates("timestamp").set_index("timestamp")["error"]
    b = part[part["config_id"] == challenger_id].drop_duplicates("timestamp").set_index("timestamp")["error"]
    both = pd.concat({"champion": a, "challenger": b}, axis=1, join="inner").sort_index()
    both["difference"] = both["champion"] - both["challenger"]
    return both.reset_index()


def run_forward(experiment: str, storage_root: str = "results", *, data: str | Path | None = None,
                configs: str | Path | None = None, symbols: list[str] | None = None,
                device: str | None = None, alpha: float = ALPHA, echo: Echo | None = None) -> dict[str, Any]:
    """Score every new bar (see the module docstring), update the ledger and return the status
    document (also written to ``forward/status.json``)."""
    say = echo or (lambda line: None)
    storage = Storage(storage_root, experiment)
    results = read_summary(storage)
    summary = results.document
    windows = summary.get("windows") or {"val_windows": 20, "test_windows": 20, "horizon": 1}
    seed = int(summary.get("seed", 0))
    decided = decided_configs(results, symbols)
    dataset = load_dataset(data or summary.get("data"), symbols=list(decided))
    ledger = read_ledger(storage)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new_rows, status, notes = [], {}, []
    with Forecasters(summary, configs, device, echo) as forecasters:
        for symbol, choice in decided.items():
            if symbol not in dataset.bars:
                notes.append(f"{symbol}: {dataset.errors.get(symbol, 'not in the data')}")
                continue
            bars = dataset.get(symbol)
            result_path = f"{choice.best_family}/{symbol}.json"
            result = storage.read_json(result_path) if storage.exists(result_path) else {}
            test_end = locate_test_end(bars, summary, ((result.get("baseline") or {}).get("test") or {}).get("errors"),
                                       int(windows["test_windows"]))
            challenger = Contender(CHALLENGER, choice.family, choice.config, "experiment")
            champion = champion_for(symbol, choice.family, configs)
            contenders = [champion, challenger]
            skipped = [c for c in contenders if c.family in DERIVED_FAMILIES]
            if skipped:
                notes.append(f"{symbol}: {skipped[0].role} is a derived candidate ({skipped[0].family}), "
                             "not forecast in-process; not scored")
                continue
            for contender in contenders:
                mine = ledger[(ledger["symbol"] == symbol) & (ledger["config_id"] == contender.config_id)]
                done = set(mine["timestamp"].to_numpy(dtype="datetime64[ns]"))
                rows = score_new_bars(bars, contender, test_end, windows, seed, done, forecasters, experiment, now)
                if len(rows):
                    new_rows.append(rows)
                    say(f"{symbol}: {len(rows)} new bar(s) scored for the {contender.role}")
            status[symbol] = {"champion": {"family": champion.family, "config_id": champion.config_id,
                                           "source": champion.source},
                              "challenger": {"family": challenger.family, "config_id": challenger.config_id,
                                             "choice": choice.choice},
                              "new_bars": int(len(bars) - 1 - test_end)}
    if new_rows:
        ledger = pd.concat([ledger, *new_rows], ignore_index=True)
        ledger = ledger.sort_values(["symbol", "timestamp", "role"], kind="stable").reset_index(drop=True)
        storage.write_parquet(LEDGER, ledger)
    for symbol, entry in status.items():
        pairs = paired_differences(ledger, symbol, entry["champion"]["config_id"], entry["challenger"]["config_id"])
        result = sequential_test(pairs["difference"].to_numpy(), alpha)
        if entry["champion"]["config_id"] == entry["challenger"]["config_id"]:
            result = replace(result, reason="the challenger is the production config already")
        entry["test"] = result.to_dict()
        entry["champion_mean_error"] = float(pairs["champion"].mean()) if len(pairs) else None
        entry["challenger_mean_error"] = float(pairs["challenger"].mean()) if len(pairs) else None
    document = {"experiment": experiment, "updated_at": now, "alpha": alpha, "ledger_rows": int(len(ledger)),
                "added_rows": int(sum(len(r) for r in new_rows)), "notes": notes, "symbols": status,
                "test": "always-valid p-value of the scale-invariant normal-mixture Bayes factor on "
                        "per-bar champion − challenger absolute return errors (tuner/core/statistics/sequential.py)"}
    storage.write_json(STATUS, document)
    return document


def forward_verdicts(experiment: str, storage_root: str = "results", configs: str | Path | None = None,
                     alpha: float = ALPHA) -> dict[str, tuple[SequentialResult, str]]:
    """Per symbol with ledger rows: the sequential test of the current champion (production) vs
    the experiment's decided config, and the decided config's ``config_id``. Read from the
    ledger only (no forecasting)."""
    storage = Storage(storage_root, experiment)
    results = read_summary(storage)
    ledger = read_ledger(storage)
    out = {}
    for symbol, choice in decided_configs(results).items():
        if choice.family in DERIVED_FAMILIES or not (ledger["symbol"] == symbol).any():
            continue
        challenger = Contender(CHALLENGER, choice.family, choice.config, "experiment")
        champion = champion_for(symbol, choice.family, configs)
        pairs = paired_differences(ledger, symbol, champion.config_id, challenger.config_id)
        out[symbol] = (sequential_test(pairs["difference"].to_numpy(), alpha), challenger.config_id)
    return out


def promote_from_forward(experiment: str, storage_root: str = "results", configs: str | Path | None = None,
                         *, alpha: float = ALPHA, dry_run: bool = False, force: bool = False,
                         echo: Echo = print) -> list[Promotion]:
    """Promote only the symbols whose challenger the forward test proved better than production.

    Every other symbol is returned as skipped with its verdict. A proven challenger whose
    decided config is not what promotion would write (the summary's winner) is held back too.
    """
    verdicts = forward_verdicts(experiment, storage_root, configs, alpha)
    proven = sorted(s for s, (r, _) in verdicts.items() if r.verdict == BETTER)
    held = [Promotion(s, SKIP, f"forward test: {r.verdict} after {r.bars} bars (p {r.p_value:.3g})"
                      + (f"; {r.reason}" if r.reason else ""), best_dir(configs) / f"{s}.json")
            for s, (r, _) in sorted(verdicts.items()) if r.verdict != BETTER]
    if not proven:
        return held
    plan = plan_promotions(experiment, storage_root, configs, proven, force=force, dry_run=dry_run)
    checked = []
    for p in plan:
        challenger_id = verdicts[p.symbol][1]
        doc = p.document or {}
        written = Contender(CHALLENGER, str(doc.get("family")), dict(doc.get("config") or {}), "experiment")
        if p.action == PROMOTE and written.config_id != challenger_id:
            p = replace(p, action=SKIP, reason="the config promotion would write is not the one the forward "
                        "test scored (decision differs from the winner)")
        checked.append(p)
    for p in checked:
        if p.diff and p.action == PROMOTE:
            echo(p.diff.rstrip("\n"))
    done = checked if dry_run else apply_promotions(checked)
    return done + held
