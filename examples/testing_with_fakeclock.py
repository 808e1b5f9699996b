"""Test code that uses resilient without ever sleeping for real.

Four tools from ``resilient.testing``:

- ``FakeClock``: pass ``clock=`` to a policy; its sleeps advance virtual time
  at once (so backoff waits are instant and recorded) and its timers fire in
  virtual time (so a ``timeout`` expires without waiting);
- ``use_clock(FakeClock())``: the same for policies built without a clock,
  for code you cannot inject a clock into (the ``resilient_clock`` pytest
  fixture does this for one test);
- ``capture_events()``: records what the default bus emits inside a block;
- ``set_testing(True)``: skips every backoff wait globally.

The functions below are written as pytest tests (``pytest
examples/testing_with_fakeclock.py`` collects them); running the file calls
each in turn. Exits 0 in well under a second.

    python examples/testing_with_fakeclock.py
"""

from __future__ import annotations

import asyncio
import math

import resilient
from resilient import TimeoutExceededError, backoff, retry, timeout
from resilient.events import RetriesExhausted, RetryScheduled, TimeoutElapsed
from resilient.testing import FakeClock, capture_events, use_clock


# --- the code under test: a client whose policies take an injectable clock ----
class InventoryClient:
    """Application code: policies are built with the clock it is given."""

    def __init__(self, transport: list[Exception | int], clock: resilient.Clock | None = None) -> None:
        self.transport = transport  # scripted answers: an exception to raise, or a stock level
        self.calls = 0
        policy = resilient.pipeline(
            timeout(5.0, clock=clock),
            retry(attempts=4, on=ConnectionError, backoff=backoff.exponential(jitter="none"), clock=clock),
        )
        self.stock = policy(self._stock)

    async def _stock(self, sku: str) -> int:
        self.calls += 1
        answer = self.transport.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


# Module-level code you cannot inject a clock into (the default clock, real waits).
@retry(attempts=3, on=ConnectionError, backoff=2.0)
def legacy_sync_lookup(answers: list[Exception | str]) -> str:
    answer = answers.pop(0)
    if isinstance(answer, Exception):
        raise answer
    return answer


# --- the tests -----------------------------------------------------------------
async def test_backoff_waits_are_virtual() -> None:
    """Two failures then success wait 0.1 s then 0.2 s of virtual time."""
    clock = FakeClock()
    client = InventoryClient([ConnectionError(), ConnectionError(), 7], clock=clock)

    assert await client.stock("sku-1") == 7

    assert clock.sleeps == [0.1, 0.2]
    assert math.isclose(clock.monotonic(), 0.3)
    assert client.calls == 3


async def test_retry_events_are_captured() -> None:
    """capture_events records each scheduled retry and the final give-up."""
    client = InventoryClient([ConnectionError()] * 4, clock=FakeClock())

    with capture_events(RetryScheduled, RetriesExhausted) as events:
        try:
            await client.stock("sku-2")
        except ConnectionError:
            pass

    assert [type(e).__name__ for e in events] == ["RetryScheduled"] * 3 + ["RetriesExhausted"]
    last = events[-1]
    assert isinstance(last, RetriesExhausted)
    assert (last.attempts, last.reason) == (4, "attempts")


async def test_timeout_expires_in_virtual_time() -> None:
    """A call that hangs for an hour of virtual time hits the 5 s timeout at t == 5."""
    clock = FakeClock()

    async def hang(sku: str) -> int:
        await clock.sleep(3600)
        return 0

    guarded = timeout(5.0, clock=clock)(hang)
    caught: TimeoutExceededError | None = None
    with capture_events(TimeoutElapsed) as events:
        try:
            await guarded("sku-3")
        except TimeoutExceededError as exc:
            caught = exc
    assert caught is not None
    assert caught.seconds == 5.0
    assert clock.monotonic() == 5.0
    assert len(events) == 1


def test_set_testing_skips_real_waits() -> None:
    """With set_testing(True), a policy on the real clock retries without waiting 2 s."""
    answers: list[Exception | str] = [ConnectionError(), ConnectionError(), "found"]
    with resilient.set_testing(True), capture_events(RetryScheduled) as events:
        assert legacy_sync_lookup(answers) == "found"
    # The decisions are unchanged (two retries, 2 s planned each); only the waits are skipped.
    assert [e.delay for e in events if isinstance(e, RetryScheduled)] == [2.0, 2.0]


def test_use_clock_reaches_module_level_code() -> None:
    """use_clock(FakeClock()) gives a clock to the policies built without one: the waits are virtual."""
    answers: list[Exception | str] = [ConnectionError(), ConnectionError(), "found"]
    with use_clock(FakeClock()) as clock:
        assert legacy_sync_lookup(answers) == "found"
    assert clock.sleeps == [2.0, 2.0]


def main() -> None:
    """Run the tests above without pytest."""
    for test in (
        test_backoff_waits_are_virtual,
        test_retry_events_are_captured,
        test_timeout_expires_in_virtual_time,
    ):
        asyncio.run(test())
        print(f"ok  {test.__name__}: {test.__doc__}")
    for sync_test in (test_set_testing_skips_real_waits, test_use_clock_reaches_module_level_code):
        sync_test()
        print(f"ok  {sync_test.__name__}: {sync_test.__doc__}")


if __name__ == "__main__":
    main()
