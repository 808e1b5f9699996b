"""The global test-mode switch."""

from __future__ import annotations

import threading
from types import TracebackType

from ._numbers import describe

__all__ = ["is_testing", "set_testing"]

_lock = threading.Lock()
_testing = False


def is_testing() -> bool:
    """Return True while test mode is on (backoff waits are skipped)."""
    return _testing


class _TestingContext:
    """Returned by :func:`set_testing`; restores the previous mode on exit."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing
        with _lock:
            _testing = self._previous


def set_testing(testing: bool = True) -> _TestingContext:
    """Turn test mode on or off: with it on, ``retry`` never waits between attempts.

    Decisions (what to retry, when to give up) are unchanged; only the waits
    are skipped. The switch takes effect at once; used as a context manager
    it restores the previous mode on exit::

        with resilient.set_testing(True):
            ...

    Args:
        testing: The new mode.

    Returns:
        A context manager that restores the previous mode.

    Raises:
        TypeError: *testing* is not a bool.
    """
    global _testing
    if not isinstance(testing, bool):
        raise TypeError(f"testing must be a bool, got {describe(testing)}")
    restore = _TestingContext(False)
    switched = False
    try:
        with _lock:
            restore._previous, _testing = _testing, testing
            switched = True
    except BaseException:
        # Interrupted as the lock was let go: the caller will never get
        # `restore`, so undo the switch rather than leave it on.
        if switched:
            with _lock:
                _testing = restore._previous
        raise
    return restore
