"""The runner of one operation through a pipeline: its layer chain, its contexts, its call events.

A :class:`~resilient._pipeline.Pipeline` keeps one ``Parts`` per operation
(per decorated function, or per function given to ``.call()``). Its runner
gives a call a private :class:`CallContext` and the call lifecycle events
(``CallStarted``, then ``CallSucceeded``, ``CallFailed`` or
``CallCancelled``) only while someone subscribes to them or to the
policies' events; otherwise the call goes straight down the chain with one
shared read-only context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._context import CallContext, clean_attributes, delivering, register_layer
from ._events import CallCancelled, CallFailed, CallStarted, CallSucceeded, subscriptions_version
from ._lazy import LazyLogger

if TYPE_CHECKING:
    from ._pipeline import Args, Kwargs, Pipeline

__all__ = ["Parts"]

logger = LazyLogger("resilient")  # logging loads with the first message


class Parts:
    """The runner of one operation and what it is built from: the chain, the contexts, the observer."""

    __slots__ = (
        "chain",
        "full_name",
        "is_async",
        "observed",
        "operation",
        "pipeline",
        "run",
        "seen",
        "static",
    )

    run: Callable[..., Any] | None
    #: The observed runner, built by :meth:`observer` with the first observed
    #: call: a function nobody observes keeps none of its closures.
    observed: Callable[..., Any] | None

    def __init__(
        self, pipeline: Pipeline, is_async: bool, operation: str, full: str | None = None, *, run: bool = True
    ) -> None:
        # run=False: no `run` form (a plain function's wrapper only calls `caller(fn)`'s).
        self.pipeline = pipeline
        self.operation = operation
        self.full_name = operation if full is None else full
        self.chain = pipeline._chain(is_async)
        self.static = CallContext(operation, pipeline, shared=True, full_name=self.full_name)
        # [subscriptions version last checked, observed then]; observed until checked.
        self.seen: list[Any] = [-1, True]
        self.is_async = is_async
        self.observed = None
        if not pipeline.policies:
            # No policy layer's frame would carry the context: always observe.
            self.seen[0] = None
        self.run = self.caller(None) if run else None

    def observer(self) -> Callable[..., Any]:
        """Build (once) and return the runner of observed calls: call events, a private context.

        Returns:
            The ``(ctx, fn, args, kwargs)`` layer around the chain.
        """
        pipeline = self.pipeline
        chain = self.chain
        operation = self.operation
        bus = pipeline.bus
        clock = pipeline.clock
        name = pipeline.name
        attributes = pipeline.attributes
        source = f"the attributes callable of {self.full_name}"

        def begin(ctx: CallContext, args: Args, kwargs: Kwargs) -> float:
            if attributes is not None:
                try:
                    found = attributes(*args, **kwargs)
                except Exception:
                    logger.exception("%s failed; the call runs without attributes", source)
                    found = None
                ctx.attributes = clean_attributes(found, source)
            start = clock.monotonic()
            if bus.wants(CallStarted):
                outer = delivering.ctx
                delivering.ctx = ctx
                try:
                    bus.emit(CallStarted(policy="pipeline", name=name, operation=operation, time=start))
                except BaseException as interrupt:  # a handler's KeyboardInterrupt: close what others opened
                    if ctx._exits is not None:
                        ctx.run_exits(interrupt)
                    raise
                finally:
                    delivering.ctx = outer
            return start

        def finish(ctx: CallContext, start: float, exc: BaseException | None) -> None:
            # Raises only a control-flow exception from a handler or an exit
            # callback (the bus and run_exits contain the rest); exits run anyway.
            outer = delivering.ctx
            delivering.ctx = ctx
            try:
                report(start, exc)
            finally:
                delivering.ctx = outer
                if ctx._exits is not None:
                    ctx.run_exits(exc)

        def report(start: float, exc: BaseException | None) -> None:
            if exc is None:
                if bus.wants(CallSucceeded):
                    now = clock.monotonic()
                    bus.emit(
                        CallSucceeded(
                            policy="pipeline", name=name, operation=operation, time=now, duration=now - start
                        )
                    )
            else:
                # A failure, or a cancellation (or another control-flow exception).
                ended = CallFailed if isinstance(exc, Exception) else CallCancelled
                if bus.wants(ended):
                    now = clock.monotonic()
                    bus.emit(
                        ended(
                            policy="pipeline",
                            name=name,
                            operation=operation,
                            time=now,
                            duration=now - start,
                            exception=exc,
                        )
                    )

        observed: Callable[..., Any]
        if self.is_async:

            async def observed_async(
                ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs
            ) -> Any:
                start = begin(ctx, args, kwargs)
                try:
                    result = await chain(ctx, fn, args, kwargs)
                except BaseException as exc:
                    # Control-flow exceptions too (CallCancelled, exit callbacks);
                    # every exception propagates as the same object.
                    finish(ctx, start, exc)
                    raise
                finish(ctx, start, None)
                return result

            observed = observed_async
        else:

            def observed_sync(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
                start = begin(ctx, args, kwargs)
                try:
                    result = chain(ctx, fn, args, kwargs)
                except BaseException as exc:
                    finish(ctx, start, exc)
                    raise
                finish(ctx, start, None)
                return result

            observed = observed_sync
        register_layer(observed)
        self.observed = observed  # (two threads may both build one: either serves)
        return observed

    def caller(self, wrapped: Callable[..., Any] | None) -> Callable[..., Any]:
        """Build the function that runs a call of this operation.

        The two forms differ only in where the function comes from; the
        wrapper's form closes over it so its call path reads no attribute.

        Args:
            wrapped: None for ``run(fn, args, kwargs)``; a function for
                ``call(*args, **kwargs)``, what its ready wrapper calls.

        Returns:
            The runner.
        """
        parts = self
        static = self.static
        chain = self.chain
        seen = self.seen
        refresh = self.refresh
        version = subscriptions_version
        operation = self.operation
        full = self.full_name
        pipeline = self.pipeline
        context = CallContext

        if wrapped is None:

            def run(fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
                if seen[0] != version[0]:
                    refresh()
                if seen[1]:
                    observed = parts.observed or parts.observer()
                    return observed(context(operation, pipeline, False, full), fn, args, kwargs)
                return chain(static, fn, args, kwargs)

            return run

        def call(*args: Any, **kwargs: Any) -> Any:
            if seen[0] != version[0]:
                refresh()
            if seen[1]:
                observed = parts.observed or parts.observer()
                return observed(context(operation, pipeline, False, full), wrapped, args, kwargs)
            return chain(static, wrapped, args, kwargs)

        return call

    def refresh(self) -> None:
        """Re-check whether anyone observes these calls (subscriptions changed)."""
        seen = self.seen
        if seen[0] is None:
            return
        version = subscriptions_version[0]
        seen[1] = self.pipeline._observed()
        seen[0] = version
