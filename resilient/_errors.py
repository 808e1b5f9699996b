"""Exceptions raised by ``resilient`` itself.

::

    ResilientError(Exception)
    ├── CircuitOpenError          .name  .retry_after
    ├── BulkheadFullError         .name  .retry_after (None)
    ├── RateLimitedError          .name  .retry_after
    └── TimeoutExceededError      .seconds        (also a builtin TimeoutError)

Every rejection raises a fresh object, so tracebacks never grow. Exceptions
raised by the protected function are never wrapped: they propagate as the
same object.
"""

from __future__ import annotations

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "RateLimitedError",
    "ResilientError",
    "TimeoutExceededError",
]


class ResilientError(Exception):
    """Base class of every exception this library raises itself."""


class CircuitOpenError(ResilientError):
    """A circuit breaker rejected the call without calling the function.

    Attributes:
        name: The breaker's name, or None.
        retry_after: Seconds until the breaker lets a probe through, or None
            when that is unknown (an isolated breaker).
    """

    name: str | None
    retry_after: float | None

    def __init__(self, name: str | None = None, retry_after: float | None = None) -> None:
        self.name = name
        self.retry_after = retry_after
        label = f"circuit {name!r}" if name else "circuit"
        if retry_after is None:
            msg = f"{label} is open"
        else:
            msg = f"{label} is open; retry after {retry_after:.3f}s"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[CircuitOpenError], tuple[str | None, float | None]]:
        return (type(self), (self.name, self.retry_after))


class BulkheadFullError(ResilientError):
    """A bulkhead rejected the call: no free slot and no room (or time) to wait.

    Attributes:
        name: The bulkhead's name, or None.
        retry_after: Always None: a bulkhead cannot tell when a slot frees.
    """

    name: str | None
    retry_after: float | None

    def __init__(self, name: str | None = None, reason: str = "full") -> None:
        self.name = name
        self.retry_after = None
        self.reason = reason
        label = f"bulkhead {name!r}" if name else "bulkhead"
        super().__init__(f"{label} is {reason}")

    def __reduce__(self) -> tuple[type[BulkheadFullError], tuple[str | None, str]]:
        return (type(self), (self.name, self.reason))


class RateLimitedError(ResilientError):
    """A rate limiter rejected the call: no permit now, and none soon enough to wait for.

    Attributes:
        name: The limiter's name, or None.
        retry_after: Seconds until a permit would be free for this call
            (``retry`` waits at least that long before trying again).
    """

    name: str | None
    retry_after: float | None

    def __init__(self, name: str | None = None, retry_after: float | None = None) -> None:
        # The message is formatted when it is read, not on every rejection: a
        # saturated limiter rejects often, and formatting costs more than the
        # rest of the rejection. (``args`` holds the two values.)
        self.name = name
        self.retry_after = retry_after

    def __str__(self) -> str:
        label = f"rate limit {self.name!r}" if self.name else "rate limit"
        if self.retry_after is None:
            return f"{label} exceeded"
        return f"{label} exceeded; retry after {self.retry_after:.3f}s"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[type[RateLimitedError], tuple[str | None, float | None]]:
        return (type(self), (self.name, self.retry_after))


class TimeoutExceededError(ResilientError, TimeoutError):
    """A ``timeout`` policy expired and cancelled the work it guarded.

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches
    it. ``__cause__`` is the ``CancelledError`` that interrupted the work.

    Attributes:
        seconds: The length of the timeout whose deadline passed: the
            policy's own, or that of an enclosing (or inherited) deadline
            that cut it short.
    """

    seconds: float

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"timed out after {seconds:g}s")

    def __reduce__(self) -> tuple[type[TimeoutExceededError], tuple[float]]:
        return (type(self), (self.seconds,))
