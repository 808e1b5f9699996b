"""The global test-mode switch."""

from __future__ import annotations

import threading
from types import TracebackType

__all__ = ["attempts_in_test_mode", "is_testing", "set_testing"]

_lock = threading.Lock()
_testing = False
# (attempts, cap) while test mode sets the attempts, else None. One tuple, so
# a reader sees the two parts of one setting together.
_attempts: tuple[int, bool] | None = None


def is_testing() -> bool:
    """Return True while test mode is on (backoff waits are skipped)."""
    return _testing


def attempts_in_test_mode(attempts: int) -> int:
    """Return how many attempts a retry configured for *attempts* makes now.

    Args:
        attempts: The policy's own ``attempts``.

    Returns:
        *attempts*, unless test mode sets them (``set_testing(True,
        attempts=N)``: N, or at most N with ``cap=True``).
    """
    setting = _attempts  # set only while test mode is on
    if setting is None:
        return attempts
    limit, cap = setting
    return min(limit, attempts) if cap else limit


class _TestingContext:
    """Returned by :func:`set_testing`; restores the previous mode on exit."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, tuple[int, bool] | None]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing, _attempts
        with _lock:
            _testing, _attempts = self._previous


def set_testing(testing: bool = True, *, attempts: int | None = None, cap: bool = False) -> _TestingContext:
    """Turn test mode on or off: with it on, ``retry`` never waits between attempts.

    Decisions (what to retry, when to give up, the delays that
    ``RetryScheduled`` reports) are unchanged; only the waits are skipped.
    As in stamina, *attempts* also sets how many attempts every retry makes
    (``attempts=1``: no retries at all), and ``cap=True`` makes it an upper
    bound instead (a policy configured for fewer keeps its own). The switch
    is global and thread-safe and takes effect at once; used as a context
    manager it restores the previous mode and attempts on exit::

        with resilient.set_testing(True, attempts=2):
            ...

    Args:
        testing: The new mode.
        attempts: In test mode, the attempts every retry makes (int >= 1);
            None keeps each policy's own.
        cap: Make *attempts* a maximum rather than a fixed number.

    Returns:
        A context manager that restores the previous mode.

    Raises:
        TypeError: *testing* or *cap* is not a bool, or *attempts* is not an int.
        ValueError: *attempts* is < 1, or given with ``testing=False``; or
            *cap* is True without *attempts*.
    """
    global _testing, _attempts
    if not isinstance(testing, bool):
        raise TypeError(f"testing must be a bool, got {testing!r}")
    if not isinstance(cap, bool):
        raise TypeError(f"cap must be a bool, got {cap!r}")
    setting: tuple[int, bool] | None = None
    if attempts is not None:
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"attempts must be an int or None, got {type(attempts).__name__} {attempts!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if not testing:
            raise ValueError("attempts only applies in test mode: set_testing(True, attempts=...)")
        setting = (attempts, cap)
    elif cap:
        raise ValueError("cap=True needs attempts=N: the number of attempts to cap at")
    restore = _TestingContext((False, None))
    switched = False
    try:
        with _lock:
            restore._previous = (_testing, _attempts)
            _testing, _attempts = testing, setting
            switched = True
    except BaseException:
        # Interrupted as the lock was let go: the caller will never get
        # `restore`, so undo the switch rather than leave it on.
        if switched:
            with _lock:
                _testing, _attempts = restore._previous
        raise
    return restore
