"""The circuit breaker's classification, events and outcome settling.

Split from :mod:`resilient._breaker` to keep modules short: this mixin turns
an exception into an :class:`~resilient.backends.Outcome` (or neutral), hands
it to the backend, and emits one event per transition the backend returns.
"""

from __future__ import annotations

from typing import ClassVar

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
from .backends import BreakerBackend, Outcome, Permit, Rejection
from .backends._base import Transition

__all__ = ["SUCCESS", "BreakerCore"]

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
