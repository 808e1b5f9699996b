"""A Hypothesis state machine: the breaker against a small model of its contract.

Calls complete at once (``breaker.call``) or stay in flight (admitted now,
settled by a later step), so the machine explores calls that straddle
transitions. Time moves only by FakeClock steps. After every step the state,
the probe count (probes running from any half-open round) and the emitted
events must match the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilient import CircuitBreaker, CircuitOpenError, CircuitState, EventBus, circuit_breaker
from resilient.backends import Permit
from resilient.events import CircuitStateChanged, Event
from resilient.testing import FakeClock

CLOSED, OPEN, HALF_OPEN, ISOLATED = (
    CircuitState.CLOSED,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.ISOLATED,
)
OUTCOMES = ["success", "failure", "ignored", "unmatched", "interrupt"]


class Boom(Exception):
    """Counted as a failure (matches `on`)."""


class Ignored(Exception):
    """Neutral (matches `ignore`)."""


class Other(Exception):
    """Matches neither `on` nor `ignore`: a success."""


def exception_for(outcome: str) -> BaseException | None:
    """The exception a call with *outcome* raises, or None for a plain success."""
    return {
        "success": None,
        "failure": Boom(),
        "ignored": Ignored(),
        "unmatched": Other(),
        "interrupt": KeyboardInterrupt(),
    }[outcome]


@dataclass
class Model:
    """The breaker contract, written as plainly as possible."""

    threshold: int
    recovery: float
    max_probes: int
    successes_needed: int
    state: CircuitState = CLOSED
    generation: int = 0
    failures: int = 0
    retry_at: float = 0.0
    probes: int = 0
    successes: int = 0
    transitions: list[tuple[CircuitState, CircuitState]] = field(default_factory=list)

    def move(self, to: CircuitState, now: float, *, report: bool = True) -> None:
        if report:
            self.transitions.append((self.state, to))
        self.state = to
        self.generation += 1
        self.successes = 0  # probes still running keep their slots, whatever the round
        if to is OPEN:
            self.retry_at = now + self.recovery
        if to is CLOSED:
            self.failures = 0

    def read(self, now: float) -> CircuitState:
        if self.state is OPEN and now >= self.retry_at:
            self.move(HALF_OPEN, now)
        return self.state

    def admit(self, now: float) -> tuple[int, bool] | float | None:
        """(generation, probe) if admitted, else the rejection's retry_after."""
        if self.state is CLOSED:
            return self.generation, False
        if self.state is OPEN:
            if now < self.retry_at:
                return self.retry_at - now
            self.move(HALF_OPEN, now)
        if self.state is HALF_OPEN:
            if self.probes < self.max_probes:
                self.probes += 1
                return self.generation, True
            return 0.0
        return None

    def finish(self, generation: int, probe: bool, outcome: str, now: float) -> None:
        if probe:
            self.probes -= 1  # a probe frees its slot whenever it ends
        if generation != self.generation:
            return
        neutral = outcome in ("ignored", "interrupt")
        failed = outcome == "failure"
        if probe:
            if neutral:
                return
            if failed:
                self.move(OPEN, now)
                return
            self.successes += 1
            if self.successes >= self.successes_needed:
                self.move(CLOSED, now)
        elif not neutral:
            self.failures = self.failures + 1 if failed else 0
            if self.failures >= self.threshold:
                self.move(OPEN, now)


@dataclass
class InFlight:
    """A call admitted by the breaker and not yet settled."""

    permit: Permit
    generation: int
    probe: bool


class BreakerMachine(RuleBasedStateMachine):
    """Random interleavings of calls, clock steps, isolate() and reset()."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe(self.events.append, CircuitStateChanged)
        self.in_flight: list[InFlight] = []
        self.breaker: CircuitBreaker
        self.model: Model

    @initialize(
        threshold=st.integers(1, 4),
        recovery=st.sampled_from([1.0, 2.5, 10.0]),
        max_probes=st.integers(1, 3),
        successes_needed=st.integers(1, 3),
    )
    def build(self, threshold: int, recovery: float, max_probes: int, successes_needed: int) -> None:
        self.breaker = circuit_breaker(
            failure_threshold=threshold,
            recovery_timeout=recovery,
            half_open_max_calls=max_probes,
            success_threshold=successes_needed,
            on=Boom,
            ignore=Ignored,
            clock=self.clock,
            bus=self.bus,
        )
        self.model = Model(threshold, recovery, max_probes, successes_needed)

    @rule(outcome=st.sampled_from(OUTCOMES))
    def complete_call(self, outcome: str) -> None:
        self.call(outcome)

    def call(self, outcome: str) -> None:
        now = self.clock.monotonic()
        expected = self.model.admit(now)
        error = exception_for(outcome)

        def body() -> str:
            if error is not None:
                raise error
            return "ok"

        raised: BaseException | None = None
        try:
            result: object = self.breaker.call(body)
        except BaseException as exc:
            raised, result = exc, None
        if isinstance(raised, CircuitOpenError):
            assert not isinstance(expected, tuple), "rejected a call the model admits"
            assert raised.retry_after == expected
            return
        assert isinstance(expected, tuple), "admitted a call the model rejects"
        assert (raised, result) == ((error, None) if error is not None else (None, "ok"))
        self.model.finish(*expected, outcome, now)

    @rule()
    def start(self) -> None:
        expected = self.model.admit(self.clock.monotonic())
        got = self.breaker.backend.acquire()
        if isinstance(expected, tuple):
            self.in_flight.append(InFlight(self.breaker._admit(got, None), *expected))
            return
        with pytest.raises(CircuitOpenError) as info:
            self.breaker._admit(got, None)
        assert info.value.retry_after == expected

    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        if not self.in_flight:
            return
        call = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        self.breaker._settle(call.permit, exception_for(outcome), self.clock.monotonic(), None)
        self.model.finish(call.generation, call.probe, outcome, self.clock.monotonic())

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(times=st.integers(1, 4))
    def burst_of_failures(self, times: int) -> None:
        for _ in range(times):
            self.call("failure")

    # Mostly "nothing": isolate/reset every step would hide the rest of the machine.
    @rule(action=st.sampled_from(["isolate", "reset", "nothing", "nothing", "nothing", "nothing"]))
    def admin(self, action: str) -> None:
        now = self.clock.monotonic()
        if action == "nothing":
            return
        if action == "isolate":
            self.breaker.isolate()
            if self.model.state is not ISOLATED:
                self.model.move(ISOLATED, now)
        else:
            self.breaker.reset()
            self.model.move(CLOSED, now, report=self.model.state is not CLOSED)

    @rule()
    def read_state(self) -> None:
        assert self.breaker.state is self.model.read(self.clock.monotonic())

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "model"):
            return
        stats = self.breaker.stats()
        assert stats.state is self.model.state
        assert stats.probes_in_flight == self.model.probes
        assert [(e.previous, e.state) for e in self.events if isinstance(e, CircuitStateChanged)] == (
            self.model.transitions
        )


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestBreakerStateMachine = BreakerMachine.TestCase
