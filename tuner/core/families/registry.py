"""Which families exist: every :class:`Family` subclass with a ``name`` registers itself.

The built-in families are imported here, so looking a family up by name always finds them;
``base`` never imports its subclasses (that made an import circle).
"""

from __future__ import annotations

from tuner.core.errors import UnknownFamilyError
from tuner.core.families import bootstrap, kronos_ensemble, kronos_standard, toto, toto2  # noqa: F401
from tuner.core.families.base import Family


def family_class(name: str) -> type[Family]:
    """The registered family ``name``; UnknownFamilyError lists the known ones."""
    try:
        return Family._registry[name]
    except KeyError:
        known = ", ".join(sorted(Family._registry))
        raise UnknownFamilyError(f"unknown family {name!r}; known: {known}") from None


def family_names(production_only: bool = True) -> list[str]:
    """Registered family names, sorted; test-only families too when ``production_only`` is False."""
    return sorted(n for n, c in Family._registry.items() if c.production or not production_only)
