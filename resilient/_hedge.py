"""``hedge``: when an attempt is slow, start another; the first good answer wins.

The policy and its factory; ``Race`` (in ``_race``) runs each call's attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

from ._budget import RetryBudget, check_budget
from ._clock import Clock
from ._context import CallContext, register_layer
from ._events import Event, EventBus, HedgeStarted
from ._introspect import qualname
from ._numbers import describe
from ._pipeline import Args, AsyncLayer, AsyncOnlyPolicy, Kwargs, SyncLayer
from ._race import Race
from ._validate import (
    ExceptionSpec,
    Matcher,
    check_bus,
    check_clock,
    check_duration,
    check_int,
    check_name,
    make_matcher,
)

__all__ = ["DEFAULT_DELAY", "MAX_ATTEMPTS", "Hedge", "hedge"]

MAX_ATTEMPTS = 100
"""The most attempts a hedged call may make.

With ``delay=0`` every attempt starts at once, one task each: a count
without a bound made a call create tasks until memory ran out. Polly allows
eleven (ten hedged attempts); a hundred concurrent copies of one request is
already far past any useful hedge.
"""

DEFAULT_DELAY = 2.0
"""Seconds without an answer before the next attempt starts, unless configured.

Polly's default. It is deliberately long: hedging at a healthy service's
usual latency multiplies its load, so the default only hedges calls that are
clearly stuck. Set ``delay`` to about the dependency's p95 latency to cut
the tail.
"""


def _sync_message(target: object) -> str:
    return (
        f"hedge() cannot guard the sync function {qualname(target)}: hedged attempts run "
        f"concurrently as asyncio tasks. Make it `async def` (run blocking code in it with "
        f"`await asyncio.to_thread(...)`)."
    )


def _sync_callable(fn: object, nargs: int) -> bool:
    # Imported here: most hedges have no on_result, and `import resilient` stays lean.
    from ._arity import sync_callable

    return sync_callable(fn, nargs)


class Hedge(AsyncOnlyPolicy):
    """The policy returned by :func:`hedge` (see it for the arguments)."""

    kind: ClassVar[str] = "hedge"
    emits: ClassVar[tuple[type[Event], ...]] = (HedgeStarted,)

    def __init__(
        self,
        *,
        attempts: int = 2,
        delay: float | timedelta | None = DEFAULT_DELAY,
        on: ExceptionSpec = Exception,
        on_result: Callable[[Any], bool] | None = None,
        budget: RetryBudget | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.attempts = check_int("attempts", attempts, minimum=1, maximum=MAX_ATTEMPTS)
        self.delay = check_duration("delay", delay, allow_zero=True, allow_none=True)
        self._match: Matcher = make_matcher("on", on)
        self.on = on
        if on_result is not None and not _sync_callable(on_result, 1):
            raise TypeError(f"on_result must be a predicate (result) -> bool, got {describe(on_result)}")
        self.on_result = on_result
        self.budget = check_budget(budget)
        self.name = check_name(name)
        self.clock = check_clock(clock)
        self.bus = check_bus(bus)

    def __repr__(self) -> str:
        return f"hedge(attempts={self.attempts}, delay={self.delay!r})"

    def check_sync(self, target: object) -> None:
        """Always raises: hedged attempts need an event loop.

        Args:
            target: The sync function about to be guarded.

        Raises:
            TypeError: Always.
        """
        raise TypeError(_sync_message(target))

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the layer that races attempts of *inner*."""

        async def attempt(
            ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs, race: Race, index: int
        ) -> Any:
            # The root of each attempt's task: current_call() inside it finds this frame.
            try:
                return await inner(ctx, fn, args, kwargs)
            finally:
                race.land(index)

        register_layer(attempt)
        budget = self.budget

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
            if budget is not None:
                budget.deposit()
            return await Race(self, attempt, ctx, fn, args, kwargs).run()

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Always raises: a sync function cannot run concurrent attempts.

        Raises:
            TypeError: Always.
        """
        raise TypeError(_sync_message(inner))


def hedge(
    *,
    attempts: int = 2,
    delay: float | timedelta | None = DEFAULT_DELAY,
    on: ExceptionSpec = Exception,
    on_result: Callable[[Any], bool] | None = None,
    budget: RetryBudget | None = None,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
) -> Hedge:
    """Race attempts of an async call: start another when none has answered after *delay*.

    The first attempt starts at once. Whenever *delay* passes with no
    attempt finished, the next one starts (``delay=0``: all at once;
    ``delay=None``: only after a failure). An attempt that fails with an
    exception matching *on* (or returns a result matching *on_result*)
    starts the next one at once. The first other outcome wins: a result is
    returned, an exception not matching *on* is raised. The attempts still
    running are then cancelled and awaited before the call returns, and
    their errors never surface. When every attempt fails, the outcome of the
    last to finish propagates (the exception as the same object, or the
    result).

    Each attempt is a task of its own, created with a copy of the caller's
    context, running the policies inside the hedge; ``current_call().attempt``
    is its number. Cancelling the caller cancels and awaits every attempt.
    An ambient deadline (an enclosing ``timeout``) bounds all attempts, and
    no attempt starts once it has passed. Sync functions are refused.

    Args:
        attempts: Attempts in all, the first included (int, 1 to 100).
        delay: Seconds (or a ``timedelta``) without an answer before the
            next attempt starts; about the dependency's p95 latency. ``0``
            starts every attempt at once, ``None`` hedges only failures.
            Default: 2 s (Polly's default), long enough not to multiply a
            healthy dependency's load.
        on: Exception type, tuple of types, or predicate: failures that
            start the next attempt at once. Others end the call. A rejection
            (an error with ``retry_after``, e.g. ``CircuitOpenError``) is
            an ordinary exception here: it is handled only if *on* matches.
        on_result: Predicate ``(result) -> bool``; True makes the result a
            failure that starts the next attempt.
        budget: A :class:`RetryBudget`: every call deposits, every attempt
            after the first withdraws; when it is spent, no further attempt
            starts (hedging multiplies load, like retries do).
        name: Name reported in events.
        clock: Time source of the hedging delay; ``FakeClock`` in tests.
        bus: Event bus (default: ``default_bus``).

    Returns:
        The :class:`Hedge` policy: a decorator with ``.call``.

    Raises:
        TypeError: A parameter has the wrong type, or (when decorating) the
            function is sync.
        ValueError: A parameter is out of range, or *on* names only
            control-flow exceptions.
    """
    return Hedge(
        attempts=attempts,
        delay=delay,
        on=on,
        on_result=on_result,
        budget=budget,
        name=name,
        clock=clock,
        bus=bus,
    )
