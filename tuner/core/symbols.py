"""What a symbol name may be.

A symbol becomes a file name (``<family>/<SYMBOL>.json``, ``configs/best/<SYMBOL>.json``), an
Optuna study name and a line of the terminal, so it is checked once, where data is read
(:mod:`tuner.core.data`), against one stated rule: :data:`SYMBOL_RULE`. The rule keeps every
usual ticker (``AAPL``, ``BRK.B``, ``BTC-USD``, ``^GSPC``, ``EURUSD=X``, ``600519.SH``) and
refuses what could leave a folder or break a line: path separators, ``..``, a leading dot,
control characters (a newline), spaces.
"""

from __future__ import annotations

import re

SYMBOL_MAX_LENGTH = 64
"""The longest symbol accepted, in characters (file names allow 255 bytes; 64 is ample)."""

_ALLOWED = re.compile(r"[A-Za-z0-9._\-^=]+")

SYMBOL_RULE = (f"a symbol is 1 to {SYMBOL_MAX_LENGTH} ASCII letters, digits and '.', '_', '-', '^', '=', "
               "not starting with '.' and without '..'")
"""The rule, as every refusal states it."""


def symbol_problem(symbol: object) -> str | None:
    """Why ``symbol`` breaks :data:`SYMBOL_RULE` (e.g. ``"holds '/'"``), or None when it is valid."""
    if not isinstance(symbol, str):
        return f"is a {type(symbol).__name__}, not text"
    if not symbol:
        return "is empty"
    if len(symbol) > SYMBOL_MAX_LENGTH:
        return f"is {len(symbol)} characters long"
    if symbol.startswith("."):
        return "starts with '.'"
    if ".." in symbol:
        return "holds '..'"
    if not _ALLOWED.fullmatch(symbol):
        bad = sorted({c for c in symbol if not _ALLOWED.fullmatch(c)})
        return "holds " + ", ".join(repr(c) for c in bad)
    return None


def suggest(symbol: str) -> str | None:
    """A valid name close to ``symbol`` (``BTC/USD`` → ``BTC-USD``), or None when none is obvious."""
    candidate = re.sub(r"[^A-Za-z0-9._\-^=]+", "-", symbol.strip()).strip("-.")
    candidate = re.sub(r"\.{2,}", ".", candidate)[:SYMBOL_MAX_LENGTH]
    return candidate if candidate and candidate != symbol and symbol_problem(candidate) is None else None
