"""``fallback``: replace a failure with a default value or a handler's answer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from ._clock import Clock
from ._context import CallContext
from ._events import Event, EventBus, FallbackUsed
from ._introspect import is_async_callable
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import ExceptionSpec, check_bus, check_clock, check_name, make_matcher

__all__ = ["Fallback", "fallback"]


class Fallback(Policy):
    """The policy returned by :func:`fallback`."""

    kind: ClassVar[str] = "fallback"
    emits: ClassVar[tuple[type[Event], ...]] = (FallbackUsed,)

    def __init__(
        self,
        default: Any,
        *,
        on: ExceptionSpec = Exception,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.default = default
        self._is_handler = callable(default)
        self._async_handler = self._is_handler and is_async_callable(default)
        self._match = make_matcher("on", on)
        self.on = on
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)

    def __repr__(self) -> str:
        return f"fallback({self.default!r})"

    def _used(self, ctx: CallContext, exc: BaseException) -> None:
        if not ctx.shared:
            ctx.fallback_used = True  # the call's outcome is "fallback", not "success"
        bus = self.bus
        if bus.wants(FallbackUsed):
            bus.emit(
                FallbackUsed(
                    policy="fallback",
                    name=self.name,
                    operation=ctx.operation,
                    time=self.clock.monotonic(),
                    exception=exc,
                )
            )

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that answers matching failures with the default."""
        match = self._match
        default = self.default
        is_handler = self._is_handler

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            try:
                return await inner(ctx, fn, args, kwargs)
            except Exception as exc:
                if not match(exc):
                    raise
                self._used(ctx, exc)
                if not is_handler:
                    return default
                # Called inside the except block, so a handler's own
                # exception carries the original as __context__.
                value = default(exc, *args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                return value

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer; an async handler cannot serve a sync function.

        Raises:
            TypeError: The handler is a coroutine function.
        """
        if self._async_handler:
            raise TypeError(
                f"fallback handler {self.default!r} is async but the protected function is sync; "
                "use a sync handler"
            )
        match = self._match
        default = self.default
        is_handler = self._is_handler

        def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            try:
                return inner(ctx, fn, args, kwargs)
            except Exception as exc:
                if not match(exc):
                    raise
                self._used(ctx, exc)
                if not is_handler:
                    return default
                value = default(exc, *args, **kwargs)
                if inspect.isawaitable(value):
                    # Nothing can await it here; close a coroutine so it does
                    # not warn "never awaited" on top of this error.
                    close = getattr(value, "close", None)
                    if close is not None:
                        close()
                    raise TypeError(
                        f"fallback handler {default!r} returned an awaitable for the sync function "
                        f"{ctx.operation}; use a sync handler"
                    )
                return value

        return run


def fallback(
    default: Any,
    *,
    on: ExceptionSpec = Exception,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Fallback:
    """Return *default* instead of raising when the call fails with an exception matching *on*.

    If *default* is callable it is a handler: the result of
    ``default(exc, *args, **kwargs)`` is returned (awaited if it is
    awaitable). A handler that raises propagates its exception with
    ``__context__`` set to the original failure. Control-flow exceptions are
    never replaced.

    Args:
        default: The value to return, or a handler ``(exc, *args, **kwargs)``.
        on: Exception type, tuple of types, or predicate selecting the
            failures to replace.
        name: Name reported in events.
        clock: Time source for event timestamps.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Fallback` policy.

    Raises:
        TypeError: *on* is not a type, tuple of types or predicate.
        ValueError: *on* names only control-flow exceptions.
    """
    return Fallback(default, on=on, name=name, clock=clock, bus=bus)
