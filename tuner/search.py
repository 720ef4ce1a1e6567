"""One Ray Tune searcher that runs many Optuna studies at once, one per (symbol, family).

Why one multiplexing searcher rather than one Tuner per study or one ConcurrencyLimiter:

* one Tuner per study runs studies one after another (Tuner.fit blocks) or needs threads that
  Tune does not support, and gives N dashboards' worth of experiments to resume;
* a single ConcurrencyLimiter around one OptunaSearch is one study, not many;
* TPE suggests from the completed history: with many trials of one study in flight it suggests
  blind. So each study keeps at most ``max_concurrent`` trials in flight, while many studies
  together keep the cluster busy.

Each study is a real :class:`ray.tune.search.optuna.OptunaSearch` over its family's define-by-run
space (:class:`tuner.search_space.SearchSpace`) with its own seeded TPE sampler. This class only
routes: which study suggests next (round robin over studies with budget and a free slot), and
whose ``on_trial_complete`` a finished trial goes to. Its whole state, every study's included,
is saved with Tune's experiment checkpoints, so a resumed experiment keeps each study's history.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tuner.search_space import SearchSpace

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per study is noise

METRIC, MODE = "pct_return_mae", "min"


def study_seed(seed: int, index: int) -> int:
    """Each study's TPE seed: distinct per study, reproducible from the experiment seed."""
    return (seed * 1_000_003 + index) % (2**31 - 1)


class StudyMultiplexer(Searcher):
    """Suggests configs ``{"study", "symbol", "family", "params"}`` from many Optuna studies.

    Args:
        spaces: study key (``"AAPL/toto"``) → (symbol, family, search space).
        trials_per_study: suggestions each study makes in total.
        max_concurrent: trials of one study in flight at once.
        seed: experiment seed (each study's TPE seed derives from it and the study's position).
        points_to_evaluate: optional study key → configs to try first (warm start).
    """

    def __init__(self, spaces: Mapping[str, tuple[str, str, SearchSpace]], trials_per_study: int,
                 max_concurrent: int = 2, seed: int = 0,
                 points_to_evaluate: Mapping[str, list[dict]] | None = None) -> None:
        super().__init__(metric=METRIC, mode=MODE)
        self.trials_per_study = trials_per_study
        self.max_concurrent = max_concurrent
        self.keys = list(spaces)
        self.meta = {k: (symbol, family) for k, (symbol, family, _) in spaces.items()}
        self.studies: dict[str, OptunaSearch] = {}
        for index, (key, (_, _, space)) in enumerate(spaces.items()):
            sampler = optuna.samplers.TPESampler(seed=study_seed(seed, index))
            self.studies[key] = OptunaSearch(
                space=space, metric=METRIC, mode=MODE, sampler=sampler, study_name=key,
                points_to_evaluate=list((points_to_evaluate or {}).get(key, [])),
            )
        self.issued = dict.fromkeys(self.keys, 0)
        self.live: dict[str, str] = {}  # trial_id → study key
        self.next_index = 0

    # ---------------------------------------------------------------------- Searcher hooks
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return (metric in (None, METRIC)) and (mode in (None, MODE))

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self.live:  # Tune may ask again for a trial it already holds
            key = self.live[trial_id]
            return self._config(key, self.studies[key].suggest(trial_id))
        if all(n >= self.trials_per_study for n in self.issued.values()):
            return Searcher.FINISHED
        in_flight = self.in_flight()
        for offset in range(len(self.keys)):
            key = self.keys[(self.next_index + offset) % len(self.keys)]
            if self.issued[key] < self.trials_per_study and in_flight[key] < self.max_concurrent:
                self.next_index = (self.next_index + offset + 1) % len(self.keys)
                params = self.studies[key].suggest(trial_id)
                self.issued[key] += 1
                self.live[trial_id] = key
                return self._config(key, params)
        return None  # every study with budget left is at its concurrency limit: wait

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # one report per trial; the completion below is what TPE learns from

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self.live.pop(trial_id, None)
        if key is None:
            log.warning("completion for unknown trial %s ignored", trial_id)
            return
        self.studies[key].on_trial_complete(trial_id, result=result, error=error)

    # ---------------------------------------------------------------------- state
    def in_flight(self) -> dict[str, int]:
        counts = dict.fromkeys(self.keys, 0)
        for key in self.live.values():
            counts[key] += 1
        return counts

    def _config(self, key: str, params: dict[str, Any]) -> dict[str, Any]:
        symbol, family = self.meta[key]
        return {"study": key, "symbol": symbol, "family": family, "params": params}

    def get_state(self) -> dict[str, Any]:
        return {
            "trials_per_study": self.trials_per_study,
            "max_concurrent": self.max_concurrent,
            "keys": self.keys,
            "meta": self.meta,
            "issued": self.issued,
            "live": self.live,
            "next_index": self.next_index,
            # OptunaSearch.save pickles its __dict__ (study, sampler, open trials); same here.
            "studies": {k: s.__dict__.copy() for k, s in self.studies.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        studies = state.pop("studies")
        self.__dict__.update(state)
        for key, attrs in studies.items():
            search = self.studies.get(key) or OptunaSearch.__new__(OptunaSearch)
            search.__dict__.update(attrs)
            self.studies[key] = search

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
