"""The interface between a circuit breaker and the place its state lives.

A :class:`~resilient.CircuitBreaker` decides *what happened* (success,
failure, slow, neutral) and emits events; a :class:`BreakerBackend` owns
*the state machine's atomic steps*: admitting a call, recording its outcome,
and every transition. Nothing in the breaker assumes the state lives in this
process, so a shared backend (e.g. Redis running each step as one Lua script)
can make every transition atomic across processes.

The contract, step by step:

1. ``bind(config, clock, name=..., bus=...)`` once, when the breaker is built.
2. Per call, ``acquire()`` returns a :class:`Permit` (admitted; carries the
   generation it was admitted in) or a :class:`Rejection` (not admitted).
3. When the call ends, exactly one of ``record(permit, outcome)`` (the
   dependency answered: success or failure, maybe slow) or
   ``release(permit)`` (neutral: cancelled, ignored, a rejection from an
   inner policy) is called with that permit.
   A call that waited in an inner policy's queue after it was admitted is
   checked again with ``readmit(permit)`` before it calls the dependency.
4. ``record``, ``isolate``, ``reset`` and ``state`` return the
   :class:`Transition` they caused, if any; ``acquire`` attaches it to the
   permit or rejection it returns. The breaker emits
   one event per transition returned, so a transition must be returned to
   exactly one caller.

Every transition bumps the *generation*. A permit from an older generation is
stale: recording or releasing it changes nothing. That is how calls still in
flight when the breaker opened can neither re-open it nor move its open time.

Probe slots are the exception: a probe holds its slot until it is recorded
or released, in whatever generation that happens. At no instant may more
than ``half_open_max_calls`` probes run, counting probes still running from
an earlier half-open round.
"""

from __future__ import annotations

import abc
import enum
from typing import TYPE_CHECKING, ClassVar

from resilient._clock import Clock
from resilient._events import EventBus
from resilient._state import CircuitState

if not TYPE_CHECKING:
    from resilient._dataclass import dataclass  # the same classes, cheaper to import
if TYPE_CHECKING:  # (second, so that documentation tools see the standard decorator too)
    from dataclasses import dataclass

__all__ = [
    "BreakerBackend",
    "BreakerConfig",
    "BreakerStats",
    "Outcome",
    "Permit",
    "Rejection",
    "Transition",
]


class Outcome(enum.IntEnum):
    """How an admitted call ended, as far as the statistics care.

    Bit 1 means "failed", bit 2 means "slow", so ``outcome & Outcome.FAILURE``
    and ``outcome & Outcome.SLOW_SUCCESS`` test each. Neutral outcomes are not
    recorded at all: they go to :meth:`BreakerBackend.release`.
    """

    SUCCESS = 0
    FAILURE = 1
    SLOW_SUCCESS = 2
    SLOW_FAILURE = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """The breaker's thresholds, validated by :func:`resilient.circuit_breaker`.

    Attributes:
        failure_threshold: Consecutive failures that open a CLOSED breaker
            (consecutive mode, when ``failure_rate`` is None).
        recovery_timeout: Seconds OPEN lasts before HALF_OPEN.
        half_open_max_calls: Concurrent probes HALF_OPEN admits.
        success_threshold: Probe successes that close a HALF_OPEN breaker.
        failure_rate: Failure fraction in (0, 1] that opens it, or None.
        window: Calls in the count window.
        window_seconds: Seconds in the time window, or None for a count window.
        minimum_calls: Calls the window must hold before a rate can open it.
        slow_call_duration: Seconds above which a call is slow, or None.
        slow_call_rate: Slow fraction in (0, 1] that opens it.
    """

    failure_threshold: int = 5
    recovery_timeout: float = 30.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    failure_rate: float | None = None
    window: int = 100
    window_seconds: float | None = None
    minimum_calls: int = 10
    slow_call_duration: float | None = None
    slow_call_rate: float = 1.0

    @property
    def uses_window(self) -> bool:
        """True when a window of recent calls is kept (a rate can open the breaker)."""
        return self.failure_rate is not None or self.slow_call_duration is not None


class Transition:
    """A state change a backend step caused.

    Args:
        previous: The state before.
        state: The state after.
    """

    __slots__ = ("previous", "state")

    def __init__(self, previous: CircuitState, state: CircuitState) -> None:
        self.previous = previous
        self.state = state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transition):
            return NotImplemented
        return (self.previous, self.state) == (other.previous, other.state)

    def __hash__(self) -> int:
        return hash((self.previous, self.state))

    def __repr__(self) -> str:
        return f"Transition({self.previous.name} -> {self.state.name})"


class Permit:
    """An admitted call's ticket, handed back to ``record`` or ``release``.

    Backends may share one permit object between calls that need no
    per-call state (every CLOSED call of one generation), so admitting a call
    in the common case allocates nothing.

    Args:
        generation: The generation the call was admitted in.
        probe: True for a HALF_OPEN probe (it holds one of the probe slots).
        transition: The transition admitting it caused (OPEN -> HALF_OPEN),
            or None.
        token: Backend-specific data (e.g. a probe id in a shared store).
    """

    __slots__ = ("generation", "probe", "token", "transition")

    def __init__(
        self,
        generation: int,
        probe: bool = False,
        transition: Transition | None = None,
        token: object = None,
    ) -> None:
        self.generation = generation
        self.probe = probe
        self.transition = transition
        self.token = token

    def __repr__(self) -> str:
        return f"Permit(generation={self.generation}, probe={self.probe})"


class Rejection:
    """A refused admission.

    Args:
        state: The state that refused it (OPEN, HALF_OPEN or ISOLATED).
        retry_after: Seconds until a probe may be admitted; 0.0 when HALF_OPEN
            is saturated (a probe slot may free at any moment); None when
            ISOLATED (unknown: until ``reset()``).
        transition: A transition the admission step caused anyway (a shared
            backend may apply other processes' news in the same step), or None.
    """

    __slots__ = ("retry_after", "state", "transition")

    def __init__(
        self, state: CircuitState, retry_after: float | None, transition: Transition | None = None
    ) -> None:
        self.state = state
        self.retry_after = retry_after
        self.transition = transition

    def __repr__(self) -> str:
        return f"Rejection(state={self.state.name}, retry_after={self.retry_after})"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStats:
    """A snapshot of a breaker's state and statistics.

    Attributes:
        state: The current state.
        generation: Bumped by every transition.
        calls: Calls in the current window (consecutive mode without a
            window: calls recorded since the breaker last closed).
        failures: Failures among them.
        slow_calls: Slow calls among them.
        consecutive_failures: Failures since the last success.
        probes_in_flight: HALF_OPEN probes running now.
        probe_successes: HALF_OPEN probe successes so far.
        retry_after: Seconds until HALF_OPEN while OPEN, else None.
    """

    state: CircuitState
    generation: int
    calls: int
    failures: int
    slow_calls: int
    consecutive_failures: int
    probes_in_flight: int
    probe_successes: int
    retry_after: float | None

    @property
    def failure_rate(self) -> float:
        """``failures / calls`` (0.0 when no call is recorded)."""
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """``slow_calls / calls`` (0.0 when no call is recorded)."""
        return self.slow_calls / self.calls if self.calls else 0.0


class BreakerBackend(abc.ABC):
    """Where a circuit breaker's state lives, and its atomic steps.

    Implement the sync methods; the async ones default to calling them. A
    backend that talks to a server overrides the ``*_async`` variants with
    non-blocking I/O (``redis.asyncio``) and leaves :attr:`nonblocking`
    False. The breaker calls the sync variants from sync code and the async
    variants from async code, except that for a :attr:`nonblocking` backend
    async code calls the sync ones directly (no coroutine per step).

    Time: the backend decides where "now" comes from. It gets the breaker's
    clock in :meth:`bind`; an in-process backend reads it, a shared one
    should use one time source for every process (e.g. the server's).
    """

    nonblocking: ClassVar[bool] = False
    """True if the sync methods never wait for I/O, so async code may call them."""
    quiet_permit: Permit | None = None
    """Optional fast path for in-process backends: a permit that
    :meth:`acquire` would return right now and with which a success changes
    nothing. While it is not None the breaker neither calls :meth:`acquire`
    nor records a success made with it. A backend must set it to None
    whenever either stops being true (and shared backends leave it None)."""
    waiters_admitted: bool = False
    """Optional fast path for in-process backends: True only while every call
    admitted earlier may go ahead now (the breaker is CLOSED, known without
    I/O). The breaker then skips :meth:`readmit` for the calls that waited in
    an inner queue. A plain attribute, read once per such call; shared
    backends leave it False."""

    @abc.abstractmethod
    def bind(
        self,
        config: BreakerConfig,
        clock: Clock,
        *,
        name: str | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """Receive the breaker's configuration and clock, once, before any other call.

        Args:
            config: The thresholds and windows.
            clock: The breaker's clock.
            name: The breaker's name (a shared backend may key its state by it).
            bus: The breaker's event bus (for a backend's own events, such as
                ``BackendDegraded``).

        Raises:
            ValueError: The backend is already bound to a different configuration.
        """

    @abc.abstractmethod
    def acquire(self) -> Permit | Rejection:
        """Decide whether a call may run, atomically.

        Moves OPEN to HALF_OPEN once the recovery timeout has passed, counts
        HALF_OPEN probe permits, and refuses calls while OPEN, ISOLATED or
        HALF_OPEN with every probe slot taken.

        Returns:
            A :class:`Permit` (its ``transition`` set if admitting the call
            changed the state) or a :class:`Rejection`.
        """

    @abc.abstractmethod
    def record(self, permit: Permit, outcome: Outcome) -> Transition | None:
        """Record how an admitted call ended and apply the transition it causes.

        A stale permit (older generation) changes nothing.

        Args:
            permit: What :meth:`acquire` returned for the call.
            outcome: Success or failure, and whether it was slow.

        Returns:
            The transition this caused (CLOSED -> OPEN, HALF_OPEN -> OPEN or
            HALF_OPEN -> CLOSED), or None.
        """

    @abc.abstractmethod
    def release(self, permit: Permit) -> None:
        """End an admitted call that counts as nothing, freeing its probe slot.

        Args:
            permit: What :meth:`acquire` returned for the call.
        """

    @abc.abstractmethod
    def isolate(self) -> Transition | None:
        """Hold the breaker open (ISOLATED) until :meth:`reset`.

        Returns:
            The transition, or None if it was already ISOLATED.
        """

    @abc.abstractmethod
    def reset(self) -> Transition | None:
        """Close the breaker and clear its statistics.

        Returns:
            The transition, or None if it was already CLOSED.
        """

    @abc.abstractmethod
    def state(self) -> tuple[CircuitState, Transition | None]:
        """Return the current state, applying a due OPEN -> HALF_OPEN move.

        Returns:
            The state and the transition reading it caused, or None.
        """

    @abc.abstractmethod
    def stats(self) -> BreakerStats:
        """Return a snapshot of the state and statistics (no transition).

        Returns:
            The snapshot.
        """

    def readmit(self, permit: Permit) -> Rejection | None:
        """Check again a call admitted with *permit* that then waited, before it calls the dependency.

        A call admitted while CLOSED may wait a long time in an inner
        policy's queue (a bulkhead's); if the breaker opened meanwhile, the
        call must not reach the dependency. The breaker asks this only for a
        call that really waited. It is no transition: nothing changes.

        The default reads :meth:`stats`; in-process backends answer from
        memory. Override it (and :meth:`readmit_async`) if ``stats`` is costly.

        Args:
            permit: What :meth:`acquire` returned for the call.

        Returns:
            None if the call may go ahead: the breaker has not moved on since
            it was admitted, or it is CLOSED again (the call is then stale:
            its outcome will not count). Otherwise the :class:`Rejection`
            (OPEN, ISOLATED, or HALF_OPEN in a later round).
        """
        stats = self.stats()
        if stats.generation == permit.generation or stats.state is CircuitState.CLOSED:
            return None
        if stats.state is CircuitState.OPEN:
            return Rejection(stats.state, stats.retry_after or 0.0)
        return Rejection(stats.state, None if stats.state is CircuitState.ISOLATED else 0.0)

    async def acquire_async(self) -> Permit | Rejection:
        """Async :meth:`acquire` (default: calls the sync one).

        Returns:
            As :meth:`acquire`.
        """
        return self.acquire()

    async def record_async(self, permit: Permit, outcome: Outcome) -> Transition | None:
        """Async :meth:`record` (default: calls the sync one).

        Args:
            permit: As :meth:`record`.
            outcome: As :meth:`record`.

        Returns:
            As :meth:`record`.
        """
        return self.record(permit, outcome)

    async def release_async(self, permit: Permit) -> None:
        """Async :meth:`release` (default: calls the sync one).

        Args:
            permit: As :meth:`release`.
        """
        self.release(permit)

    async def readmit_async(self, permit: Permit) -> Rejection | None:
        """Async :meth:`readmit` (default: calls the sync one).

        Args:
            permit: As :meth:`readmit`.

        Returns:
            As :meth:`readmit`.
        """
        return self.readmit(permit)

    async def isolate_async(self) -> Transition | None:
        """Async :meth:`isolate` (default: calls the sync one).

        Returns:
            As :meth:`isolate`.
        """
        return self.isolate()

    async def reset_async(self) -> Transition | None:
        """Async :meth:`reset` (default: calls the sync one).

        Returns:
            As :meth:`reset`.
        """
        return self.reset()

    async def state_async(self) -> tuple[CircuitState, Transition | None]:
        """Async :meth:`state` (default: calls the sync one).

        Returns:
            As :meth:`state`.
        """
        return self.state()
