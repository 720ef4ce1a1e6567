"""Is a winner better than the default, the naive baseline and luck? Tests on per-window errors.

Every test here takes per-window absolute return errors (``Scores.errors``: one
``|predicted return - actual return|`` per window, in window order; lower is better), so it can
be recomputed from stored results without running a model. Pure numpy/scipy/arch; no Ray.

* :func:`diebold_mariano`: is the winner's mean absolute error lower than another forecast's on
  the same windows? Diebold–Mariano with the Harvey–Leybourne–Newbold small-sample correction,
  a HAC variance with lag ``horizon - 1`` (rectangular weights as HLN, or Newey–West/Bartlett),
  Student t with ``n - 1`` degrees of freedom; one-sided (alternative: the winner's error is
  lower).
* :func:`t_interval`: the interval of the mean error difference from the test's own HAC standard
  error and t quantile (90 % two-sided: below 0 exactly when the one-sided p < 5 %), and
  :func:`minimum_detectable_edge`: the true edge the test finds with 80 % power.
* :func:`bootstrap_ci`: a circular block bootstrap percentile interval (kept for comparison; it
  covered 89 % at 20 windows and could contradict the test, so results use :func:`t_interval`).
* :func:`spa_test`: Hansen's SPA and White's Reality Check (``arch.bootstrap.SPA``): does the
  best of all a study's trials beat the baseline by more than the best of that many tries would
  by luck? Null below :data:`SPA_MIN_WINDOWS` validation windows, where its size is not 5 %.
* :func:`model_confidence_set`: Hansen's Model Confidence Set (``arch.bootstrap.MCS``): which
  candidates cannot be told apart from the best.
* :func:`pbo`: the probability of backtest overfitting by combinatorially symmetric
  cross-validation (Bailey, Borwein, López de Prado & Zhu).
* :func:`winner_significance`: all of it for one winner, as the ``significance`` dict of its
  result file. Values that cannot be computed are None with a reason, never NaN or inf.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
"""Level of the one-sided tests a decision uses (``promote --only-significant``)."""
CI_LEVEL = 1 - 2 * ALPHA
"""Two-sided level of the t interval of the mean error difference: 90 %, so that its upper end
is the one-sided 95 % bound of the Diebold–Mariano test at :data:`ALPHA`: the interval lies
entirely below 0 exactly when p < ALPHA."""
MCS_ALPHA = 0.10
"""Size of the Model Confidence Set: members are the candidates not eliminated at 10 %, i.e. a
90 % confidence set of the best (Hansen, Lunde & Nason report 75 % and 90 % sets)."""
REPS = 1000
"""Bootstrap replications of the CI, SPA/Reality Check and MCS."""
MIN_WINDOWS = 5
"""Fewest windows for a Diebold–Mariano test, a CI, SPA or an MCS."""
PBO_BLOCKS = 8
"""Most blocks CSCV cuts the validation windows into (C(8, 4) = 70 splits)."""
ALTERNATIVE = "one-sided: the winner's mean absolute return error is lower"
SPA_MIN_WINDOWS = 120
"""Fewest validation windows at which SPA/Reality Check are reported. Below it their size is
not what they claim (bench/bench_spa_size.py: bench/results/spa_size.json), so they are null
with :data:`SPA_UNCALIBRATED` as the reason rather than a p-value that rejects too often."""
SPA_UNCALIBRATED = ("not calibrated at {n} validation windows: SPA's size was measured above 5 % "
                    "below " + str(SPA_MIN_WINDOWS) + " windows (bench/results/spa_size.json)")
SPA_SIZE = {20: 0.15, 40: 0.09, 60: 0.105, 120: 0.075, 250: 0.07}
"""SPA's measured rejection rate at 5 % when 20 configs are all exactly as good as the baseline,
by validation window count (bench/bench_spa_size.py, 200 studies each; the Reality Check's was
7.5 %, 7 %, 7.5 %, 6 %, 4.5 %). A result file reports the entry at or below its window count."""
POWER = 0.80
"""Power at which the minimum detectable edge is stated."""


def import_backends() -> None:
    """Import the libraries this module's tests import when first called (SciPy's
    distributions and optimizers, arch's bootstraps, pandas): about 1.5 s of CPU in a fresh
    process, which a caller can pay ahead, while something else waits (see
    :meth:`tuner.engine.collate_tasks.TaskCollator.warm`)."""
    import arch.bootstrap  # noqa: F401
    import pandas  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.stats  # noqa: F401


def block_length(n: int, horizon: int = 1) -> int:
    """Block length of the bootstraps: ``max(horizon, ceil(n ** (1/3)))``.

    ``n ** (1/3)`` is the rate that balances a block bootstrap's bias and variance for a mean
    (Hall, Horowitz & Jing 1995); errors of forecasts ``horizon`` bars ahead overlap for
    ``horizon - 1`` windows, so a block is never shorter than that. 20 windows → 3.
    """
    return max(int(horizon), math.ceil(n ** (1 / 3) - 1e-9))


def _as_errors(values: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    if values is None:
        return None
    return np.asarray(values, dtype=np.float64)


def _finite(value: Any) -> float | None:
    """A float for a result file, or None for NaN/inf/None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------ Diebold–Mariano


KERNELS = ("rectangular", "bartlett")


def dm_statistic(differences: np.ndarray, horizon: int = 1, kernel: str = "rectangular"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Harvey–Leybourne–Newbold corrected Diebold–Mariano statistics and one-sided p-values.

    Args:
        differences: ``(..., n)`` per-window loss differences ``winner - other`` (negative:
            the winner's error is lower); leading axes are independent series (vectorised, so a
            size study over many seeds is one call).
        horizon: forecast horizon ``h``: errors of ``h``-bar forecasts overlap, so the long-run
            variance adds the first ``h - 1`` autocovariances (a HAC variance with lag ``h - 1``).
        kernel: their weights. ``rectangular`` (weight 1, as Diebold–Mariano and HLN; where
            that variance comes out <= 0 the Bartlett one is used) or ``bartlett``
            (Newey–West, weights ``1 - k/h``, never negative). Rectangular is the default
            because it is the estimator HLN's correction was derived for and is unbiased for
            the MA(h-1) differences of ``h``-step forecasts, whereas Bartlett at lag ``h - 1``
            halves the first autocovariance: on 20 windows with MA(1) differences, 5.8 % of
            true nulls are rejected at 5 % with rectangular weights and 7.9 % with Bartlett
            (9.0 % vs 7.2 % at ``h = 3``). At ``h = 1`` both are the plain variance.

    Returns:
        ``(statistic, p_value)`` of shape ``(...)``: ``DM * sqrt((n + 1 - 2h + h(h-1)/n) / n)``
        against Student t with ``n - 1`` degrees of freedom; ``p_value = P(t <= statistic)``,
        small when the winner's error is lower. At ``h = 1`` this is the paired t-test of the
        differences. NaN where the variance is 0 (e.g. identical errors) or ``n <= 2h``.
    """
    d = np.asarray(differences, dtype=np.float64)
    return _dm_from(*hln_standard_error(d, horizon, kernel), d.shape[-1])


def _dm_from(mean: np.ndarray, standard_error: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dm_statistic` from its ``(mean, standard_error)`` over ``n`` windows."""
    from scipy import special

    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = mean / standard_error
    # Student t's CDF itself (what scipy.stats.t.cdf computes, without its ~0.1 ms of
    # argument checks: collation runs six of these tests per study).
    return statistic, special.stdtr(n - 1, statistic)


def hln_standard_error(differences: np.ndarray, horizon: int = 1, kernel: str = "rectangular"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, standard_error)`` of ``differences`` (..., n) as the HLN-corrected
    Diebold–Mariano test uses them: ``sqrt(HAC variance / n) / sqrt(HLN factor)``, so that
    ``mean / standard_error`` is :func:`dm_statistic`'s statistic (Student t, ``n - 1`` degrees
    of freedom). The interval (:func:`t_interval`) and the minimum detectable edge
    (:func:`minimum_detectable_edge`) use the same number, so neither can contradict the test.
    NaN where the test is undefined (no variance, ``n <= 2h``)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r}: unknown; known: {', '.join(KERNELS)}")
    d = np.asarray(differences, dtype=np.float64)
    n = d.shape[-1]
    h = int(horizon)
    mean = d.mean(axis=-1)
    centred = d - mean[..., None]
    gammas = [(centred**2).mean(axis=-1)]
    gammas += [(centred[..., k:] * centred[..., :-k]).sum(axis=-1) / n for k in range(1, h)]
    bartlett = gammas[0] + sum(2.0 * (1.0 - k / h) * gammas[k] for k in range(1, h))
    variance = bartlett
    if kernel == "rectangular":
        rectangular = gammas[0] + sum(2.0 * gammas[k] for k in range(1, h))
        variance = np.where(rectangular > 0, rectangular, bartlett)
    correction = (n + 1 - 2 * h + h * (h - 1) / n) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        # Exactly-equal errors make both the mean and the variance ~0; call that undefined.
        degenerate = variance <= 1e-30 * np.maximum((d**2).mean(axis=-1), 1e-300)
        standard_error = np.where(degenerate | (correction <= 0), np.nan,
                                  np.sqrt(variance / n) / np.sqrt(max(correction, 1e-300)))
    return mean, standard_error


def t_interval(differences: np.ndarray, *, level: float = CI_LEVEL, horizon: int = 1
               ) -> tuple[float, float]:
    """Two-sided ``level`` interval of the mean of ``differences`` (n,): ``mean ± t * se`` with
    the test's standard error (:func:`hln_standard_error`) and quantile of Student t with
    ``n - 1`` degrees of freedom. At ``level = 1 - 2 alpha`` its upper end is below 0 exactly when
    the one-sided test's p < alpha. (NaN, NaN) where the test is undefined."""
    d = np.asarray(differences, dtype=np.float64)
    return _interval_from(*hln_standard_error(d, horizon), len(d), level)


def _interval_from(mean: np.ndarray, se: np.ndarray, n: int, level: float) -> tuple[float, float]:
    """:func:`t_interval` from its ``(mean, se)`` over ``n`` windows."""
    q = _t_quantile(1 - (1 - level) / 2, n - 1)
    return float(mean - q * se), float(mean + q * se)


def minimum_detectable_edge(standard_error: float, windows: int, *, alpha: float = ALPHA,
                            power: float = POWER) -> float:
    """The smallest true mean error reduction (same unit as the differences, > 0) that the
    one-sided test at ``alpha`` finds with probability ``power``, given the test's standard
    error and window count: the edge ``δ`` with ``P(T_{n-1}(δ / se) > t_{1-alpha, n-1}) = power``,
    ``T`` noncentral Student t (the variance is taken as observed). NaN where ``se`` is not
    finite or positive."""
    if not (math.isfinite(standard_error) and standard_error > 0) or windows < 3:
        return math.nan
    return _detectable_noncentrality(windows - 1, alpha, power) * standard_error


@functools.lru_cache(maxsize=256)
def _t_quantile(probability: float, df: int) -> float:
    """Student t's quantile, cached: collation asks it for the same few (level, window count)
    pairs thousands of times, and each scipy call costs ~0.1 ms of argument checks."""
    from scipy import stats

    return float(stats.t.ppf(probability, df))


@functools.lru_cache(maxsize=256)
def _detectable_noncentrality(df: int, alpha: float, power: float) -> float:
    """The noncentrality ``δ / se`` of :func:`minimum_detectable_edge`: it depends on the window
    count alone, so a universe's thousands of tests (mostly one window count) solve it once
    (a root search of ~14 noncentral-t evaluations, ~2 ms)."""
    from scipy import optimize, stats

    critical = stats.t.ppf(1 - alpha, df)

    def shortfall(noncentrality: float) -> float:
        return float(stats.nct.sf(critical, df, noncentrality)) - power

    # Normal approximation brackets the root: the noncentral t needs a little more.
    guess = critical + stats.norm.ppf(power)
    return optimize.brentq(shortfall, 0.0, 4 * guess + 10)


def bootstrap_ci(differences: np.ndarray, *, level: float = CI_LEVEL, reps: int = REPS,
                 block: int | None = None, horizon: int = 1, seed: int | np.random.Generator = 0
                 ) -> tuple[float, float]:
    """Percentile interval of the mean of ``differences`` (n,) by circular block bootstrap,
    blocks of :func:`block_length` windows unless ``block`` is given. Seeded: the same inputs and
    seed give the same interval.

    Written out (vectorised: all replications in one array) rather than taken from
    ``arch.bootstrap.CircularBlockBootstrap``, whose ``conf_int`` calls Python once per
    replication: ~25 ms per interval, four intervals per winner, 1,500 winners in a universe run.
    The resampling scheme is the same (uniform block starts, wrapping at the end)."""
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    size = min(block or block_length(n, horizon), n)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(reps, -(-n // size)))
    index = ((starts[:, :, None] + np.arange(size)) % n).reshape(reps, -1)[:, :n]
    means = d[index].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """The winner against one other forecast on the same windows of one period.

    Attributes:
        statistic: HLN-corrected Diebold–Mariano statistic (negative: the winner's error is lower).
        p_value: one-sided p-value of "the winner's mean absolute error is lower".
        mean_difference: mean of ``winner - other`` per-window absolute return errors (a
            fraction: -0.001 means the winner is 0.1 percentage point of return better per bar).
        ci: two-sided :data:`CI_LEVEL` (90 %) Student t interval of ``mean_difference`` with the
            test's own HAC standard error (:func:`t_interval`): its upper end is the one-sided
            95 % bound, so it lies entirely below 0 exactly when ``p_value`` < :data:`ALPHA`.
        windows: windows compared.
        reason: why statistic/p_value/ci are None (too few windows, identical errors, nothing
            to compare with); None when they are set.
        min_detectable_edge: the true mean error reduction (a fraction, like
            ``mean_difference``, > 0) this test finds with :data:`POWER` probability at
            :data:`ALPHA`, from the observed HAC variance and the window count
            (:func:`minimum_detectable_edge`).
        min_detectable_edge_pct: the same as a percentage of the compared forecast's mean
            absolute return error on these windows: "not significant" reads as "could not see
            an edge below this many % of its error".
    """

    statistic: float | None
    p_value: float | None
    mean_difference: float | None
    ci: tuple[float, float] | None
    windows: int
    reason: str | None = None
    min_detectable_edge: float | None = None
    min_detectable_edge_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"statistic": _finite(self.statistic), "p_value": _finite(self.p_value),
               "mean_difference": _finite(self.mean_difference),
               "ci": [_finite(self.ci[0]), _finite(self.ci[1])] if self.ci else None,
               "ci_level": CI_LEVEL if self.ci else None,
               "windows": self.windows,
               "min_detectable_edge": _finite(self.min_detectable_edge),
               "min_detectable_edge_pct": _finite(self.min_detectable_edge_pct)}
        if self.reason:
            out["reason"] = self.reason
        return out

    def better(self, alpha: float = ALPHA) -> bool:
        """Whether the winner is significantly better at ``alpha`` (one-sided)."""
        return self.p_value is not None and self.p_value < alpha


def missing(reason: str, windows: int = 0) -> Comparison:
    """A comparison that could not be made, saying why."""
    return Comparison(None, None, None, None, windows, reason)


def diebold_mariano(winner: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray, *,
                    horizon: int = 1, level: float = CI_LEVEL, reps: int = REPS,
                    seed: int | np.random.Generator = 0, alpha: float = ALPHA) -> Comparison:  # noqa: ARG001
    """Compare the winner's per-window absolute errors with another forecast's on the same windows:
    the HLN-corrected Diebold–Mariano test (:func:`dm_statistic`), the t interval of the mean
    difference from the same standard error (:func:`t_interval`) and the minimum detectable
    edge (:func:`minimum_detectable_edge`). ``reps`` and ``seed`` are kept for callers; nothing
    here resamples any more (the block-bootstrap percentile interval covered 89 % at 20 windows
    and could exclude 0 where p > 0.05)."""
    w, o = _as_errors(winner), _as_errors(other)
    if len(w) != len(o):
        return missing(f"different windows: {len(w)} winner errors vs {len(o)}", min(len(w), len(o)))
    n = len(w)
    if n < max(MIN_WINDOWS, 2 * horizon + 1):
        return missing(f"too few windows: {n} < {max(MIN_WINDOWS, 2 * horizon + 1)}", n)
    d = w - o
    if not np.all(np.isfinite(d)):
        return missing("non-finite errors", n)
    mean = float(d.mean())
    if np.all(d == 0):
        return Comparison(None, None, 0.0, None, n, "identical errors on every window")
    centre, standard_error = hln_standard_error(d, horizon)  # once: the test, interval and edge share it
    statistic, p_value = _dm_from(centre, standard_error, n)
    if not np.isfinite(statistic):
        return Comparison(None, None, mean, None, n,
                          "the error difference does not vary: the test is undefined")
    ci = _interval_from(centre, standard_error, n, level)
    edge = minimum_detectable_edge(float(standard_error), n, alpha=alpha)
    scale = float(o.mean())
    return Comparison(float(statistic), float(p_value), mean, ci, n, None, edge,
                      100.0 * edge / scale if scale > 0 else None)


# ------------------------------------------------------------------------------ SPA / Reality Check


@dataclass(frozen=True)
class SPAResult:
    """Data-snooping-robust test that the best of many configs beats a benchmark.

    Attributes:
        spa_p_value: Hansen's SPA p-value (consistent recentring, studentised differences).
        reality_check_p_value: White's Reality Check p-value (raw differences, all recentred).
        models: configs tested (those whose error difference with the benchmark varies).
        windows: windows.
        reason: why the p-values are None.
    """

    spa_p_value: float | None
    reality_check_p_value: float | None
    models: int
    windows: int
    reason: str | None = None


def spa_test(benchmark: Sequence[float] | np.ndarray, models: np.ndarray, *, horizon: int = 1,
             reps: int = REPS, seed: int = 0, calibrated_only: bool = True) -> SPAResult:
    """Hansen's SPA and White's Reality Check of ``models`` against ``benchmark``.

    Args:
        benchmark: (n,) the benchmark's per-window errors (the naive baseline).
        models: (n, k) every config's per-window errors on the same windows (a study's trials).
        horizon, reps, seed: stationary bootstrap with mean block :func:`block_length`.

    arch 8's ``SPA`` computes its p-values from the raw mean loss differences whatever its
    ``studentize`` flag says. Hansen's SPA studentises each config's difference, so that a
    noisy config cannot dominate the maximum; we therefore hand arch the differences already
    divided by their standard deviation (the benchmark then is 0). Any fixed positive scaling
    leaves the bootstrap test valid; this one is Hansen's. The Reality Check is arch's ``upper``
    p-value on the raw differences, which is White's test.
    """
    from arch.bootstrap import SPA

    b = _as_errors(benchmark)
    m = np.asarray(models, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    n = len(b)
    if m.shape[0] != n:
        return SPAResult(None, None, m.shape[1], n, f"different windows: benchmark {n}, models {m.shape[0]}")
    if n < MIN_WINDOWS:
        return SPAResult(None, None, m.shape[1], n, f"too few windows: {n} < {MIN_WINDOWS}")
    if calibrated_only and n < SPA_MIN_WINDOWS:
        return SPAResult(None, None, m.shape[1], n, SPA_UNCALIBRATED.format(n=n))
    diff = b[:, None] - m  # > 0 where the config's error is lower
    spread = diff.std(axis=0)
    varies = spread > 1e-12 * np.maximum(np.abs(diff).max(axis=0), 1e-300)
    if not varies.any():
        return SPAResult(None, None, 0, n, "no config's error difference with the baseline varies")
    diff, spread = diff[:, varies], spread[varies]
    block = block_length(n, horizon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arch warns about its default block length; ours is set
        spa = SPA(np.zeros(n), -diff / spread, block_size=block, reps=reps, seed=seed)
        spa.compute()
        check = SPA(np.zeros(n), -diff, block_size=block, reps=reps, seed=seed)
        check.compute()
    return SPAResult(_finite(spa.pvalues["consistent"]), _finite(check.pvalues["upper"]),
                     int(varies.sum()), n)


def spa_size(windows: int) -> float | None:
    """SPA's measured rejection rate at 5 % under the null (:data:`SPA_SIZE`) at the largest
    simulated window count not above ``windows``; None below the smallest."""
    known = [n for n in sorted(SPA_SIZE) if n <= windows]
    return SPA_SIZE[known[-1]] if known else None


# ------------------------------------------------------------------------------ Model Confidence Set


@dataclass(frozen=True)
class MCSResult:
    """Hansen's Model Confidence Set over named candidates.

    Attributes:
        members: the candidates in the set (cannot be told apart from the best at ``alpha``),
            in the order given.
        p_values: each candidate's MCS p-value (in the set when >= ``alpha``).
        alpha: the size.
        windows: windows.
        reason: why members is None.
    """

    members: tuple[str, ...] | None
    p_values: Mapping[str, float] | None
    alpha: float
    windows: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"members": list(self.members) if self.members is not None else None,
                               "p_values": dict(self.p_values) if self.p_values is not None else None,
                               "alpha": self.alpha, "windows": self.windows}
        if self.reason:
            out["reason"] = self.reason
        return out


def model_confidence_set(candidates: Mapping[str, Sequence[float] | np.ndarray], *, alpha: float = MCS_ALPHA,
                         horizon: int = 1, reps: int = REPS, seed: int = 0) -> MCSResult:
    """The Model Confidence Set (``arch.bootstrap.MCS``, range statistic ``T_R``, stationary
    bootstrap) of ``candidates``: name → (n,) per-window errors on the same windows.

    Candidates with exactly the same errors as an earlier one (a regime rule that always picks
    one member) are tested once and share its fate and p-value: arch cannot rank a candidate
    against its own copy.
    """
    from arch.bootstrap import MCS

    names = list(candidates)
    arrays = [_as_errors(candidates[k]) for k in names]
    n = len(arrays[0]) if arrays else 0
    if len(names) < 2:
        return MCSResult(None, None, alpha, n, f"{len(names)} candidate(s): nothing to compare")
    if any(len(a) != n for a in arrays):
        return MCSResult(None, None, alpha, n, "candidates scored on different windows: "
                         + ", ".join(f"{k} {len(a)}" for k, a in zip(names, arrays, strict=True)))
    if n < MIN_WINDOWS:
        return MCSResult(None, None, alpha, n, f"too few windows: {n} < {MIN_WINDOWS}")
    copy_of: dict[str, str] = {}
    distinct: list[str] = []
    for name, a in zip(names, arrays, strict=True):
        twin = next((k for k in distinct if np.array_equal(arrays[names.index(k)], a)), None)
        if twin is None:
            distinct.append(name)
        else:
            copy_of[name] = twin
    if len(distinct) == 1:
        return MCSResult(tuple(names), dict.fromkeys(names, 1.0), alpha, n)
    import pandas as pd

    losses = pd.DataFrame({k: arrays[names.index(k)] for k in distinct})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcs = MCS(losses, size=alpha, reps=reps, block_size=block_length(n, horizon), method="R", seed=seed)
        mcs.compute()
    p = {str(k): float(v) for k, v in mcs.pvalues["Pvalue"].items()}
    p_values = {k: p[copy_of.get(k, k)] for k in names}
    members = tuple(k for k in names if p_values[k] >= alpha)
    return MCSResult(members, p_values, alpha, n)


# ------------------------------------------------------------------------------ PBO (CSCV)


@dataclass(frozen=True)
class PBOResult:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation.

    Attributes:
        value: share of splits where the config best on the in-sample half ranks at or below
            the median of all configs on the other half (logit <= 0); None with ``reason``.
        blocks: blocks the windows were cut into (``S``).
        splits: in-sample/out-of-sample splits evaluated (``C(S, S/2)``).
        configs: configs compared.
        logits: per split ``log(w / (1 - w))``, ``w`` the out-of-sample relative rank of the
            in-sample best (1 = best of all) scaled into (0, 1).
        reason: why value is None.
    """

    value: float | None
    blocks: int
    splits: int
    configs: int
    logits: tuple[float, ...] = ()
    reason: str | None = None


def pbo(errors: np.ndarray, *, max_blocks: int = PBO_BLOCKS) -> PBOResult:
    """PBO of choosing the config with the lowest mean error (Bailey, Borwein, López de Prado &
    Zhu 2017, "The probability of backtest overfitting").

    Args:
        errors: (T, N) per-window errors of N configs on the same T validation windows.
        max_blocks: most blocks ``S``; ``S = min(max_blocks, 2 * (T // 4))``, so every block
            holds at least two windows (20 windows → 8 blocks, 70 splits).

    The windows are cut into ``S`` contiguous blocks (in time order: neighbouring windows are
    correlated). For every choice of ``S/2`` blocks as the in-sample half, the config with the
    lowest in-sample mean error is ranked among all configs by its mean error on the other half
    (rank 1 = worst … N = best, ties averaged); ``w = rank / (N + 1)``. PBO is the share of
    splits with ``w <= 1/2``: how often the in-sample winner is no better than the typical
    config out of sample. About 0 for a truly dominant config; about 1/2 when all are equal.
    """
    from scipy.stats import rankdata

    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 2:
        return PBOResult(None, 0, 0, 0, reason=f"expected a (windows, configs) array, got shape {e.shape}")
    t, n = e.shape
    if n < 2:
        return PBOResult(None, 0, 0, n, reason=f"{n} config(s): nothing to choose among")
    if t < 4:
        return PBOResult(None, 0, 0, n, reason=f"too few windows: {t} < 4 (two blocks of two)")
    if not np.all(np.isfinite(e)):
        return PBOResult(None, 0, 0, n, reason="non-finite errors")
    if np.all(e == e[:, :1]):
        return PBOResult(None, 0, 0, n, reason="every config has the same errors")
    s = min(max_blocks - max_blocks % 2, 2 * (t // 4))
    blocks = np.array_split(np.arange(t), s)
    sums = np.stack([e[b].sum(axis=0) for b in blocks])  # (S, N)
    counts = np.array([len(b) for b in blocks], dtype=np.float64)
    halves = np.array([[i in c for i in range(s)] for c in itertools.combinations(range(s), s // 2)])
    inside = halves @ sums / (halves @ counts)[:, None]  # (splits, N) in-sample mean errors
    outside = ~halves @ sums / (~halves @ counts)[:, None]
    chosen = inside.argmin(axis=1)
    ranks = rankdata(-outside, axis=1)  # lowest out-of-sample error → rank N
    w = ranks[np.arange(len(chosen)), chosen] / (n + 1)
    logits = np.log(w / (1 - w))
    return PBOResult(float(np.mean(logits <= 0)), s, len(halves), n, tuple(float(x) for x in logits))


# ------------------------------------------------------------------------------ one winner


def winner_significance(winner: Mapping[str, Sequence[float] | None],
                        baseline: Mapping[str, Sequence[float] | None],
                        default: Mapping[str, Sequence[float] | None] | None = None, *,
                        trials: np.ndarray | Sequence[Sequence[float]] | None = None,
                        candidates: Mapping[str, Sequence[float]] | None = None,
                        horizon: int = 1, alpha: float = ALPHA, mcs_alpha: float = MCS_ALPHA,
                        reps: int = REPS, seed: int = 0) -> dict[str, Any]:
    """The ``significance`` section of a winner's result file.

    Args:
        winner, baseline, default: per-window errors by period (``"validation"``, ``"test"``;
            a period may be missing or None) of the winner, the naive baseline and the family's
            default config (None when no default was scored), on the same windows.
        trials: (n_validation_windows, n_trials) validation errors of all the study's trials
            (the winner's own column included), for SPA and PBO; None to skip both.
        candidates: name → test-period errors of the symbol's candidates (family winners,
            blend, regime, ``baseline``) for the Model Confidence Set; None to skip it.
        horizon: forecast horizon (HAC lag ``horizon - 1``, block length).
        alpha: level the one-sided tests are judged at; mcs_alpha: the MCS size.
        reps, seed: bootstrap replications and seed (the same inputs and seed give the same dict).

    Returns:
        ``vs_baseline`` / ``vs_default``: per period a :class:`Comparison` dict (statistic,
        p_value, mean_difference, ci, windows, and a reason when they are null); ``spa_p_value``
        and ``reality_check_p_value`` (trials vs the baseline, validation); ``pbo``; ``mcs``
        (members, p_values, alpha; on the test period); ``reasons`` for every top-level null;
        ``settings``. No NaN or inf anywhere: a value that cannot be computed is null.
    """
    reasons: dict[str, str] = {}
    rng = np.random.SeedSequence(seed)
    # One child seed per bootstrap, so adding a test never shifts another's draws.
    seeds = iter(int(s.generate_state(1)[0]) for s in rng.spawn(8))

    def compare(other: Mapping[str, Sequence[float] | None] | None, what: str) -> dict[str, Any]:
        out = {}
        for period in ("validation", "test"):
            s = next(seeds)
            w = winner.get(period)
            o = other.get(period) if other is not None else None
            if w is None or len(w) == 0:
                out[period] = missing(f"no per-window errors of the winner on {period}").to_dict()
            elif o is None or len(o) == 0:
                out[period] = missing(f"no per-window errors of the {what} on {period}").to_dict()
            else:
                out[period] = diebold_mariano(w, o, horizon=horizon, reps=reps, seed=s, alpha=alpha).to_dict()
        return out

    result: dict[str, Any] = {
        "vs_baseline": compare(baseline, "baseline"),
        "vs_default": compare(default, "default config"),
    }

    spa_seed = next(seeds)
    if trials is None or baseline.get("validation") is None:
        spa = SPAResult(None, None, 0, 0, "no per-window validation errors of the study's trials"
                        if trials is None else "no per-window validation errors of the baseline")
    else:
        spa = spa_test(baseline["validation"], np.asarray(trials, dtype=np.float64), horizon=horizon,
                       reps=reps, seed=spa_seed)
    result["spa_p_value"] = spa.spa_p_value
    result["reality_check_p_value"] = spa.reality_check_p_value
    if spa.reason:
        reasons["spa_p_value"] = reasons["reality_check_p_value"] = spa.reason

    overfit = pbo(np.asarray(trials, dtype=np.float64)) if trials is not None else PBOResult(
        None, 0, 0, 0, reason="no per-window validation errors of the study's trials")
    result["pbo"] = _finite(overfit.value)
    if overfit.value is None:
        reasons["pbo"] = overfit.reason or "not computed"

    mcs_seed = next(seeds)
    if candidates is None:
        result["mcs"] = None
        reasons["mcs"] = "no candidates' test-period errors"
    else:
        confidence_set = model_confidence_set(candidates, alpha=mcs_alpha, horizon=horizon, reps=reps,
                                              seed=mcs_seed)
        result["mcs"] = {**confidence_set.to_dict(), "period": "test"}
        if confidence_set.members is None:
            reasons["mcs"] = confidence_set.reason or "not computed"

    result["reasons"] = reasons
    validation = winner.get("validation")
    n_val = len(validation) if validation is not None else 0
    result["settings"] = {
        "alternative": ALTERNATIVE, "alpha": alpha, "ci_level": CI_LEVEL, "mcs_alpha": mcs_alpha,
        "horizon": horizon, "reps": reps, "seed": seed, "block_length": block_length(n_val or 1, horizon),
        "dm_variance": "HAC, lag horizon - 1, rectangular weights (Bartlett where negative)",
        "ci": f"two-sided {CI_LEVEL:.0%} Student t interval (n - 1 df) with the test's HAC standard "
              f"error: entirely below 0 exactly when the one-sided p < {alpha:g}",
        "min_detectable_edge": f"true error reduction found with {POWER:.0%} power by the one-sided "
                               f"test at {alpha:g} (noncentral t, observed HAC variance); _pct: as % "
                               "of the compared forecast's mean absolute return error",
        "spa": {"trials": spa.models, "windows": spa.windows, "period": "validation",
                "min_windows": SPA_MIN_WINDOWS, "size_at_5pct": spa_size(spa.windows)},
        "pbo": {"blocks": overfit.blocks, "splits": overfit.splits, "configs": overfit.configs,
                "period": "validation"},
    }
    return result


def errors_of(result: Mapping[str, Any]) -> tuple[dict[str, list[float] | None], dict[str, list[float] | None]]:
    """``(model, baseline)`` per-window errors by period from a stored result dict
    (``TrialResult.to_dict`` / a winner file); None where a period or its errors are missing."""
    def get(section: Mapping[str, Any] | None) -> list[float] | None:
        errors = (section or {}).get("errors")
        return list(errors) if errors else None

    base = result.get("baseline") or {}
    model = {p: get(result.get(p)) for p in ("validation", "test")}
    reference = {p: get(base.get(p)) for p in ("validation", "test")}
    return model, reference
