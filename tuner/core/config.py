"""Loading and validating the YAML in ``configs/``: family search spaces (``configs/spaces``).

Errors name the file and the key path, and say what is allowed:
``configs/spaces/toto.yaml: search_space.num_samples.choices[2]: 0 must be >= 1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from tuner.core.errors import ConfigError, TunerError
from tuner.core.families.base import Family
from tuner.core.families.registry import family_class
from tuner.core.models.weights import (
    CHECKPOINT_PARAM,
    DEFAULTS,
    FAMILY_MODEL,
    Checkpoint,
    WeightsSource,
    default_checkpoint,
    parse_checkpoints,
)
from tuner.core.search_space import Dimension, SearchSpace

CONFIGS_ENV = "TUNER_CONFIGS"


def configs_dir(explicit: str | Path | None = None) -> Path:
    """The ``configs/`` folder: ``explicit``, ``$TUNER_CONFIGS``, ``./configs``, or the repo's."""
    candidates = [explicit, os.environ.get(CONFIGS_ENV), Path.cwd() / "configs",
                  Path(__file__).resolve().parents[2] / "configs"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "spaces").is_dir():
            return Path(candidate)
    if explicit:
        raise ConfigError(f"{explicit}: no spaces/ folder in this configs directory")
    raise ConfigError(
        f"no configs/ folder with spaces/ found (looked in ./configs and the repository); "
        f"set ${CONFIGS_ENV} or run from the repository root"
    )


def read_yaml(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as e:
        raise ConfigError(f"{file}: cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class FamilyConfig:
    """A family's search space file.

    Attributes:
        family: the family name.
        context_length: bars of history each window carries.
        space: the search space (dimensions + fixed parameters).
        source: the YAML file it came from.
        default: the family's default config (upstream/production defaults) as a trial would
            record it: every dimension (conditional ones that do not apply at their
            ``otherwise`` value) plus the fixed parameters; None when the file names none.
            Each study scores it first, so tuning is judged against what one had without it.
    """

    family: str
    context_length: int
    space: SearchSpace
    source: Path
    default: Mapping[str, Any] | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    """The sizes the file lists (``checkpoints:``); an experiment naming its own weights for the
    family's model overrides them (:func:`with_space_checkpoints`)."""

    def with_checkpoints(self, listed: tuple[Checkpoint, ...]) -> FamilyConfig:
        """This space searching ``listed`` as the categorical ``checkpoint`` dimension (first),
        with the default config on upstream's default size (or the first listed); one or none
        listed: unchanged."""
        if len(listed) < 2:
            return self
        model = FAMILY_MODEL[self.family]
        dim = Dimension(CHECKPOINT_PARAM, "categorical", choices=tuple(c.name for c in listed))
        space = replace(self.space, dimensions=(dim, *self.space.dimensions))
        default = None if self.default is None else {
            CHECKPOINT_PARAM: default_checkpoint(model, listed).name, **self.default}
        return replace(self, space=space, default=default)

    @property
    def default_point(self) -> dict[str, Any] | None:
        """The default's searched parameters only (what ``optuna.Study.enqueue_trial`` and
        OptunaSearch's ``points_to_evaluate`` take): conditional dimensions that do not apply
        and fixed parameters are left out, as the space supplies them."""
        if self.default is None:
            return None
        values: dict[str, Any] = {}
        point: dict[str, Any] = {}
        for dim in self.space.dimensions:
            values[dim.name] = self.default[dim.name]
            if dim.applies(values):
                point[dim.name] = self.default[dim.name]
        return point


def load_family_config(family: str, directory: str | Path | None = None,
                       weights: WeightsSource | None = None) -> FamilyConfig:
    """Load and validate ``configs/spaces/<family>.yaml``, with the ``checkpoint`` dimension when
    several sizes are searched: ``weights``' sizes for the family's model (an experiment's,
    after :func:`with_space_checkpoints`), or without ``weights`` the file's own list."""
    cls = family_class(family)
    file = configs_dir(directory) / "spaces" / f"{family}.yaml"
    if not file.is_file():
        raise ConfigError(f"{file}: no search space file for family {family!r}")
    config = parse_family_config(read_yaml(file), cls, file)
    listed = weights.family_checkpoints(family) if weights is not None else config.checkpoints
    return config.with_checkpoints(listed)


def with_space_checkpoints(weights: WeightsSource, families: Iterable[str],
                           directory: str | Path | None = None) -> WeightsSource:
    """``weights`` with the sizes each family's space file lists (``checkpoints:``) for models
    the experiment left at their default checkpoint: an experiment naming its own checkpoint or
    sizes for a model keeps them."""
    for family in families:
        model = FAMILY_MODEL.get(family)
        if model is None or weights.checkpoints(model):
            continue
        keys = (model, "kronos_tokenizer") if model == "kronos" else (model,)
        if any(getattr(weights, k) != DEFAULTS[k] for k in keys):
            continue
        listed = load_family_config(family, directory).checkpoints
        if len(listed) > 1:
            weights = weights.with_checkpoints(model, listed)
    return weights


def parse_family_config(data: Mapping[str, Any], cls: type[Family], file: Path) -> FamilyConfig:
    where = f"{file}: "
    check_keys(data, {"family", "context_length", "search_space", "fixed", "default", "checkpoints"}, where)
    if data.get("family", cls.name) != cls.name:
        raise ConfigError(f"{where}family: {data['family']!r} but the file is for {cls.name!r}")
    context = data.get("context_length")
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise ConfigError(f"{where}context_length: {context!r} must be a positive integer")
    raw_space = data.get("search_space") or {}
    fixed = dict(data.get("fixed") or {})
    if not isinstance(raw_space, dict):
        raise ConfigError(f"{where}search_space: must be a mapping of parameter → range")
    dims = []
    for name, spec in raw_space.items():
        dims.append(_dimension(cls, name, spec, f"{where}search_space.{name}", dims))
    both = sorted(set(raw_space) & set(fixed))
    if both:
        raise ConfigError(f"{where}fixed.{both[0]}: also in search_space; keep one")
    for name, value in fixed.items():
        if name not in cls.params:
            raise ConfigError(f"{where}fixed.{name}: unknown parameter for family {cls.name}; "
                              f"known: {', '.join(sorted(cls.params))}")
        cls.params[name].check(name, value, f"{where}fixed.")
    missing = sorted(cls.required - set(raw_space) - set(fixed))
    if missing:
        raise ConfigError(f"{where}search_space.{missing[0]}: required by family {cls.name} "
                          "(search it or set it under fixed)")
    space = SearchSpace(cls.name, tuple(dims), fixed)
    _check_corners(cls, space, where)
    default = _default(cls, space, data["default"], where) if data.get("default") is not None else None
    checkpoints: tuple[Checkpoint, ...] = ()
    if data.get("checkpoints") is not None:
        if cls.name not in FAMILY_MODEL:
            raise ConfigError(f"{where}checkpoints: family {cls.name} loads no weights")
        checkpoints = parse_checkpoints(FAMILY_MODEL[cls.name], data["checkpoints"], f"{where}checkpoints")
    return FamilyConfig(cls.name, context, space, file, default, checkpoints)


def _default(cls: type[Family], space: SearchSpace, raw: Any, where: str) -> dict[str, Any]:
    """Check ``default:`` names a config the space can suggest; return it as a trial records it.

    Every searched dimension must be given; a conditional one whose condition does not hold may
    be left out (it is then its ``otherwise`` value, and any value given must be that one).
    Fixed parameters are not repeated here: they apply to the default as to every trial.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}default: must be a mapping of parameter → value")
    unknown = sorted(set(raw) - set(space.names))
    if unknown:
        extra = " (a fixed parameter: it applies to every trial already)" if unknown[0] in space.fixed else ""
        raise ConfigError(f"{where}default.{unknown[0]}: not a searched dimension{extra}; "
                          f"dimensions: {', '.join(space.names)}")
    values: dict[str, Any] = {}
    for dim in space.dimensions:
        key = f"{where}default.{dim.name}"
        if not dim.applies(values):
            if dim.name in raw and cls.params[dim.name].check("", raw[dim.name], key) != dim.otherwise:
                other = dim.only_if[0]
                raise ConfigError(f"{key}: {raw[dim.name]!r} is never used: {other} is {values[other]!r}, "
                                  f"so {dim.name} is {dim.otherwise!r}; give that or leave it out")
            values[dim.name] = dim.otherwise
            continue
        if dim.name not in raw:
            raise ConfigError(f"{key}: missing; the default names every searched dimension "
                              f"({dim.describe()})")
        value = cls.params[dim.name].check("", raw[dim.name], key)
        if not _suggestible(dim, value, values):
            raise ConfigError(f"{key}: {raw[dim.name]!r} is not a value the space can suggest "
                              f"({dim.describe()})")
        values[dim.name] = value
    config = {**values, **space.fixed}
    try:
        return cls().check_params(config, where=f"{where}default.")
    except TunerError as e:
        raise ConfigError(f"{e} (the default: {config})") from e


def _suggestible(dim: Dimension, value: Any, earlier: Mapping[str, Any]) -> bool:
    """Whether ``dim`` can suggest ``value`` given the earlier dimensions' values (bounds are
    inclusive; ``at_least`` raises the lower bound; a ``step`` grid starts at ``low``)."""
    if dim.kind == "categorical":
        return value in dim.choices
    low = dim.low if dim.at_least is None else min(max(dim.low, earlier[dim.at_least]), dim.high)
    if not low <= value <= dim.high:
        return False
    if dim.step is None:
        return True
    steps = (value - low) / dim.step
    return abs(steps - round(steps)) < 1e-9


def _dimension(cls: type[Family], name: str, spec: Any, where: str, earlier: list[Dimension]) -> Dimension:
    if name not in cls.params:
        raise ConfigError(f"{where}: unknown parameter for family {cls.name}; "
                          f"known: {', '.join(sorted(cls.params))}")
    rule = cls.params[name]
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{choices: [...]}} or {{low: ..., high: ...}}")
    check_keys(spec, {"choices", "low", "high", "log", "step", "type", "at_least", "only_if", "otherwise"},
               f"{where}.")
    condition = _condition(cls, name, spec, where, earlier)
    if "choices" in spec:
        extra = set(spec) - {"choices", "only_if", "otherwise"}
        if extra:
            raise ConfigError(f"{where}: choices cannot be combined with {sorted(extra)}")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: must be a non-empty list")
        checked = tuple(rule.check(f"choices[{i}]", v, f"{where}.") for i, v in enumerate(choices))
        return Dimension(name, "categorical", choices=checked, **condition)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: needs both low and high (or choices)")
    kind = spec.get("type", "int" if rule.kind == "int" else "float")
    if kind not in ("int", "float") or (rule.kind == "int" and kind != "int") or rule.kind == "aggregate":
        raise ConfigError(f"{where}.type: {kind!r} does not fit a {rule.kind} parameter")
    low = rule.check("low", spec["low"], f"{where}.")
    high = rule.check("high", spec["high"], f"{where}.")
    if low > high:
        raise ConfigError(f"{where}: low {low:g} > high {high:g}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}.log: a log scale needs low > 0, got {low:g}")
    step = spec.get("step")
    if step is not None and (log or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}.step: {step!r} must be a positive number and not used with log")
    at_least = spec.get("at_least")
    if at_least is not None and at_least not in [d.name for d in earlier]:
        raise ConfigError(f"{where}.at_least: {at_least!r} must name a dimension listed before it "
                          f"(listed: {', '.join(d.name for d in earlier) or 'none'})")
    return Dimension(name, kind, low=low, high=high, log=log, step=step, at_least=at_least, **condition)


def _condition(cls: type[Family], name: str, spec: Mapping[str, Any], where: str,
               earlier: list[Dimension]) -> dict[str, Any]:
    """``only_if: {dimension: [values]}`` + ``otherwise: value`` → Dimension keyword arguments."""
    if "only_if" not in spec:
        if "otherwise" in spec:
            raise ConfigError(f"{where}.otherwise: only used with only_if")
        return {}
    only_if = spec["only_if"]
    if not isinstance(only_if, dict) or len(only_if) != 1:
        raise ConfigError(f"{where}.only_if: must be one {{dimension: [values]}} pair")
    (other, values), = only_if.items()
    by_name = {d.name: d for d in earlier}
    if other not in by_name:
        raise ConfigError(f"{where}.only_if: {other!r} must name a dimension listed before it "
                          f"(listed: {', '.join(by_name) or 'none'})")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.only_if.{other}: must be a non-empty list of values")
    checked = tuple(cls.params[other].check(f"only_if.{other}[{i}]", v, f"{where}.") for i, v in enumerate(values))
    dim = by_name[other]
    never = [v for v in checked if (v not in dim.choices if dim.kind == "categorical" else not dim.low <= v <= dim.high)]
    if never:
        raise ConfigError(f"{where}.only_if.{other}: {never[0]!r} is never suggested for {other} "
                          f"({dim.describe()}), so this condition could not hold")
    if "otherwise" not in spec:
        raise ConfigError(f"{where}.otherwise: needed with only_if (the value when {other} is not in {values})")
    otherwise = cls.params[name].check("otherwise", spec["otherwise"], f"{where}.")
    return {"only_if": (other, checked), "otherwise": otherwise}


def _check_corners(cls: type[Family], space: SearchSpace, where: str) -> None:
    """Every combination of extreme values must be a valid trial (e.g. samples_per_batch divides)."""
    import itertools

    family = cls()
    options = []
    for dim in space.dimensions:
        if dim.kind == "categorical":
            values = dim.choices
        else:
            values = (dim.low, dim.high) if dim.at_least is None else (dim.high,)
        options.append(values if dim.only_if is None else (*values, dim.otherwise))
    for combo in itertools.islice(itertools.product(*options), 4096):
        params = {**dict(zip(space.names, combo, strict=True)), **space.fixed}
        try:
            family.check_params(params, where=f"{where}")
        except TunerError as e:
            raise ConfigError(f"{e} (for the combination {params})") from e
