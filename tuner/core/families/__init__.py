"""Model families: the weights-free test family and the three tuned ones (Toto, Kronos ×2).

A new family is a module here with a :class:`Family` subclass; importing it from
``registry`` makes ``family_class(name)`` find it.
"""

from tuner.core.families.base import Family, Forecast, Param
from tuner.core.families.registry import family_class, family_names

__all__ = ["Family", "Forecast", "Param", "family_class", "family_names"]
