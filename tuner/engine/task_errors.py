"""Results of Ray tasks and actor calls, with a task's own error raised as itself."""

from __future__ import annotations

from typing import Any


def get_raising_cause(refs: Any) -> Any:
    """``ray.get(refs)``, raising a task's own error (a JournalError, a DataError naming a file,
    a full disk) rather than Ray's wrapper of it, so that the user reads the message, not a
    remote traceback."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
