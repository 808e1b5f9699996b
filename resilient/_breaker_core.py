"""The circuit breaker's classification, events and outcome settling.

Split from :mod:`resilient._breaker` to keep modules short: this mixin turns
an exception into an :class:`~resilient.backends.Outcome` (or neutral), hands
it to the backend, and emits one event per transition the backend returns.
"""

from __future__ import annotations

from types import FrameType
from typing import Any, ClassVar

from ._clock import Clock
from ._errors import CircuitOpenError, ResilientError
from ._events import (
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
    Event,
    EventBus,
)
from ._state import CircuitState
from ._validate import Matcher, every_leaf
from ._waits import NEED_FRAME, Listener
from .backends import BreakerBackend, Outcome, Permit, Rejection
from .backends._base import Transition

__all__ = ["SUCCESS", "UNTIMED", "BreakerCore", "bind_wait", "bind_wait_async"]

_EVENTS: dict[CircuitState, type[CircuitStateChanged]] = {
    CircuitState.OPEN: CircuitOpened,
    CircuitState.HALF_OPEN: CircuitHalfOpened,
    CircuitState.CLOSED: CircuitClosed,
    CircuitState.ISOLATED: CircuitIsolated,
}
_OUTCOMES = (Outcome.SUCCESS, Outcome.FAILURE, Outcome.SLOW_SUCCESS, Outcome.SLOW_FAILURE)
SUCCESS = Outcome.SUCCESS
_SLOW_SUCCESS = Outcome.SLOW_SUCCESS


def _is_rejection_leaf(exc: BaseException) -> bool:
    return isinstance(exc, ResilientError) and hasattr(exc, "retry_after")


def _is_rejection(exc: BaseException) -> bool:
    """True for this library's rejection errors, or a group made only of them."""
    return every_leaf(exc, _is_rejection_leaf)


class BreakerCore:
    """What a breaker does around its backend, shared by every call form."""

    kind: ClassVar[str] = "circuit_breaker"
    emits: ClassVar[tuple[type[Event], ...]] = (
        CircuitStateChanged,
        CircuitRejected,
        BackendDegraded,
        BackendRecovered,
        BackendStateLost,
    )
    name: str | None
    clock: Clock
    bus: EventBus
    backend: BreakerBackend
    _on: Matcher
    _ignore: Matcher
    _slow: float | None

    # --- events and classification ---------------------------------------------

    def _emit(self, transition: Transition, operation: str | None) -> None:
        cls = _EVENTS[transition.state]
        bus = self.bus
        if bus.wants(cls):
            bus.emit(
                cls(
                    policy="circuit_breaker",
                    name=self.name,
                    operation=operation,
                    time=self.clock.monotonic(),
                    previous=transition.previous,
                    state=transition.state,
                )
            )

    def _reject(self, rejection: Rejection, operation: str | None) -> CircuitOpenError:
        bus = self.bus
        if bus.wants(CircuitRejected):
            bus.emit(
                CircuitRejected(
                    policy="circuit_breaker",
                    name=self.name,
                    operation=operation,
                    time=self.clock.monotonic(),
                    retry_after=rejection.retry_after,
                )
            )
        # A fresh error per rejection: a shared one's traceback would grow.
        return CircuitOpenError(self.name, rejection.retry_after)

    def _outcome(self, exc: BaseException, start: float) -> Outcome | None:
        """How a raised exception counts; None means neutral."""
        if not isinstance(exc, Exception):
            return None  # control flow: never counted
        if _is_rejection(exc):
            return None  # an inner policy refused: the dependency was not asked
        if self._ignore(exc):
            return None
        code = 1 if self._on(exc) else 0  # anything else: the dependency answered
        if self._slow is not None and self.clock.monotonic() - start > self._slow:
            code |= 2
        return _OUTCOMES[code]

    def _success(self, start: float) -> Outcome:
        slow = self._slow
        if slow is not None and self.clock.monotonic() - start > slow:
            return _SLOW_SUCCESS
        return SUCCESS

    def _admit(self, got: Permit | Rejection, operation: str | None) -> Permit:
        if isinstance(got, Rejection):
            if got.transition is not None:
                self._emit(got.transition, operation)
            raise self._reject(got, operation)
        if got.transition is not None:
            try:
                self._emit(got.transition, operation)
            except BaseException:
                # A handler raised KeyboardInterrupt (say): the permit, a
                # half-open probe's slot, must not stay taken.
                self.backend.release(got)
                raise
        return got

    async def _admit_async(self, got: Permit | Rejection, operation: str | None) -> Permit:
        """:meth:`_admit` for a backend whose release must be awaited."""
        if isinstance(got, Rejection) or got.transition is None:
            return self._admit(got, operation)
        try:
            self._emit(got.transition, operation)
        except BaseException:
            await self.backend.release_async(got)
            raise
        return got

    def _settle(self, permit: Permit, exc: BaseException | None, start: float, op: str | None) -> None:
        backend = self.backend
        try:
            outcome = self._success(start) if exc is None else self._outcome(exc, start)
        except BaseException:
            backend.release(permit)  # a raising `on`/`ignore` predicate must not leak a probe slot
            raise
        if outcome is None:
            backend.release(permit)
            return
        transition = backend.record(permit, outcome)
        if transition is not None:
            self._emit(transition, op)

    async def _settle_async(
        self, permit: Permit, exc: BaseException | None, start: float, op: str | None
    ) -> None:
        backend = self.backend
        try:
            outcome = self._success(start) if exc is None else self._outcome(exc, start)
        except BaseException:
            await backend.release_async(permit)
            raise
        if outcome is None:
            await backend.release_async(permit)
            return
        transition = await backend.record_async(permit, outcome)
        if transition is not None:
            self._emit(transition, op)

    # --- calls that waited in an inner queue (see resilient._waits) ----------------------

    def _after_wait(self, seconds: float, operation: str | None, frame: FrameType | None) -> Any:
        """A call in this breaker's layer waited *seconds* in an inner queue.

        It was admitted before it waited: if the breaker has opened since, it
        must not reach the dependency (a rejection raised here counts as
        nothing, and its permit is released as the error passes this layer).
        Otherwise the wait is left out of the call's slow-call timing. Without
        the call's frame, it answers only if it needs none (nothing timed,
        and a backend that admits every earlier call, as a CLOSED in-process
        one does).

        Returns:
            None, or :data:`NEED_FRAME`.

        Raises:
            CircuitOpenError: The breaker moved on while the call waited.
        """
        if frame is None:
            if self._slow is None and self.backend.waiters_admitted:
                return None
            return NEED_FRAME
        local = frame.f_locals
        rejection = self.backend.readmit(local["permit"])
        if rejection is not None:
            raise self._reject(rejection, operation)
        if self._slow is not None:
            local["begun"][0] += seconds
        return None

    def _after_wait_async(self, seconds: float, operation: str | None, frame: FrameType | None) -> Any:
        """:meth:`_after_wait` for a backend whose steps do I/O.

        Returns:
            :data:`NEED_FRAME`, or an awaitable.
        """
        if frame is None:
            return NEED_FRAME
        return self._readmit_async(frame.f_locals, seconds, operation)

    async def _readmit_async(self, local: dict[str, Any], seconds: float, operation: str | None) -> None:
        rejection = await self.backend.readmit_async(local["permit"])
        if rejection is not None:
            raise self._reject(rejection, operation)
        local["begun"][0] += seconds


# --- calls that waited in an inner queue (see resilient._waits) --------------------------

UNTIMED = [0.0]  # the start of every call when nothing is timed (never written)


def bind_wait(frame: FrameType) -> tuple[Listener, bool, object]:
    """The breaker layer in *frame*: its wait listener, whether it times calls, its gate (read once)."""
    me: BreakerCore = frame.f_locals["me"]
    timed = me._slow is not None
    # Untimed, nothing to do while the backend admits every earlier call.
    return me._after_wait, timed, None if timed else me.backend


def bind_wait_async(frame: FrameType) -> tuple[Listener, bool, object]:
    """:func:`bind_wait` for the layer of a backend whose steps do I/O."""
    me: BreakerCore = frame.f_locals["me"]
    return me._after_wait_async, True, None
