"""Fault injection policies (public as :mod:`resilient.chaos`)."""

from __future__ import annotations

import inspect
import math
import random as _random_module
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar, Protocol, TypeAlias

from ._clock import Clock, blocking_sleep
from ._context import CallContext
from ._events import ChaosInjected, Event, EventBus
from ._lazy import LazyLogger
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer, is_frameless, mark_frameless
from ._validate import check_bus, check_clock, check_duration, check_name

__all__ = ["ChaosPolicy", "Fault", "Latency", "RandomSource", "Result", "fault", "latency", "result"]

logger = LazyLogger("resilient")  # logging loads with the first message

_NOTE = "injected by resilient.chaos.fault"

_Enabled: TypeAlias = "bool | Callable[[], object]"


class RandomSource(Protocol):
    """What ``random=`` accepts: anything with ``random() -> float`` in [0, 1), like ``random.Random``."""

    def random(self) -> float:
        """Return the next number in [0, 1)."""


def _check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"rate must be a number in [0, 1], got {type(rate).__name__} {rate!r}")
    value = float(rate)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    return value


def _check_enabled(enabled: object) -> _Enabled:
    if isinstance(enabled, bool):
        return enabled
    if not callable(enabled):
        raise TypeError(f"enabled must be a bool or a zero-argument callable, got {enabled!r}")
    try:
        signature = inspect.signature(enabled)
    except (TypeError, ValueError):  # some builtins have none: trust them
        return enabled
    try:
        signature.bind()
    except TypeError:
        raise TypeError(
            f"enabled must be callable with no arguments (it is read on every call), got {enabled!r}"
        ) from None
    return enabled


def _check_random(seed: object, random: object) -> RandomSource:
    if random is not None:
        if seed is not None:
            raise TypeError("seed and random are mutually exclusive: pass one or the other")
        if not callable(getattr(random, "random", None)):
            raise TypeError(f"random must have a random() method returning [0, 1), got {random!r}")
        return random  # type: ignore[return-value]
    if seed is not None and not isinstance(seed, (int, float, str, bytes, bytearray)):
        raise TypeError(f"seed must be an int, float, str or bytes, got {type(seed).__name__} {seed!r}")
    return _random_module.Random(seed)


class ChaosPolicy(Policy):
    """Base of the chaos policies: when to inject (``enabled``, ``rate``) and the event.

    Subclasses implement the injection itself (:meth:`inject_async`,
    :meth:`inject_sync`).

    Attributes:
        rate: Fraction of enabled calls that get an injection.
        enabled: The bool or zero-argument callable read on every call.
        random: The source of the draws against *rate*.
    """

    kind: ClassVar[str] = "chaos"
    emits: ClassVar[tuple[type[Event], ...]] = (ChaosInjected,)
    injects: ClassVar[str] = "chaos"
    """The ``kind`` of this policy's ``ChaosInjected`` events."""

    def __init__(
        self,
        *,
        rate: float,
        enabled: _Enabled,
        seed: int | float | str | bytes | None,
        random: RandomSource | None,
        name: str | None,
        clock: Clock | None,
        bus: EventBus | None,
    ) -> None:
        self.rate = _check_rate(rate)
        self.enabled = _check_enabled(enabled)
        self.random = _check_random(seed, random)
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)

    def _injected(
        self, ctx: CallContext, seconds: float | None = None, exc: BaseException | None = None
    ) -> None:
        bus = self.bus
        if bus.wants(ChaosInjected):
            bus.emit(
                ChaosInjected(
                    policy="chaos",
                    name=self.name,
                    operation=ctx.operation,
                    time=self.clock.monotonic(),
                    kind=self.injects,
                    seconds=seconds,
                    exception=exc,
                )
            )

    def _toggle_failed(self) -> bool:
        # A broken switch means no chaos: injecting because a config read failed
        # would turn a bug in the switch into an outage.
        logger.exception("chaos policy %r: enabled() raised; nothing injected", self)
        return False

    def _layer(self, inner: Callable[..., Any], inject: Callable[..., Any]) -> Callable[..., Any]:
        """The layer around *inner* (async or sync alike), or *inner* itself if this policy never injects.

        It is a plain function either way: when nothing is injected it hands
        back what *inner* returns (for async code, inner's awaitable), at the
        cost of one call to the switch and one test.

        Returns:
            The layer.
        """
        enabled = self.enabled
        rate = self.rate
        if enabled is False or rate == 0.0:
            return inner
        draw = self.random.random
        toggle_failed = self._toggle_failed

        def fires(on: object) -> bool:
            if on is not True:
                try:
                    if not on:
                        return False
                except Exception:  # a switch answering with an object whose truth raises
                    return toggle_failed()
            return rate == 1.0 or draw() < rate

        if enabled is True:

            def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
                if fires(True):
                    return inject(ctx, inner, fn, args, kwargs)
                return inner(ctx, fn, args, kwargs)

            return run

        switch: Callable[[], object] = enabled

        def run_switched(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            try:
                on = switch()
            except Exception:
                on = toggle_failed()
            if on is not False and fires(on):
                return inject(ctx, inner, fn, args, kwargs)
            return inner(ctx, fn, args, kwargs)

        return run_switched

    def inject_async(
        self, ctx: CallContext, inner: AsyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Return the awaitable that injects into this call (and may run *inner*).

        Args:
            ctx: The call's context.
            inner: The next layer inward.
            fn: The protected function.
            args: Its positional arguments.
            kwargs: Its keyword arguments.

        Returns:
            An awaitable of the call's outcome.
        """
        raise NotImplementedError

    def inject_sync(
        self, ctx: CallContext, inner: SyncLayer, fn: Callable[..., Any], args: Args, kwargs: Kwargs
    ) -> Any:
        """Inject into this sync call (and maybe run *inner*).

        Args:
            ctx: The call's context.
            inner: The next layer inward.
            fn: The protected function.
            args: Its positional arguments.
            kwargs: Its keyword arguments.

        Returns:
            The call's outcome.
        """
        raise NotImplementedError

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the layer that injects into some calls of *inner* (or *inner* itself if it never does)."""
        layer = self._layer(inner, self.inject_async)
        if layer is not inner and is_frameless(inner):
            mark_frameless(layer)
        return layer

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer that injects into some calls of *inner*."""
        return self._layer(inner, self.inject_sync)

    def _repr_options(self) -> str:
        parts = []
        if self.rate != 1.0:
            parts.append(f"rate={self.rate!r}")
        if self.enabled is not True:
            parts.append(f"enabled={self.enabled!r}")
        return "".join(f", {p}" for p in parts)


class Fault(ChaosPolicy):
    """The policy returned by :func:`fault`: raises instead of calling the function."""

    injects: ClassVar[str] = "fault"

    def __init__(
        self,
        exception: type[Exception] | Callable[[], Exception],
        /,
        *,
        rate: float = 1.0,
        enabled: _Enabled = True,
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
                raise TypeError(f"fault must be an exception type or a factory, got {exception!r}")
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
        elif not callable(exception):
            raise TypeError(f"fault must be an exception type or a factory, got {exception!r}")
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
        enabled: _Enabled = True,
        seed: int | float | str | bytes | None = None,
        random: RandomSource | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        secs = check_duration("seconds", seconds, allow_zero=True)
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
        enabled: _Enabled = True,
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
    enabled: _Enabled = True,
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
    enabled: _Enabled = True,
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
    enabled: _Enabled = True,
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
