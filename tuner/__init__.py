"""forecast-tuner: tune Toto and Kronos inference hyperparameters per symbol.

The evaluation core (data → windows → forecasters → aggregation → metrics → trial) runs
without Ray; only ``tuner.experiment`` and the actor wrapper import Ray.
"""

__version__ = "0.1.0"
