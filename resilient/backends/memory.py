"""The default backend: a circuit breaker's state in this process's memory.

Thread-safe without serialising calls: a lock guards only the few updates a
step makes, never the protected call. The CLOSED fast path takes no lock at
all: admission reads one attribute (a permit shared by every CLOSED call of
the current generation), and a success in consecutive mode with no failure
to forget writes nothing.

Probes. Every HALF_OPEN probe gets its own permit, registered (by a weak
reference) until the call settles it with ``record`` or ``release``, in
whatever generation that happens: a probe from an earlier half-open round
that is still running keeps its slot, so at no instant do more than
``half_open_max_calls`` probes run. A probe permit nobody holds any more
(its call was interrupted before it could settle) frees its slot once it is
garbage, so an interrupt can never leave HALF_OPEN stuck.

Interrupts. A ``KeyboardInterrupt`` can land wherever the interpreter checks
for signals (a Python function starting, any call returning), never between
two plain stores. Each step therefore takes its lock with ``with``, does
what can be interrupted first (reading the clock, allocating) and then
commits with plain stores, transitions included: an interrupted step makes
its transition completely or not at all. At worst the interrupted call
counts as nothing, or is in the window without its verdict (the rates are
looked at again on the next record).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, ClassVar

from resilient._breaker_stats import CountWindow, TimeWindow
from resilient._clock import Clock
from resilient._events import EventBus
from resilient._state import CircuitState

from ._base import BreakerBackend, BreakerConfig, BreakerStats, Outcome, Permit, Rejection, Transition

__all__ = ["MemoryBackend"]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_ISOLATED = CircuitState.ISOLATED
_SUCCESS = Outcome.SUCCESS

# Transitions are plain values: sharing them lets a step commit without allocating.
_TO: dict[tuple[CircuitState, CircuitState], Transition] = {
    (a, b): Transition(a, b) for a in CircuitState for b in CircuitState
}
_HALF_OPENED = _TO[_OPEN, _HALF_OPEN]


class _Probe(Permit):
    """A HALF_OPEN probe's own permit (weakly referenced by the backend until settled)."""

    __slots__ = ("__weakref__",)


class MemoryBackend(BreakerBackend):
    """Breaker state in process memory (the default: one per breaker).

    Share one bound instance between breakers only if they have the same
    configuration and clock; they then share one state.
    """

    nonblocking: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "acquire" in cls.__dict__ or "record" in cls.__dict__:
            # A subclass that watches or changes the steps must see every call:
            # no fast path that skips them (writes of the permit are ignored).
            cls.quiet_permit = property(lambda self: None, lambda self, value: None)  # type: ignore[assignment]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: BreakerConfig | None = None
        self._clock: Clock | None = None
        self._state = _CLOSED
        self._gen = 0
        # Shared by every CLOSED call of this generation; None when not CLOSED,
        # so one unlocked read both checks the state and yields the permit.
        self._closed_permit: Permit | None = Permit(0)
        self.waiters_admitted = True  # while CLOSED: see BreakerBackend.waiters_admitted
        # _closed_permit while a success has nothing to forget (plain mode, no failures).
        self.quiet_permit: Permit | None = self._closed_permit
        self._retry_at = 0.0
        self._consecutive = 0
        self._probe_successes = 0
        # Probes running now, from any half-open round: token -> weak permit.
        self._probes: dict[int, weakref.ref[Permit]] = {}
        self._tokens = itertools.count()
        self._window: CountWindow | TimeWindow | None = None
        self._plain = True  # no window: consecutive mode without slow-call detection
        self._timed = False
        self._min_calls = 1
        self._threshold = 1
        self._failure_rate: float | None = None
        self._slow_rate: float | None = None
        self._recovery = 0.0
        self._max_probes = 1
        self._successes_needed = 1

    def __repr__(self) -> str:
        return f"<MemoryBackend state={self._state.name} generation={self._gen}>"

    def bind(
        self,
        config: BreakerConfig,
        clock: Clock,
        *,
        name: str | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """Take the configuration and clock; binding again needs the same ones.

        Args:
            config: The thresholds and windows.
            clock: The breaker's clock.
            name: Unused: in-process state needs no key.
            bus: Unused: this backend emits no events of its own.

        Raises:
            ValueError: Already bound to a different configuration or clock.
        """
        window: CountWindow | TimeWindow | None = None
        min_calls = config.minimum_calls
        if config.uses_window:
            if config.window_seconds is not None:
                window = TimeWindow(config.window_seconds)
            else:
                window = CountWindow(config.window)
                # A count window never holds more than `window` calls.
                min_calls = min(config.minimum_calls, config.window)
        with self._lock:
            if self._config is not None:
                if self._config != config or self._clock is not clock:
                    raise ValueError(
                        "backend is already bound to a breaker with another configuration or clock; "
                        "give each breaker its own MemoryBackend"
                    )
                return
            self._threshold = config.failure_threshold
            self._recovery = config.recovery_timeout
            self._max_probes = config.half_open_max_calls
            self._successes_needed = config.success_threshold
            self._failure_rate = config.failure_rate
            self._slow_rate = config.slow_call_rate if config.slow_call_duration is not None else None
            self._min_calls = min_calls
            if window is not None:
                self._window = window
                self._plain = False
                self._timed = isinstance(window, TimeWindow)
                self.quiet_permit = None
            self._clock = clock
            self._config = config  # last: bound only once everything is set

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            raise RuntimeError("MemoryBackend used before bind()")
        return clock.monotonic()

    # --- transitions (under the lock; plain stores only: they cannot be interrupted half-way) --

    def _open(self, now: float) -> Transition:
        previous = self._state
        self._state = _OPEN
        self._gen += 1
        self._closed_permit = None
        self.waiters_admitted = False
        self.quiet_permit = None
        self._retry_at = now + self._recovery
        self._probe_successes = 0
        return _TO[previous, _OPEN]

    def _half_open(self) -> Transition:
        self._state = _HALF_OPEN
        self._gen += 1
        self._probe_successes = 0
        return _HALF_OPENED

    def _close(self, permit: Permit) -> Transition:
        """Close, with *permit* (``Permit(generation + 1)``) as the new generation's CLOSED permit."""
        previous = self._state
        self._state = _CLOSED
        self._gen += 1
        self._consecutive = 0
        self._probe_successes = 0
        self._closed_permit = permit
        self.waiters_admitted = True
        self.quiet_permit = permit if self._plain else None
        return _TO[previous, _CLOSED]

    def _admit_probe(self, transition: Transition | None) -> Permit | Rejection:
        """Admit a HALF_OPEN probe if fewer than ``half_open_max_calls`` run (of any round)."""
        probes = self._probes
        if len(probes) >= self._max_probes:
            # Drop the permits nobody holds any more (calls interrupted before settling).
            for token in [t for t, ref in probes.items() if ref() is None]:
                probes.pop(token, None)
            if len(probes) >= self._max_probes:
                return Rejection(_HALF_OPEN, 0.0, transition)
        token = next(self._tokens)
        permit = _Probe(self._gen, True, transition, token)
        probes[token] = weakref.ref(permit)  # the commit: the call now holds a probe slot
        return permit

    # --- steps -----------------------------------------------------------------

    def acquire(self) -> Permit | Rejection:
        """Admit a call: lock-free while CLOSED.

        Returns:
            A permit, or a rejection with ``retry_after``.
        """
        permit = self._closed_permit
        if permit is not None:
            return permit
        with self._lock:
            state = self._state
            if state is _OPEN:
                now = self._now()
                if now < self._retry_at:
                    return Rejection(_OPEN, self._retry_at - now)
                return self._admit_probe(self._half_open())
            if state is _HALF_OPEN:
                return self._admit_probe(None)
            if state is _ISOLATED:
                return Rejection(_ISOLATED, None)
            # CLOSED again since the unlocked read.
            assert self._closed_permit is not None
            return self._closed_permit

    def record(self, permit: Permit, outcome: Outcome) -> Transition | None:
        """Count an outcome; open or close the breaker when a threshold is reached.

        Args:
            permit: The call's permit.
            outcome: How it ended.

        Returns:
            The transition caused, or None.
        """
        # The hot path: a CLOSED success in consecutive mode with no failure to
        # forget changes nothing (one identity check stands for "current
        # generation, not a probe").
        if outcome is _SUCCESS and permit is self._closed_permit and self._plain and not self._consecutive:
            return None
        if permit.probe:
            return self._record_probe(permit, outcome)
        # Generations only grow, so a mismatch seen without the lock is final.
        if permit.generation != self._gen:
            return None
        window = self._window
        if window is None:
            if not outcome & 1:
                # A success only has to forget earlier failures; with none, write nothing.
                if self._consecutive:
                    with self._lock:
                        if permit.generation == self._gen:
                            self._consecutive = 0
                            self.quiet_permit = self._closed_permit if self._plain else None
                return None
            with self._lock:
                if permit.generation != self._gen:
                    return None
                consecutive = self._consecutive + 1
                transition = None
                if consecutive >= self._threshold:
                    transition = self._open(self._now())
                self._consecutive = consecutive
                self.quiet_permit = None
                return transition
        with self._lock:
            if permit.generation != self._gen:
                return None
            now = self._now() if self._timed else 0.0
            # Interrupted after this, the call is counted but the decision
            # waits for the next record (a rate is looked at on every record).
            window.add(outcome, now)
            consecutive = self._consecutive + 1 if outcome & 1 else 0
            calls = window.calls
            transition = None
            if (self._failure_rate is None and consecutive >= self._threshold) or (
                calls >= self._min_calls
                and (
                    (self._failure_rate is not None and window.failures / calls >= self._failure_rate)
                    or (self._slow_rate is not None and window.slow / calls >= self._slow_rate)
                )
            ):
                transition = self._open(now if self._timed else self._now())
            self._consecutive = consecutive
            return transition

    def _record_probe(self, permit: Permit, outcome: Outcome) -> Transition | None:
        with self._lock:
            token = permit.token
            if token not in self._probes:
                return None  # settled already
            current = permit.generation == self._gen
            # What can be interrupted first: the clock, the new CLOSED permit.
            now = self._now() if current and outcome else 0.0
            closing = current and not outcome and self._probe_successes + 1 >= self._successes_needed
            closed = Permit(self._gen + 1) if closing else None
            # Free the slot (a probe from an earlier round does nothing else).
            # Interrupted after this, the probe simply counts as nothing.
            del self._probes[token]
            if not current:
                return None
            if outcome:
                # A failed or slow probe: the dependency is not back yet.
                return self._open(now)
            if closed is not None:
                if self._window is not None:
                    self._window.clear()
                return self._close(closed)
            self._probe_successes += 1
            return None

    def release(self, permit: Permit) -> None:
        """Free a neutral call's probe slot; nothing else changes.

        Args:
            permit: The call's permit.
        """
        if permit.probe:
            with self._lock:
                self._probes.pop(permit.token, None)  # type: ignore[call-overload]

    def isolate(self) -> Transition | None:
        """Hold the breaker open until :meth:`reset`.

        Returns:
            The transition, or None if already ISOLATED.
        """
        with self._lock:
            previous = self._state
            if previous is _ISOLATED:
                return None
            self._state = _ISOLATED
            self._gen += 1
            self._closed_permit = None
            self.waiters_admitted = False
            self.quiet_permit = None
            self._probe_successes = 0
            return _TO[previous, _ISOLATED]

    def reset(self) -> Transition | None:
        """Close the breaker and clear its statistics (calls in flight become stale).

        Probes still running keep their slots until they end.

        Returns:
            The transition, or None if it was already CLOSED.
        """
        with self._lock:
            previous = self._state
            closed = Permit(self._gen + 1)
            if self._window is not None:
                self._window.clear()
            transition = self._close(closed)
            return None if previous is _CLOSED else transition

    def state(self) -> tuple[CircuitState, Transition | None]:
        """Return the state, moving OPEN to HALF_OPEN if the recovery timeout passed.

        Returns:
            The state and the transition reading it caused, or None.
        """
        if self._closed_permit is not None:
            return _CLOSED, None
        with self._lock:
            if self._state is _OPEN and self._now() >= self._retry_at:
                return _HALF_OPEN, self._half_open()
            return self._state, None

    def readmit(self, permit: Permit) -> Rejection | None:
        """Check again a call admitted with *permit* that then waited (see :class:`BreakerBackend`).

        Args:
            permit: The call's permit.

        Returns:
            None if it may go ahead, else the rejection.
        """
        if permit.generation == self._gen or self._closed_permit is not None:
            return None
        with self._lock:
            state = self._state
            if state is _CLOSED or permit.generation == self._gen:
                return None
            if state is _OPEN:
                return Rejection(_OPEN, max(0.0, self._retry_at - self._now()))
            return Rejection(state, None if state is _ISOLATED else 0.0)

    def stats(self) -> BreakerStats:
        """Return a snapshot of the state and statistics.

        Returns:
            The snapshot (a due OPEN -> HALF_OPEN move is not applied).
        """
        with self._lock:
            now = self._now()
            window = self._window
            if window is not None:
                window.refresh(now)
            return BreakerStats(
                state=self._state,
                generation=self._gen,
                calls=window.calls if window is not None else 0,
                failures=window.failures if window is not None else 0,
                slow_calls=window.slow if window is not None else 0,
                consecutive_failures=self._consecutive,
                probes_in_flight=sum(1 for ref in self._probes.values() if ref() is not None),
                probe_successes=self._probe_successes,
                retry_after=max(0.0, self._retry_at - now) if self._state is _OPEN else None,
            )
