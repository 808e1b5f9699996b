"""One circuit breaker guarding several functions of one dependency.

A breaker is its own state: decorate three functions with the same breaker
object and failures of any of them open it for all of them, because they all
talk to the same (broken) payment service. Time is virtual (``FakeClock``),
so the 30 s recovery timeout passes instantly. Exits 0.

    python examples/shared_breaker.py
"""

from __future__ import annotations

import asyncio

import resilient
from resilient import CircuitOpenError, CircuitState, circuit_breaker
from resilient.events import CircuitStateChanged, Event
from resilient.testing import FakeClock

clock = FakeClock()


class PaymentService:
    """A fake remote service that can be switched off."""

    def __init__(self) -> None:
        self.up = True
        self.requests = 0

    def request(self, what: str) -> str:
        self.requests += 1
        if not self.up:
            raise ConnectionError(f"payments unreachable ({what})")
        return f"{what}: ok"


service = PaymentService()

# One breaker for the whole dependency. The functions below share its state.
payments = circuit_breaker(
    failure_threshold=3, recovery_timeout=30.0, on=ConnectionError, name="payments", clock=clock
)


@payments
async def charge(amount: int) -> str:
    return service.request(f"charge {amount}")


@payments
async def refund(amount: int) -> str:
    return service.request(f"refund {amount}")


@payments
def status() -> str:  # a sync function: the same breaker guards it (thread-safe)
    return service.request("status")


def state() -> CircuitState:
    """The breaker's state, read fresh (a property: it moves with the clock)."""
    return payments.state


def on_transition(event: Event) -> None:
    """Print every state change of the breaker."""
    assert isinstance(event, CircuitStateChanged)
    print(f"  [{event.name}] {event.previous.value} -> {event.state.value} at t={event.time:g}s")


async def main() -> None:
    """Break the service, watch every function get rejected, then recover."""
    with resilient.subscribe(on_transition, CircuitStateChanged):
        print("the service goes down; three failed charges open the breaker")
        service.up = False
        for amount in (10, 20, 30):
            try:
                await charge(amount)
            except ConnectionError as exc:
                print(f"  charge({amount}) failed: {exc}")
        assert state() == CircuitState.OPEN

        print("refund and status are rejected too, without a request")
        before = service.requests
        try:
            await refund(5)
        except CircuitOpenError as exc:
            print(f"  refund: {exc}")
        try:
            status()
        except CircuitOpenError as exc:
            print(f"  status: {exc}")
        assert service.requests == before

        print("30 s later (virtual time) one probe is let through; it succeeds")
        service.up = True
        clock.advance(30.0)
        print(f"  {status()}")
        assert state() == CircuitState.CLOSED

        print("the context-manager form shares the same state")
        async with payments:
            print(f"  {service.request('batch settle')}")
    assert payments in resilient.pipeline_of(refund).policies


if __name__ == "__main__":
    asyncio.run(main())
