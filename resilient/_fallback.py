"""``fallback``: replace a failure with a default value or a handler's answer."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, overload

from ._clock import Clock
from ._context import CallContext
from ._errors import FailedResult
from ._events import Event, EventBus, FallbackUsed
from ._introspect import is_async_callable
from ._numbers import describe
from ._pipeline import Args, AsyncLayer, Kwargs, Policy, SyncLayer
from ._validate import ExceptionSpec, check_bus, check_clock, check_name, check_predicate, make_matcher

__all__ = ["Fallback", "fallback"]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Fallback(Policy, Generic[R_co]):
    """The policy returned by :func:`fallback`.

    ``Fallback[R]`` answers with an ``R`` (the default, or what the handler
    returns or its awaitable resolves to), so a function returning ``T`` that
    it decorates is typed as returning ``T | R``: exactly ``T`` when the
    default fits, and visibly wider when it does not (``@fallback(42)`` on
    ``-> str`` gives ``str | int``, and code relying on ``str`` fails to
    type-check).
    """

    kind: ClassVar[str] = "fallback"
    emits: ClassVar[tuple[type[Event], ...]] = (FallbackUsed,)

    # A callable default is a handler (as at run time): its result is the answer.
    @overload
    def __init__(
        self: Fallback[R],
        default: Callable[..., Awaitable[R]],
        *,
        on: ExceptionSpec = ...,
        on_result: Callable[[Any], bool] | None = ...,
        name: str | None = ...,
        clock: Clock | None = ...,
        bus: EventBus | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Fallback[R],
        default: Callable[..., R],
        *,
        on: ExceptionSpec = ...,
        on_result: Callable[[Any], bool] | None = ...,
        name: str | None = ...,
        clock: Clock | None = ...,
        bus: EventBus | None = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Fallback[R],
        default: R,
        *,
        on: ExceptionSpec = ...,
        on_result: Callable[[Any], bool] | None = ...,
        name: str | None = ...,
        clock: Clock | None = ...,
        bus: EventBus | None = ...,
    ) -> None: ...
    def __init__(
        self,
        default: Any,
        *,
        on: ExceptionSpec = Exception,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.default = default
        self._is_handler = callable(default)
        self._async_handler = self._is_handler and is_async_callable(default)
        if on_result is not None:
            check_predicate("on_result", on_result, "(result)")
        # With on_result, on=() means "results only".
        self._match = make_matcher("on", on, allow_empty=on_result is not None)
        self.on = on
        self.on_result = on_result
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)

    def __repr__(self) -> str:
        return f"fallback({self.default!r})"

    # Policy's overloads, with the answer's type added to the result. Typed
    # as a plain Policy, a Fallback keeps the function's type (the override
    # is deliberately wider: that is what a fallback does).
    @overload  # type: ignore[override]
    def __call__(
        self, fn: classmethod[C, P, Coroutine[Any, Any, T]]
    ) -> classmethod[C, P, Coroutine[Any, Any, T | R_co]]: ...
    @overload
    def __call__(self, fn: classmethod[C, P, T]) -> classmethod[C, P, T | R_co]: ...
    @overload
    def __call__(
        self, fn: staticmethod[P, Coroutine[Any, Any, T]]
    ) -> staticmethod[P, Coroutine[Any, Any, T | R_co]]: ...
    # A staticmethod is also callable; an async one matched the overload above.
    @overload
    def __call__(self, fn: staticmethod[P, T]) -> staticmethod[P, T | R_co]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T | R_co]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T | R_co]: ...
    def __call__(self, fn: Any) -> Any:
        """Decorate *fn*: on a matching failure it answers with the default instead.

        Args:
            fn: A function, coroutine function, method, classmethod or
                staticmethod (generators are rejected).

        Returns:
            A wrapper with *fn*'s parameters, returning *fn*'s result or the
            fallback's answer.
        """
        return super().__call__(fn)

    @overload  # type: ignore[override]
    def call(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T | R_co]: ...
    @overload
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T | R_co: ...
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)``, answering a matching failure with the default.

        Args:
            fn: The function to run.
            *args: Positional arguments for *fn*.
            **kwargs: Keyword arguments for *fn*.

        Returns:
            What *fn* returns or the fallback's answer (an awaitable of it for
            a coroutine function).
        """
        return super().call(fn, *args, **kwargs)

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

    async def _answer_async(self, ctx: CallContext, failure: Exception, args: Args, kwargs: Kwargs) -> Any:
        self._used(ctx, failure)
        if not self._is_handler:
            return self.default
        value = self.default(failure, *args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value

    def _answer_sync(self, ctx: CallContext, failure: Exception, args: Args, kwargs: Kwargs) -> Any:
        self._used(ctx, failure)
        default = self.default
        if not self._is_handler:
            return default
        value = default(failure, *args, **kwargs)
        if inspect.isawaitable(value):
            # Nothing can await it here; close a coroutine so it does
            # not warn "never awaited" on top of this error.
            close = getattr(value, "close", None)
            if close is not None:
                close()
            raise TypeError(
                f"fallback handler {describe(default, typed=False)} returned an awaitable for the sync "
                f"function {ctx.operation}; use a sync handler"
            )
        return value

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer that answers matching failures (and results) with the default."""
        match = self._match
        on_result = self.on_result
        answer = self._answer_async

        if on_result is None:

            async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
                try:
                    return await inner(ctx, fn, args, kwargs)
                except Exception as exc:
                    if not match(exc):
                        raise
                    # Answered inside the except block, so a handler's own
                    # exception carries the original as __context__.
                    return await answer(ctx, exc, args, kwargs)

            return run

        async def run_results(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            try:
                result = await inner(ctx, fn, args, kwargs)
            except Exception as exc:
                if not match(exc):
                    raise
                return await answer(ctx, exc, args, kwargs)
            if not on_result(result):
                return result
            failure = FailedResult(result)
            try:
                return await answer(ctx, failure, args, kwargs)
            except Exception as exc:
                _chain(exc, failure)
                raise

        return run_results

    def check_sync(self, target: object) -> None:
        """Raise TypeError when the handler is async: it cannot serve a sync function.

        Args:
            target: The sync function about to be guarded.

        Raises:
            TypeError: The handler is a coroutine function.
        """
        if self._async_handler:
            raise TypeError(
                f"fallback handler {describe(self.default, typed=False)} is async but the protected "
                "function is sync; use a sync handler"
            )

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer; an async handler cannot serve a sync function.

        Raises:
            TypeError: The handler is a coroutine function.
        """
        self.check_sync(None)
        match = self._match
        on_result = self.on_result
        answer = self._answer_sync

        if on_result is None:

            def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
                try:
                    return inner(ctx, fn, args, kwargs)
                except Exception as exc:
                    if not match(exc):
                        raise
                    return answer(ctx, exc, args, kwargs)

            return run

        def run_results(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            try:
                result = inner(ctx, fn, args, kwargs)
            except Exception as exc:
                if not match(exc):
                    raise
                return answer(ctx, exc, args, kwargs)
            if not on_result(result):
                return result
            failure = FailedResult(result)
            try:
                return answer(ctx, failure, args, kwargs)
            except Exception as exc:
                _chain(exc, failure)
                raise

        return run_results


def _chain(exc: BaseException, failure: FailedResult) -> None:
    # What an except block would have done: the handler's error shows the
    # result it was answering (unless it already has a context, or is it).
    if exc is not failure and exc.__context__ is None:
        exc.__context__ = failure


@overload
def fallback(
    default: Callable[..., Awaitable[R]],
    *,
    on: ExceptionSpec = ...,
    on_result: Callable[[Any], bool] | None = ...,
    name: str | None = ...,
    clock: Clock | None = ...,
    bus: EventBus | None = ...,
) -> Fallback[R]: ...
@overload
def fallback(
    default: Callable[..., R],
    *,
    on: ExceptionSpec = ...,
    on_result: Callable[[Any], bool] | None = ...,
    name: str | None = ...,
    clock: Clock | None = ...,
    bus: EventBus | None = ...,
) -> Fallback[R]: ...
@overload
def fallback(
    default: R,
    *,
    on: ExceptionSpec = ...,
    on_result: Callable[[Any], bool] | None = ...,
    name: str | None = ...,
    clock: Clock | None = ...,
    bus: EventBus | None = ...,
) -> Fallback[R]: ...
def fallback(
    default: Any,
    *,
    on: ExceptionSpec = Exception,
    on_result: Callable[[Any], bool] | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Fallback[Any]:
    """Return *default* instead of raising when the call fails with an exception matching *on*.

    If *default* is callable it is a handler: the result of
    ``default(exc, *args, **kwargs)`` is returned (awaited if it is
    awaitable). A handler that raises propagates its exception with
    ``__context__`` set to the original failure. Control-flow exceptions are
    never replaced.

    With *on_result*, a result for which it returns True is replaced too.
    There is no exception then, so the handler gets a
    :class:`~resilient.FailedResult` holding the result
    (``handler(FailedResult(result), *args, **kwargs)``), and so does the
    ``FallbackUsed`` event's ``exception``. A result is checked only when
    the call returned it, never the fallback's own answer.

    For type checkers, the decorated function returns its own type or the
    default's (the handler's result type, awaited for an async handler):
    ``@fallback(None)`` on ``-> str | None`` keeps ``str | None``, while
    ``@fallback(42)`` on ``-> str`` makes it ``str | int``.

    Args:
        default: The value to return, or a handler ``(exc, *args, **kwargs)``.
        on: Exception type, tuple of types, or predicate selecting the
            failures to replace (``()`` with *on_result*: results only).
        on_result: Predicate ``(result) -> bool``; True replaces the result.
        name: Name reported in events.
        clock: Time source for event timestamps.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Fallback` policy.

    Raises:
        TypeError: *on* is not a type, tuple of types or predicate, or
            *on_result* is not callable.
        ValueError: *on* names only control-flow exceptions (or is empty
            without *on_result*).
    """
    return Fallback(default, on=on, on_result=on_result, name=name, clock=clock, bus=bus)
