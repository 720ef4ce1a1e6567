"""One family's pooled config: a single config tuned on every symbol at once.

Its study's objective is the mean validation ``pct_return_mae`` over every symbol's validation
windows. The engine tunes it beside the per-symbol studies, then scores the chosen config on each
symbol's validation and test windows (the same windows and seeds as the symbol's own winner), so
the universe-level decision can compare own winner, pooled config and family default per symbol
on identical windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuner.core.trial import TrialResult

WindowDates = Mapping[str, Mapping[str, Sequence[str]]]
"""symbol → period (``"validation"``, ``"test"``) → ISO timestamp of each window's target bar,
in window order: what panel tests cluster on (symbols share market days)."""


@dataclass(frozen=True)
class PooledOutcome:
    """A family's pooled config and its scores per symbol.

    Attributes:
        family: the family.
        config: the chosen config (defaults filled in), as a trial's ``config``.
        validation_pct_return_mae: the pooled objective of that config: the mean over symbols of
            each symbol's validation pct_return_mae.
        trials: completed trials of the pooled study.
        results: symbol → the pooled config scored on that symbol (validation and test).
    """

    family: str
    config: dict[str, Any]
    validation_pct_return_mae: float
    trials: int
    results: Mapping[str, TrialResult]
