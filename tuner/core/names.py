"""Close matches for a name the user typed that is not there (a symbol is its file's stem, so
``AAPL`` misses ``AAPL_1d``): what an error message suggests instead."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

SUGGESTIONS = 3
"""Names an error suggests at most."""


def close_names(wanted: str, known: Iterable[str], limit: int = SUGGESTIONS) -> list[str]:
    """Names of ``known`` that ``wanted`` probably meant, best first: the same name in another
    case, names that hold it as a part split at ``_ - . space`` (``AAPL`` → ``AAPL_1d``,
    ``1d_AAPL``), names that start with it (``AAPLX``), then difflib's close matches (typos)."""
    known = sorted(set(known) - {wanted})
    low = wanted.lower()
    ranked = [k for k in known if k.lower() == low]
    ranked += [k for k in known if low in re.split(r"[_\-. ]+", k.lower()) and k not in ranked]
    ranked += [k for k in known if k.lower().startswith(low) and k not in ranked]
    ranked += [k for k in difflib.get_close_matches(wanted, known, n=limit, cutoff=0.6) if k not in ranked]
    return ranked[:limit]


def did_you_mean(wanted: str, known: Iterable[str], limit: int = SUGGESTIONS) -> str:
    """``"; did you mean AAPL_1d?"`` for an error message, or '' when nothing is close."""
    names = close_names(wanted, known, limit)
    return f"; did you mean {' or '.join(names)}?" if names else ""
