"""The three chaos policies, ``fault``, ``latency`` and ``result`` (public as :mod:`resilient.chaos`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from ._chaos import ChaosPolicy, Enabled, RandomSource
from ._clock import Clock, blocking_sleep
from ._context import CallContext
from ._events import EventBus
from ._numbers import describe
from ._pipeline import Args, AsyncLayer, Kwargs, SyncLayer
from ._validate import MAX_WAIT, check_duration

__all__ = ["Fault", "Latency", "Result", "fault", "latency", "result"]

_NOTE = "injected by resilient.chaos.fault"


def _sync_callable(fn: object, nargs: int) -> bool:
    # Imported here: `import resilient` loads this module, and few faults use a factory.
    from ._arity import sync_callable

    return sync_callable(fn, nargs)


class Fault(ChaosPolicy):
    """The policy returned by :func:`fault`: raises instead of calling the function."""

    injects: ClassVar[str] = "fault"

    def __init__(
        self,
        exception: type[Exception] | Callable[[], Exception],
        /,
        *,
        rate: float = 1.0,
        enabled: Enabled = True,
        seed: int | float | str | bytes | None = None,
        random: RandomSource | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        if isinstance(exception, BaseException):
            raise TypeError(
                f"fault needs an exception type or a factory, not the instance {exception!r}: raising one "
                f"object on every call grows its traceback; pass lambda: {type(exception).__name__}(...)"
            )
        if isinstance(exception, type):
            if not issubclass(exception, BaseException):
                raise TypeError(f"fault must be an exception type or a factory, got {describe(exception)}")
            if not issubclass(exception, Exception):
                raise ValueError(
                    f"fault={exception.__name__} is a control-flow exception; chaos injects "
                    "ordinary exceptions (subclasses of Exception) only"
                )
            try:
                exception()
            except Exception as exc:
                raise TypeError(
                    f"fault={exception.__name__} cannot be built without arguments ({exc}); "
                    f"pass a factory: lambda: {exception.__name__}(...)"
                ) from None
        elif not _sync_callable(exception, 0):
            raise TypeError(
                "fault must be an exception type or a zero-argument (not async) factory returning one, "
                f"got {describe(exception)}"
            )
        self.exception = exception
        super().__init__(
            rate=rate, enabled=enabled, seed=seed, random=random, name=name, clock=clock, bus=bus
        )

    def __repr__(self) -> str:
        what = getattr(self.exception, "__qualname__", None) or repr(self.exception)
        return f"chaos.fault({what}{self._repr_options()})"

    def _make(self) -> Exception:
        exc: object = self.exception()
        if not isinstance(exc, Exception):
            if isinstance(exc, BaseException):
                raise TypeError(
                    f"fault factory {self.exception!r} returned the control-flow exception {exc!r}"
                )
            raise TypeError(f"fault factory {self.exception!r} returned {exc!r}, not an exception")
        if _NOTE not in getattr(exc, "__notes__", ()):
            exc.add_note(_NOTE)
        return exc

    async def _raise(
        self, ctx: CallContext, inner: AsyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        exc = self._make()
        self._injected(ctx, exc=exc)
        raise exc

    def inject_async(
        self, ctx: CallContext, inner: AsyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Return a coroutine that raises the fault when awaited (the function is not called)."""
        return self._raise(ctx, inner, fn, args, kwargs)

    def inject_sync(
        self, ctx: CallContext, inner: SyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Raise the fault (the function is not called).

        Raises:
            Exception: The injected fault.
        """
        exc = self._make()
        self._injected(ctx, exc=exc)
        raise exc


class Latency(ChaosPolicy):
    """The policy returned by :func:`latency`: waits on the clock, then calls the function."""

    injects: ClassVar[str] = "latency"

    def __init__(
        self,
        seconds: float | timedelta,
        *,
        rate: float = 1.0,
        enabled: Enabled = True,
        seed: int | float | str | bytes | None = None,
        random: RandomSource | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        # At most what a (blocking) sleep can honour: time.sleep overflows beyond ~9.2e9 s.
        secs = check_duration("seconds", seconds, allow_zero=True, maximum=MAX_WAIT)
        assert secs is not None
        self.seconds: float = secs
        super().__init__(
            rate=rate, enabled=enabled, seed=seed, random=random, name=name, clock=clock, bus=bus
        )

    def __repr__(self) -> str:
        return f"chaos.latency({self.seconds!r}{self._repr_options()})"

    async def inject_async(
        self, ctx: CallContext, inner: AsyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Wait *seconds* on the policy's clock (cancellable), then run the call."""
        self._injected(ctx, seconds=self.seconds)
        await self.clock.sleep(self.seconds)
        return await inner(ctx, fn, args, kwargs)

    def inject_sync(
        self, ctx: CallContext, inner: SyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Block *seconds* with the clock's blocking sleep, then run the call.

        Returns:
            What the call returns.
        """
        self._injected(ctx, seconds=self.seconds)
        blocking_sleep(self.clock, self.seconds)
        return inner(ctx, fn, args, kwargs)


class Result(ChaosPolicy):
    """The policy returned by :func:`result`: returns a value instead of calling the function."""

    injects: ClassVar[str] = "result"

    def __init__(
        self,
        value: Any,
        *,
        rate: float = 1.0,
        enabled: Enabled = True,
        seed: int | float | str | bytes | None = None,
        random: RandomSource | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.value = value
        super().__init__(
            rate=rate, enabled=enabled, seed=seed, random=random, name=name, clock=clock, bus=bus
        )

    def __repr__(self) -> str:
        return f"chaos.result({self.value!r}{self._repr_options()})"

    async def inject_async(
        self, ctx: CallContext, inner: AsyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Return the value (the function is not called)."""
        self._injected(ctx)
        return self.value

    def inject_sync(
        self, ctx: CallContext, inner: SyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Return the value (the function is not called).

        Returns:
            The configured value.
        """
        self._injected(ctx)
        return self.value


def fault(
    exception: type[Exception] | Callable[[], Exception],
    /,
    *,
    rate: float = 1.0,
    enabled: Enabled = True,
    seed: int | float | str | bytes | None = None,
    random: RandomSource | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Fault:
    """Raise an exception instead of calling the function, on a fraction of calls.

    Each injection raises a fresh exception (built by calling the type with
    no arguments, or the factory), with the note
    ``"injected by resilient.chaos.fault"``.

    Args:
        exception: An ``Exception`` subclass that can be built without
            arguments, or a zero-argument factory returning an exception
            (``lambda: ConnectionError("injected")``).
        rate: Fraction of enabled calls that fail, in [0, 1].
        enabled: A bool, or a zero-argument callable read on every call
            (a callable that raises counts as False, and is logged).
        seed: Seed of the policy's own ``random.Random``, for reproducible
            draws.
        random: An object with ``random() -> float`` to draw from instead
            (exclusive with *seed*).
        name: Name reported in events.
        clock: Time source for event timestamps.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Fault` policy (a decorator with ``.call``; sync and async).

    Raises:
        TypeError: *exception* is an instance, not an exception type or a
            callable, or cannot be built without arguments; or another
            parameter has the wrong type; or both *seed* and *random* are given.
        ValueError: *exception* is a control-flow exception type, or *rate*
            is outside [0, 1].
    """
    return Fault(
        exception, rate=rate, enabled=enabled, seed=seed, random=random, name=name, clock=clock, bus=bus
    )


def latency(
    seconds: float | timedelta,
    *,
    rate: float = 1.0,
    enabled: Enabled = True,
    seed: int | float | str | bytes | None = None,
    random: RandomSource | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Latency:
    """Wait *seconds* before calling the function, on a fraction of calls.

    The wait is the policy clock's ``sleep`` (async; a cancellation or an
    enclosing ``timeout`` interrupts it) or its blocking sleep (sync), so a
    ``FakeClock`` makes it instant in tests.

    Args:
        seconds: Seconds (or a ``timedelta``) to add, finite and >= 0.
        rate: Fraction of enabled calls that are delayed, in [0, 1].
        enabled: A bool, or a zero-argument callable read on every call.
        seed: Seed of the policy's own ``random.Random``.
        random: An object with ``random() -> float`` (exclusive with *seed*).
        name: Name reported in events.
        clock: Time source that waits; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Latency` policy.

    Raises:
        TypeError: A parameter has the wrong type, or both *seed* and
            *random* are given.
        ValueError: *seconds* is negative, NaN or infinite, or *rate* is
            outside [0, 1].
    """
    return Latency(
        seconds, rate=rate, enabled=enabled, seed=seed, random=random, name=name, clock=clock, bus=bus
    )


def result(
    value: Any,
    *,
    rate: float = 1.0,
    enabled: Enabled = True,
    seed: int | float | str | bytes | None = None,
    random: RandomSource | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Result:
    """Return *value* instead of calling the function, on a fraction of calls.

    The same object is returned on every injection.

    Args:
        value: What the call returns when the result is injected.
        rate: Fraction of enabled calls answered with *value*, in [0, 1].
        enabled: A bool, or a zero-argument callable read on every call.
        seed: Seed of the policy's own ``random.Random``.
        random: An object with ``random() -> float`` (exclusive with *seed*).
        name: Name reported in events.
        clock: Time source for event timestamps.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Result` policy.

    Raises:
        TypeError: A parameter has the wrong type, or both *seed* and
            *random* are given.
        ValueError: *rate* is outside [0, 1].
    """
    return Result(
        value, rate=rate, enabled=enabled, seed=seed, random=random, name=name, clock=clock, bus=bus
    )
