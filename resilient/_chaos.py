"""What every chaos policy shares: when to inject (``enabled``, ``rate``), the layer, the event."""

from __future__ import annotations

import inspect
import math
import random as _random_module
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeAlias

from ._clock import Clock
from ._context import CallContext
from ._events import ChaosInjected, Event, EventBus
from ._introspect import is_async_callable
from ._lazy import LazyLogger
from ._numbers import describe, plain_number
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer, is_frameless, mark_frameless
from ._validate import check_bus, check_clock, check_name

__all__ = ["ChaosPolicy", "Enabled", "RandomSource"]

logger = LazyLogger("resilient")  # logging loads with the first message

Enabled: TypeAlias = "bool | Callable[[], object]"
"""``enabled=``: a bool, or a zero-argument callable read on every call."""


class RandomSource(Protocol):
    """What ``random=`` accepts: anything with ``random() -> float`` in [0, 1), like ``random.Random``."""

    def random(self) -> float:
        """Return the next number in [0, 1)."""


def _check_rate(rate: object) -> float:
    # Read through the base type (a subclass's comparisons and __float__ may lie).
    number = plain_number(rate)
    if number is None:
        raise TypeError(f"rate must be a number in [0, 1], got {describe(rate)}")
    try:
        value = float(number)
    except OverflowError:  # an int beyond any float
        raise ValueError("rate must be in [0, 1], got a huge integer") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {value!r}")
    return value


def _check_enabled(enabled: object) -> Enabled:
    if isinstance(enabled, bool):
        return enabled
    if not callable(enabled):
        raise TypeError(f"enabled must be a bool or a zero-argument callable, got {describe(enabled)}")
    if is_async_callable(enabled):
        # Its coroutine is truthy: chaos would always be on (and the coroutine never awaited).
        raise TypeError(f"enabled must be a plain (not async) callable, read on every call; got {enabled!r}")
    try:
        signature = inspect.signature(enabled)
    except (TypeError, ValueError):  # some builtins have none: trust them
        return enabled
    try:
        signature.bind()
    except TypeError:
        raise TypeError(
            f"enabled must be callable with no arguments (it is read on every call), got {describe(enabled)}"
        ) from None
    return enabled


def _check_random(seed: object, random: object) -> RandomSource:
    if random is not None:
        if seed is not None:
            raise TypeError("seed and random are mutually exclusive: pass one or the other")
        if not callable(getattr(random, "random", None)):
            raise TypeError(f"random must have a random() method returning [0, 1), got {describe(random)}")
        return random  # type: ignore[return-value]
    if seed is not None and not isinstance(seed, (int, float, str, bytes, bytearray)):
        raise TypeError(f"seed must be an int, float, str or bytes, got {describe(seed)}")
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
        enabled: Enabled,
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
