"""Exceptions raised by ``resilient`` itself.

::

    ResilientError(Exception)
    ├── CircuitOpenError          .name  .retry_after
    ├── BulkheadFullError         .name  .retry_after (None)
    ├── RateLimitedError          .name  .retry_after
    ├── GateClosedError           .name  .retry_after (None)  .reason
    ├── TimeoutExceededError      .seconds        (also a builtin TimeoutError)
    ├── ConfigError               .errors         (also a builtin ValueError)
    └── FailedResult              .result         (never raised: what a result-triggered
                                                   fallback reports)

Every rejection raises a fresh object, so tracebacks never grow. Exceptions
raised by the protected function are never wrapped: they propagate as the
same object.
"""

from __future__ import annotations

from ._numbers import describe

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "FailedResult",
    "GateClosedError",
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


class FailedResult(ResilientError):
    """A result that ``fallback(on_result=...)`` judged a failure, in an exception's clothes.

    Never raised by the library. When a fallback replaces a *result*, there
    is no exception to report, so its handler receives one of these as its
    first argument (``handler(FailedResult(result), *args, **kwargs)``) and
    the ``FallbackUsed`` event carries it as ``exception``: handlers and
    event consumers keep seeing an ``Exception``, and ``.result`` is the
    value that was replaced.

    Attributes:
        result: The result that matched ``on_result``.
    """

    result: object

    def __init__(self, result: object) -> None:
        self.result = result
        # The result itself as the argument: no repr() of it until someone asks.
        super().__init__(result)

    def __str__(self) -> str:
        return f"result matched on_result: {describe(self.result, typed=False, limit=200)}"

    def __reduce__(self) -> tuple[type[FailedResult], tuple[object]]:
        return (type(self), (self.result,))


class GateClosedError(ResilientError):
    """A gate is closing (the service is shutting down): the call was refused or cancelled.

    A rejection error: the function was not called (``reason == "closed"``),
    or the gate cancelled it when the grace period of
    :meth:`~resilient.Gate.close` ran out (``reason == "cancelled"``, with
    the ``CancelledError`` as ``__cause__``). Neutral for circuit breakers.

    Attributes:
        name: The gate's name, or None.
        retry_after: Always None: a closed gate does not reopen.
        reason: ``"closed"`` or ``"cancelled"``.
    """

    name: str | None
    retry_after: float | None
    reason: str

    def __init__(self, name: str | None = None, reason: str = "closed") -> None:
        self.name = name
        self.retry_after = None
        self.reason = reason
        label = f"gate {name!r}" if name else "gate"
        if reason == "cancelled":
            msg = f"{label} closed: the call was cancelled when the grace period ran out"
        else:
            msg = f"{label} is closed: the service is shutting down"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[GateClosedError], tuple[str | None, str]]:
        return (type(self), (self.name, self.reason))


class ConfigError(ResilientError, ValueError):
    """A configuration (a dict, a JSON or TOML file) is invalid; nothing was built from it.

    Also a builtin :class:`ValueError`. Each entry of :attr:`errors` names
    the place in the configuration it is about, e.g.
    ``"payments[2].retry.attempts: must be >= 1, got 0"``.

    Attributes:
        errors: One message per problem found, each starting with its path.
    """

    errors: tuple[str, ...]

    def __init__(self, errors: tuple[str, ...] | list[str] | str) -> None:
        self.errors = (errors,) if isinstance(errors, str) else tuple(errors)
        if len(self.errors) == 1:
            msg = f"invalid configuration: {self.errors[0]}"
        else:
            msg = "invalid configuration:\n" + "\n".join(f"  {e}" for e in self.errors)
        super().__init__(msg)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[str, ...]]]:
        return (type(self), (self.errors,))
