"""Exception hierarchy. Every message says where (file, row, key), what, and what is allowed."""


class TunerError(Exception):
    """Root of every error forecast-tuner raises on purpose."""


class DataError(TunerError):
    """Bar data that cannot be used: unreadable file, bad row, too few bars."""


class ConfigError(TunerError):
    """A configuration file, search space or trial parameter that is not valid."""


class UnsafePath(TunerError):
    """A path that would leave its root (``..``, an absolute part, a separator or control
    character inside one name, a symbolic link pointing out): refused before anything is written."""


class AggregationError(ConfigError):
    """An aggregation spec that is unknown or out of range."""


class WeightsError(TunerError):
    """Model weights that cannot be found, downloaded or loaded."""


class UnknownFamilyError(ConfigError):
    """A model family name that is not registered."""


class PromotionRefused(TunerError):
    """The experiment's results may not go to production (tiny weights, unfinished) without force."""


class DamagedFile(ConfigError):
    """A stored file of an experiment (summary.json, progress.json, trials.parquet, ...) that
    cannot be parsed; the message names the file and the way back."""
