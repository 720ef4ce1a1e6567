"""Model families: the weights-free test family and the three tuned ones (Toto, Kronos ×2)."""

from tuner.forecasters.base import Family, Forecast, Param, family_class, family_names

__all__ = ["Family", "Forecast", "Param", "family_class", "family_names"]
