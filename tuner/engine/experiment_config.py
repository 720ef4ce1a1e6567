"""The experiment config (``configs/experiments/*.yaml``): what to tune, where, with what.

Every field can be overridden on the command line (``tuner run --trials 50 ...``). Validation
happens here, before Ray starts, with errors naming the file and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tuner.core.config import check_keys, configs_dir, read_yaml
from tuner.core.errors import ConfigError
from tuner.core.families.registry import family_class
from tuner.core.models.weights import WeightsSource
from tuner.core.windows import WindowSpec
from tuner.engine.pooled_study import POOLED_SYMBOLS

DEFAULT_EXPERIMENT = "sample"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class FamilyResources:
    """Ray resources of one family's model actors (``None`` = chosen from the cluster).

    Attributes:
        actors: model actors (each loads the weights once and serves every trial routed to it).
        num_gpus: GPU share of each actor; fractions pack several actors on one GPU.
        num_cpus: CPU share of each actor (also its torch thread count, rounded, at least 1).
        gpu_share: when the family searches several checkpoint sizes, the GPU share of each
            size's actors, as ``(size, share)`` pairs (``gpu_share: {313m: 0.5, 22m: 0.25}``);
            a size not named gets ``num_gpus``, or the family's default share split evenly
            among its sizes. Each size gets ``actors`` actors.
    """

    actors: int | None = None
    num_gpus: float | None = None
    num_cpus: float | None = None
    gpu_share: tuple[tuple[str, float], ...] | None = None

    def share_of(self, size: str) -> float | None:
        return dict(self.gpu_share or ()).get(size)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actors": self.actors, "num_gpus": self.num_gpus, "num_cpus": self.num_cpus}
        if self.gpu_share is not None:  # absent unless given: stored configs stay as they were
            out["gpu_share"] = dict(self.gpu_share)
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> FamilyResources:
        check_keys(data, {"actors", "num_gpus", "num_cpus", "gpu_share"}, f"{where}.")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value in (None, "auto"):
                continue
            if key == "gpu_share":
                values[key] = _gpu_shares(value, f"{where}.gpu_share")
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
            if key == "actors":
                ok = ok and int(value) == value and value >= 1
            if not ok:
                raise ConfigError(f"{where}.{key}: {value!r} must be a number >= 0 (actors: integer >= 1) or auto")
            values[key] = int(value) if key == "actors" else float(value)
        return cls(**values)


def _gpu_shares(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where}: {value!r} must map checkpoint size → GPU share (e.g. {{313m: 0.5, 22m: 0.25}})")
    out = []
    for size, share in value.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share:
            raise ConfigError(f"{where}.{size}: {share!r} must be a number >= 0 (a GPU share per actor)")
        out.append((str(size), float(share)))
    return tuple(out)


@dataclass(frozen=True)
class ExperimentConfig:
    """One tuning experiment.

    Attributes:
        name: experiment name; its folder is ``<storage>/<name>``.
        data: bar data (folder or file); None = the bundled sample data.
        symbols: symbols to tune; None = every usable symbol in the data. A list applies to
            this config's ``data``: ``tuner run --data`` without ``--symbols`` clears it
            (:meth:`with_data`).
        families: families to tune.
        trials: trials per (symbol, family) study.
        seed: seeds each study's TPE sampler and every trial's sampling (common random numbers:
            all configs of a study are scored on the same random draws).
        windows: validation/test periods and horizon; by default both periods are sized from
            each symbol's history (``windows: auto``, see :mod:`tuner.core.windows`).
        weights: checkpoint sources (see :mod:`tuner.core.models.weights`); None = the published weights.
        resources: per family, the model actors' resources.
        storage: where experiments live: a local folder, a shared filesystem path or a URI
            (``s3://``, ``gs://``).
        max_concurrent_per_study: trials of one study in flight at once (TPE degrades when it
            suggests blind, so keep this small; the cluster stays busy through many studies).
        device: ``auto`` (CUDA when the actor has a GPU), ``cpu`` or ``cuda``.
        autocast_dtype: ``bf16``/``fp16`` autocast on CUDA; None = fp32.
        pending_timeout_s: fail with a clear message when actors or trials wait this long for
            resources that never come.
        address: Ray address to join (``auto``, ``ray://host:10001``); None = start a local Ray.
        bank_max_mb: memory bound of each model actor's shared sample banks (0 = no banks).
        batch_wait_ms: how long a model actor waits to merge concurrent requests (0 = off).
        max_latency_s: a winner must forecast within this many seconds per forecast
            (validation latency); trials slower than that cannot win. None = no limit.
        warm_start_from: a previous experiment (same storage) whose best trials seed each study.
        warm_start_production: also seed each study with ``configs/best/<SYMBOL>.json``.
        warm_start_top_k: previous trials per study used for the warm start.
        pack_size: Optuna trials one Tune trial carries at most (see :mod:`tuner.engine.search`);
            None = chosen from the number of studies and the actors (at most 64).
        pooled: per family, also tune one config pooled over every symbol (a study minimising
            the mean of the symbols' validation pct_return_mae, ``trials`` trials), when the
            experiment has at least two symbols (see :mod:`tuner.engine.pooled_study`).
        pooled_symbols: the pooled study tunes on at most this many of the family's symbols
            (a seeded sample; None = all). Its config is still scored on every symbol.
    """

    name: str = DEFAULT_EXPERIMENT
    data: str | None = None
    symbols: tuple[str, ...] | None = None
    families: tuple[str, ...] = ("toto", "kronos_standard", "kronos_ensemble")
    trials: int = 30
    seed: int = 0
    windows: WindowSpec = field(default_factory=WindowSpec.auto)
    weights: WeightsSource | None = None
    resources: Mapping[str, FamilyResources] = field(default_factory=dict)
    storage: str = "results"
    max_concurrent_per_study: int = 2
    device: str = "auto"
    autocast_dtype: str | None = None
    pending_timeout_s: float = 600.0
    address: str | None = None
    bank_max_mb: int = 512
    batch_wait_ms: float = 5.0
    max_latency_s: float | None = None
    warm_start_from: str | None = None
    warm_start_production: bool = False
    warm_start_top_k: int = 3
    pack_size: int | None = None
    pooled: bool = True
    pooled_symbols: int | None = POOLED_SYMBOLS

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ConfigError(f"name: {self.name!r} must be letters, digits, '.', '_' or '-' (max 100)")
        if not self.families:
            raise ConfigError("families: at least one family is needed")
        for fam in self.families:
            family_class(fam)
        if len(set(self.families)) != len(self.families):
            raise ConfigError(f"families: {list(self.families)} lists a family twice")
        for key, low in (("trials", 1), ("max_concurrent_per_study", 1), ("seed", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key}: {value!r} must be an integer >= {low}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device: {self.device!r} must be auto, cpu or cuda")
        if self.autocast_dtype not in (None, "bf16", "fp16"):
            raise ConfigError(f"autocast_dtype: {self.autocast_dtype!r} must be bf16, fp16 or null")
        unknown = sorted(set(self.resources) - set(self.families))
        if unknown:
            raise ConfigError(f"resources.{unknown[0]}: not one of the families {list(self.families)}")
        if self.max_latency_s is not None and not self.max_latency_s > 0:
            raise ConfigError(f"max_latency_s: {self.max_latency_s!r} must be > 0 seconds per forecast")
        if self.pack_size is not None and (isinstance(self.pack_size, bool)
                                           or not isinstance(self.pack_size, int) or self.pack_size < 1):
            raise ConfigError(f"pack_size: {self.pack_size!r} must be an integer >= 1 or null (auto)")
        if self.symbols is not None and not self.symbols:
            raise ConfigError("symbols: empty list; omit it to tune every symbol")
        if not isinstance(self.pooled, bool):
            raise ConfigError(f"pooled: {self.pooled!r} must be true or false")
        if self.pooled_symbols is not None and (isinstance(self.pooled_symbols, bool)
                                                or not isinstance(self.pooled_symbols, int)
                                                or self.pooled_symbols < 2):
            raise ConfigError(f"pooled_symbols: {self.pooled_symbols!r} must be an integer >= 2 or null (all)")

    @property
    def weights_source(self) -> WeightsSource:
        return self.weights or WeightsSource()

    def resources_for(self, family: str) -> FamilyResources:
        return self.resources.get(family, FamilyResources())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights"] = self.weights.to_dict() if self.weights else None
        data["symbols"] = list(self.symbols) if self.symbols else None
        data["families"] = list(self.families)
        data["windows"] = self.windows.to_dict()
        data["resources"] = {f: r.to_dict() for f, r in self.resources.items()}
        return data

    def with_data(self, data: str | None, symbols: tuple[str, ...] | None) -> ExperimentConfig:
        """A copy with the command line's ``--data`` and ``--symbols`` applied.

        The config's ``symbols`` list names symbols of the config's own data, so new ``data``
        given without ``symbols`` tunes every symbol in that data (a folder holding AAPL.csv
        and IBM.csv tunes AAPL and IBM, whatever the config lists); ``symbols`` restricts
        either data.
        """
        if data is not None:
            return replace(self, data=str(data), symbols=symbols)
        return replace(self, symbols=symbols) if symbols is not None else self

    def with_overrides(self, **overrides: Any) -> ExperimentConfig:
        """A copy with the non-None ``overrides`` applied (command-line options)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_TOP_KEYS = {f for f in ExperimentConfig.__dataclass_fields__}


def load_experiment_config(path: str | Path | None = None) -> ExperimentConfig:
    """Load an experiment YAML; None = ``configs/experiments/sample.yaml``.

    A bare name (``monthly``) is looked up in ``configs/experiments/``.
    """
    if path is None:
        file = configs_dir() / "experiments" / f"{DEFAULT_EXPERIMENT}.yaml"
    else:
        file = Path(path)
        if not file.exists() and not file.suffix:
            file = configs_dir() / "experiments" / f"{path}.yaml"
    if not file.is_file():
        raise ConfigError(f"{file}: no such experiment config")
    return parse_experiment_config(read_yaml(file), file)


def parse_windows(windows: Any) -> WindowSpec:
    """``auto``, or a mapping whose ``val_windows``/``test_windows`` are numbers or ``auto``."""
    if windows == "auto":
        return WindowSpec.auto()
    if not isinstance(windows, dict):
        raise ConfigError(f"windows: {windows!r} must be auto or a mapping")
    check_keys(windows, {"val_windows", "test_windows", "horizon", "stability_folds"}, "windows.")
    values = dict(windows)
    for key in ("val_windows", "test_windows"):
        if values.get(key, 0) in ("auto", None):
            values[key] = None
        elif isinstance(values.get(key), str):
            raise ConfigError(f"windows.{key}: {values[key]!r} must be an integer >= 1 or auto")
    return WindowSpec(**values)


def parse_experiment_config(data: Mapping[str, Any], file: Path | str = "<config>") -> ExperimentConfig:
    where = f"{file}: "
    check_keys(data, _TOP_KEYS, where)
    # pooled_symbols: null means "all symbols", not "the default".
    values: dict[str, Any] = {k: v for k, v in data.items() if v is not None or k == "pooled_symbols"}
    try:
        if "windows" in values:
            values["windows"] = parse_windows(values["windows"])
        if "families" in values:
            fams = values["families"]
            values["families"] = tuple([fams] if isinstance(fams, str) else fams)
        if "symbols" in values:
            syms = values["symbols"]
            values["symbols"] = tuple([syms] if isinstance(syms, str) else map(str, syms))
        if "weights" in values:
            w = values["weights"]
            values["weights"] = (WeightsSource.from_mapping(w, "weights") if isinstance(w, dict)
                                 else WeightsSource.parse(str(w), family=None))
        if "resources" in values:
            res = values["resources"]
            if not isinstance(res, dict):
                raise ConfigError("resources: must map family → {actors, num_gpus, num_cpus}")
            values["resources"] = {
                fam: FamilyResources.from_mapping(spec or {}, f"resources.{fam}")
                for fam, spec in res.items()
            }
        for key in ("data", "storage", "address", "name"):
            if key in values:
                values[key] = str(values[key])
        return ExperimentConfig(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from e
    except TypeError as e:
        raise ConfigError(f"{where}{e}") from e
