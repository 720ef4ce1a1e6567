"""Search spaces as picklable define-by-run callables for Optuna (and Ray Tune's OptunaSearch).

A :class:`SearchSpace` is a frozen dataclass, not a closure: it pickles, so Ray can ship it to
its searcher and restore it on resume. Calling it with an ``optuna.Trial`` suggests every
dimension in order and returns the fixed parameters, which OptunaSearch adds to the config.

Bounds are inclusive, as in Optuna: ``{low: 0.1, high: 0.3}`` may suggest 0.3 itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Dimension:
    """One searched parameter.

    Attributes:
        name: the parameter.
        kind: ``"categorical"``, ``"float"`` or ``"int"``.
        choices: the values of a categorical dimension.
        low, high: inclusive bounds of a numeric dimension.
        log: sample on a log scale (numeric only; needs ``low > 0``).
        step: grid step (numeric only; not with ``log``).
        at_least: name of an earlier dimension whose suggested value raises ``low`` (e.g.
            ``temp_max`` at least ``temperature``), never above ``high``.
        only_if: ``(dimension, values)``: searched only when that earlier dimension took one of
            ``values``; otherwise the parameter is ``otherwise`` and not searched (e.g. Kronos's
            ``top_p`` only matters when ``top_k`` is 0), so TPE never tunes a value that is
            not used and the trial config shows what was used.
        otherwise: the value when ``only_if`` does not hold.
    """

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    at_least: str | None = None
    only_if: tuple[str, tuple[Any, ...]] | None = None
    otherwise: Any = None

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether this dimension is searched, given the earlier dimensions' values."""
        return self.only_if is None or values[self.only_if[0]] in self.only_if[1]

    def suggest(self, trial: optuna.Trial, values: Mapping[str, Any]) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        low = self.low
        if self.at_least is not None:
            low = min(max(low, values[self.at_least]), self.high)
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            text = f"{self.name} ∈ {{{', '.join(map(str, self.choices))}}}"
        else:
            scale = " log" if self.log else ""
            lower = f"max({self.low:g}, {self.at_least})" if self.at_least else f"{self.low:g}"
            text = f"{self.name} {self.kind}{scale} [{lower}, {self.high:g}]"
        if self.only_if is not None:
            name, values = self.only_if
            text += f" if {name} ∈ {{{', '.join(map(str, values))}}}, else {self.otherwise}"
        return text


@dataclass(frozen=True)
class SearchSpace:
    """A family's search space; ``space(trial)`` is an Optuna define-by-run function."""

    family: str
    dimensions: tuple[Dimension, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest the dimensions; return the constants: fixed parameters and the values of
        conditional dimensions that did not apply."""
        values: dict[str, Any] = {}
        unsearched: dict[str, Any] = {}
        for dim in self.dimensions:
            if dim.applies(values):
                values[dim.name] = dim.suggest(trial, values)
            else:
                values[dim.name] = unsearched[dim.name] = dim.otherwise
        return {**self.fixed, **unsearched}

    def sample_config(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every dimension and return the whole trial config (searched + fixed)."""
        fixed = self(trial)
        return {**trial.params, **fixed}

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]
