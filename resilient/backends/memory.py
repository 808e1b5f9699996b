"""The default backend: a circuit breaker's state in this process's memory.

Thread-safe without serialising calls: a lock guards only the few updates a
step makes, never the protected call. The CLOSED fast path takes no lock at
all: admission reads one attribute (a permit shared by every CLOSED call of
the current generation), and a success in consecutive mode with no failure
to forget writes nothing.
"""

from __future__ import annotations

import threading
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
        # _closed_permit while a success has nothing to forget (plain mode, no failures).
        self.quiet_permit: Permit | None = self._closed_permit
        self._probe_permit = Permit(0, True)
        self._retry_at = 0.0
        self._consecutive = 0
        self._probes = 0
        self._probe_successes = 0
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
        with self._lock:
            if self._config is not None:
                if self._config != config or self._clock is not clock:
                    raise ValueError(
                        "backend is already bound to a breaker with another configuration or clock; "
                        "give each breaker its own MemoryBackend"
                    )
                return
            self._config = config
            self._clock = clock
            self._threshold = config.failure_threshold
            self._recovery = config.recovery_timeout
            self._max_probes = config.half_open_max_calls
            self._successes_needed = config.success_threshold
            self._failure_rate = config.failure_rate
            self._slow_rate = config.slow_call_rate if config.slow_call_duration is not None else None
            self._min_calls = config.minimum_calls
            if config.uses_window:
                self._plain = False
                self.quiet_permit = None
                if config.window_seconds is not None:
                    self._window = TimeWindow(config.window_seconds)
                    self._timed = True
                else:
                    self._window = CountWindow(config.window)
                    # A count window never holds more than `window` calls.
                    self._min_calls = min(config.minimum_calls, config.window)

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            raise RuntimeError("MemoryBackend used before bind()")
        return clock.monotonic()

    # --- transitions (called with the lock held) --------------------------------

    def _open(self, now: float) -> Transition:
        previous = self._state
        self._state = _OPEN
        self._gen += 1
        self._closed_permit = None
        self.quiet_permit = None
        self._retry_at = now + self._recovery
        self._probes = 0
        self._probe_successes = 0
        return Transition(previous, _OPEN)

    def _half_open(self) -> Transition:
        self._state = _HALF_OPEN
        self._gen += 1
        self._probe_permit = Permit(self._gen, True)
        self._probes = 0
        self._probe_successes = 0
        return Transition(_OPEN, _HALF_OPEN)

    def _close(self) -> Transition:
        previous = self._state
        self._state = _CLOSED
        self._gen += 1
        self._consecutive = 0
        self._probes = 0
        self._probe_successes = 0
        if self._window is not None:
            self._window.clear()
        self._closed_permit = Permit(self._gen)
        self.quiet_permit = self._closed_permit if self._plain else None
        return Transition(previous, _CLOSED)

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
                transition = self._half_open()
                self._probes = 1
                return Permit(self._gen, True, transition)
            if state is _HALF_OPEN:
                if self._probes < self._max_probes:
                    self._probes += 1
                    return self._probe_permit
                return Rejection(_HALF_OPEN, 0.0)
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
        # Generations only grow, so a mismatch seen without the lock is final.
        if permit.generation != self._gen:
            return None
        if permit.probe:
            return self._record_probe(permit, outcome)
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
                self._consecutive += 1
                self.quiet_permit = None
                if self._consecutive >= self._threshold:
                    return self._open(self._now())
                return None
        with self._lock:
            if permit.generation != self._gen:
                return None
            now = self._now() if self._timed else 0.0
            window.add(outcome, now)
            if outcome & 1:
                self._consecutive += 1
            else:
                self._consecutive = 0
            if self._failure_rate is None and self._consecutive >= self._threshold:
                return self._open(now if self._timed else self._now())
            calls = window.calls
            if calls < self._min_calls:
                return None
            if (self._failure_rate is not None and window.failures / calls >= self._failure_rate) or (
                self._slow_rate is not None and window.slow / calls >= self._slow_rate
            ):
                return self._open(now if self._timed else self._now())
            return None

    def _record_probe(self, permit: Permit, outcome: Outcome) -> Transition | None:
        with self._lock:
            if permit.generation != self._gen:
                return None
            self._probes -= 1
            if outcome:
                # A failed or slow probe: the dependency is not back yet.
                return self._open(self._now())
            self._probe_successes += 1
            if self._probe_successes >= self._successes_needed:
                return self._close()
            return None

    def release(self, permit: Permit) -> None:
        """Free a neutral call's probe slot; nothing else changes.

        Args:
            permit: The call's permit.
        """
        if not permit.probe or permit.generation != self._gen:
            return
        with self._lock:
            if permit.generation == self._gen:
                self._probes -= 1

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
            self.quiet_permit = None
            self._probes = 0
            self._probe_successes = 0
            return Transition(previous, _ISOLATED)

    def reset(self) -> Transition | None:
        """Close the breaker and clear its statistics (calls in flight become stale).

        Returns:
            The transition, or None if it was already CLOSED.
        """
        with self._lock:
            previous = self._state
            transition = self._close()
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
                probes_in_flight=self._probes,
                probe_successes=self._probe_successes,
                retry_after=max(0.0, self._retry_at - now) if self._state is _OPEN else None,
            )
