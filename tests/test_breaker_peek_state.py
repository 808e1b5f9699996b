"""CircuitBreaker.peek_state(): the state as `.state` reports it, read without side effects."""

from __future__ import annotations

import pytest

import resilient
from resilient import CircuitState, EventBus
from resilient.testing import FakeClock, capture_events


def opened(clock: FakeClock, bus: EventBus) -> resilient.CircuitBreaker:
    """A breaker that one failure has opened (recovery timeout 10 s)."""
    breaker = resilient.circuit_breaker(failure_threshold=1, recovery_timeout=10, clock=clock, bus=bus)

    @breaker
    def charge() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        charge()
    return breaker


@pytest.mark.parametrize(("elapsed", "expected"), [(5, CircuitState.OPEN), (10, CircuitState.HALF_OPEN)])
def test_peek_state_agrees_with_state(clock: FakeClock, elapsed: float, expected: CircuitState) -> None:
    """peek_state() reports what .state would: OPEN, then HALF_OPEN once the recovery timeout passed."""
    breaker = opened(clock, EventBus())
    clock.advance(elapsed)
    assert (breaker.peek_state(), breaker.state) == (expected, expected)


def test_peek_state_moves_nothing(clock: FakeClock) -> None:
    """A due OPEN -> HALF_OPEN move is reported but neither applied nor announced."""
    bus = EventBus()
    breaker = opened(clock, bus)
    clock.advance(11)
    with capture_events(bus=bus) as events:
        peeked = breaker.peek_state()
    assert (peeked, events, breaker.stats().state) == (CircuitState.HALF_OPEN, [], CircuitState.OPEN)


@pytest.mark.parametrize("state", [CircuitState.CLOSED, CircuitState.ISOLATED])
def test_peek_state_of_closed_and_isolated(state: CircuitState) -> None:
    """CLOSED and ISOLATED read as themselves."""
    breaker = resilient.circuit_breaker()
    if state is CircuitState.ISOLATED:
        breaker.isolate()
    assert breaker.peek_state() is state
