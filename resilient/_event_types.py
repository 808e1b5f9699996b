"""The event classes: frozen, slotted dataclasses named in the past tense.

Every event has ``policy``, ``name``, ``operation`` and ``time``; each
subclass adds what its policy knows. :mod:`resilient._events` holds the bus
that delivers them; :mod:`resilient.events` is the public face of both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if not TYPE_CHECKING:
    from ._dataclass import dataclass  # the same classes, cheaper to import
if TYPE_CHECKING:  # (second, so that documentation tools see the standard decorator too)
    from dataclasses import dataclass

    from ._state import CircuitState

__all__ = [
    "BackendDegraded",
    "BackendRecovered",
    "BackendStateLost",
    "BulkheadRejected",
    "CallFailed",
    "CallCancelled",
    "CallRejected",
    "CallStarted",
    "CallSucceeded",
    "ChaosInjected",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitIsolated",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitStateChanged",
    "ConfigReloadFailed",
    "ConfigReloaded",
    "Event",
    "FallbackUsed",
    "GateClosed",
    "GateClosing",
    "GateRejected",
    "HedgeStarted",
    "RateLimited",
    "RetriesExhausted",
    "RetryScheduled",
    "TimeoutElapsed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        policy: The kind of policy that emitted it: ``"retry"``,
            ``"timeout"``, ``"circuit_breaker"``, ``"bulkhead"``,
            ``"rate_limiter"``, ``"fallback"``, ``"gate"``, ``"hedge"``, ``"chaos"``,
            ``"pipeline"`` or ``"registry"``.
        name: The emitting policy's ``name``, or None.
        operation: Qualified name of the protected function, or None when
            the policy was used as a context manager.
        time: The emitting policy's clock reading (monotonic seconds).
    """

    policy: str
    name: str | None
    operation: str | None
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """A retry will happen after *delay* seconds.

    Attributes:
        attempt: The attempt that just failed (1-based).
        delay: Seconds the retry waits before the next attempt (planned:
            test mode, ``set_testing(True)``, skips the wait but reports it).
        exception: The exception that triggered the retry, or None.
        result: The result that triggered the retry (``on_result``), or None.
    """

    attempt: int
    delay: float
    exception: BaseException | None = None
    result: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetriesExhausted(Event):
    """Retry gave up; the last exception (or result) goes to the caller.

    Attributes:
        attempts: Attempts made.
        exception: The last exception, or None if the last result was retried.
        reason: ``"attempts"``, ``"deadline"``, ``"retry_after"`` or ``"budget"``.
    """

    attempts: int
    exception: BaseException | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutElapsed(Event):
    """A timeout expired.

    Attributes:
        seconds: The timeout that expired.
    """

    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged(Event):
    """A circuit breaker moved from *previous* to *state*.

    Attributes:
        previous: The state before the transition.
        state: The state after it.
    """

    previous: CircuitState
    state: CircuitState


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitOpened(CircuitStateChanged):
    """The breaker opened: calls are rejected until the recovery timeout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitHalfOpened(CircuitStateChanged):
    """The breaker admits probes to test the dependency."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitClosed(CircuitStateChanged):
    """The breaker closed: calls flow normally."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitIsolated(CircuitStateChanged):
    """The breaker was held open by ``isolate()`` until ``reset()``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(Event):
    """A policy rejected a call without calling the function.

    Attributes:
        retry_after: Seconds after which a call may be admitted, or None.
    """

    retry_after: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitRejected(CallRejected):
    """An open (or saturated half-open) circuit breaker rejected a call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadRejected(CallRejected):
    """A full bulkhead rejected a call, or its queue wait ran out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GateRejected(CallRejected):
    """A closing (or closed) gate refused a call: the service is shutting down."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GateClosing(Event):
    """``Gate.close()`` began: the gate admits no new call and waits for those in flight.

    Attributes:
        in_flight: Calls in flight when it began (async and sync).
        grace: Seconds they are given to finish before they are cancelled.
    """

    in_flight: int
    grace: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GateClosed(Event):
    """``Gate.close()`` is done; the counts are those of its :class:`~resilient.GateReport`.

    Attributes:
        in_flight: Calls the close dealt with (``finished + cancelled +
            still_running + sync_running``).
        finished: Calls that ended without being cancelled.
        cancelled: Async calls cancelled when the grace period ran out, and ended since.
        still_running: Async calls cancelled that had not ended when it returned.
        sync_running: Sync calls (threads cannot be cancelled) still running when it returned.
    """

    in_flight: int
    finished: int
    cancelled: int
    still_running: int
    sync_running: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(Event):
    """``Registry.reload()`` swapped in a new configuration.

    Attributes:
        keys: The keys whose pipeline changed (their later calls run on the new one).
        reused: Policy objects carried over unchanged, with their state
            (a breaker keeps its state, a bulkhead its slots).
    """

    keys: tuple[str, ...]
    reused: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloadFailed(Event):
    """``Registry.reload()`` rejected a configuration whole; the old one stays in force.

    Attributes:
        errors: One message per problem, each naming its place in the configuration.
        exception: The error ``reload()`` raises (a :class:`~resilient.ConfigError`,
            or what the template raised).
    """

    errors: tuple[str, ...]
    exception: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimited(CallRejected):
    """A rate limiter rejected a call: no permit now, and none within its wait bound.

    ``retry_after`` is the seconds until a permit would be free.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackUsed(Event):
    """A fallback replaced a failure with its default.

    Attributes:
        exception: The failure that was replaced; for a result matching
            ``on_result``, a :class:`resilient.FailedResult` whose
            ``.result`` is that result.
    """

    exception: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeStarted(Event):
    """A hedge started another attempt while the earlier ones may still run.

    Attributes:
        attempt: The attempt just started (2 for the first hedge).
        reason: ``"delay"`` (no attempt finished within the hedging delay)
            or ``"failure"`` (an attempt failed with a handled exception or
            result).
    """

    attempt: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosInjected(Event):
    """A chaos policy injected a fault, a latency or a result into a call.

    Attributes:
        kind: ``"fault"``, ``"latency"`` or ``"result"``.
        seconds: The injected latency (``"latency"``), else None.
        exception: The injected exception (``"fault"``), else None.
    """

    kind: str
    seconds: float | None = None
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    """An outer pipeline call is starting (once per call, before its first attempt).

    Emitted only while a handler subscribes to it. A sync handler runs
    inline, in the caller's task or thread, before the function: whatever it
    makes current (an OpenTelemetry span, a context variable) stays current
    for the whole call, so everything the function does happens inside it.
    Undo it with :meth:`resilient.CallContext.on_exit` on
    ``resilient.current_call()``: the pipeline runs that callback when the
    call ends, however it ends.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSucceeded(Event):
    """An outer pipeline call returned (once per call, not per attempt).

    Attributes:
        duration: Seconds from the call's start to its return.
    """

    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed(Event):
    """An outer pipeline call raised (once per call, not per attempt).

    Cancellation and other control-flow exceptions are not failures and emit
    nothing.

    Attributes:
        duration: Seconds from the call's start to the raise.
        exception: What the caller receives.
    """

    duration: float
    exception: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class CallCancelled(Event):
    """An outer pipeline call was ended by a control-flow exception (once per call).

    Cancellation (``asyncio.CancelledError``), ``KeyboardInterrupt``,
    ``SystemExit`` or ``GeneratorExit`` (a coroutine closed before it
    finished). This is not a failure: no ``CallFailed`` is emitted, and the
    exception propagates unchanged.

    Attributes:
        duration: Seconds from the call's start to the interruption.
        exception: The control-flow exception.
    """

    duration: float
    exception: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendDegraded(Event):
    """A shared state backend stopped answering; the policy runs on local state.

    Attributes:
        backend: A short description of the backend.
        exception: What the backend raised (or the timeout that hit it).
    """

    backend: str
    exception: BaseException | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRecovered(Event):
    """A shared state backend answers again; the policy uses shared state.

    Attributes:
        backend: A short description of the backend.
    """

    backend: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendStateLost(Event):
    """A shared state backend lost the state this process last saw (a restart, a flush, eviction).

    Emitted by each process that notices, once per loss. An ISOLATED breaker
    is restored (``state`` is ISOLATED), and so is an OPEN one whose open
    period had not ended if its backend was built with
    ``restore_open=True`` (``state`` is OPEN); otherwise the breaker starts
    afresh.

    Attributes:
        backend: A short description of the backend.
        previous: The state this process last saw.
        state: The state now.
    """

    backend: str
    previous: CircuitState
    state: CircuitState
