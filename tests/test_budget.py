"""Tests of ``RetryBudget``: deposits, withdrawals, refill over time, caps and validation."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from resilient import RetryBudget, retry
from resilient.events import RetriesExhausted
from resilient.testing import FakeClock, capture_events


def drain(budget: RetryBudget) -> int:
    """Withdraw until refused; return how many withdrawals succeeded."""
    taken = 0
    while budget.try_withdraw():
        taken += 1
    return taken


def test_budget_starts_full() -> None:
    """A new budget holds ratio * capacity_calls + min_per_second retries."""
    budget = RetryBudget(ratio=0.5, min_per_second=1, capacity_calls=4, clock=FakeClock())
    assert (budget.balance, drain(budget)) == (3.0, 3)


def test_budget_always_allows_one_retry_at_start() -> None:
    """Even a tiny budget starts with one retry available."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, capacity_calls=1, clock=FakeClock())
    assert drain(budget) == 1


def test_each_call_deposits_ratio() -> None:
    """Every deposit adds ratio; one retry needs a whole token."""
    budget = RetryBudget(ratio=0.25, min_per_second=0, capacity_calls=8, clock=FakeClock())
    drain(budget)
    for _ in range(3):
        budget.deposit()
    assert not budget.try_withdraw()
    budget.deposit()
    assert (budget.try_withdraw(), budget.try_withdraw()) == (True, False)


def test_deposits_are_capped() -> None:
    """Deposits never raise the balance above the cap."""
    budget = RetryBudget(ratio=0.5, min_per_second=0, capacity_calls=4, clock=FakeClock())
    for _ in range(100):
        budget.deposit()
    assert budget.balance == 2.0


def test_min_per_second_refills_with_time() -> None:
    """min_per_second retries accrue per second of clock time, even with no calls."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.1, min_per_second=2, capacity_calls=10, clock=clock)
    drain(budget)
    clock.advance(0.4)
    assert not budget.try_withdraw()
    clock.advance(0.1)
    assert (budget.try_withdraw(), budget.try_withdraw()) == (True, False)


def test_refill_is_capped() -> None:
    """A long quiet period refills the budget only up to its cap."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=1, capacity_calls=2, clock=clock)
    drain(budget)
    clock.advance(3600)
    assert budget.balance == 2.0


def test_withdrawals_are_thread_safe() -> None:
    """Concurrent withdrawals from many threads never hand out more than the balance."""
    budget = RetryBudget(ratio=1, min_per_second=0, capacity_calls=50, clock=FakeClock())
    granted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(20):
            ok = budget.try_withdraw()
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (granted.count(True), len(granted)) == (50, 160)


async def test_one_budget_caps_retries_of_several_policies(clock: FakeClock) -> None:
    """Two retry policies sharing a budget draw from the same balance."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, capacity_calls=20, clock=clock)  # 2 retries
    calls: list[str] = []

    def failing(name: str) -> Any:
        def fn() -> None:
            calls.append(name)
            raise ValueError(name)

        return fn

    a = retry(attempts=3, backoff=0, budget=budget, clock=clock)(failing("a"))
    b = retry(attempts=3, backoff=0, budget=budget, clock=clock)(failing("b"))
    with capture_events(RetriesExhausted) as events:
        for fn in (a, b):
            with pytest.raises(ValueError):
                fn()
    # a spends both retries (3 calls); b's deposit of 0.1 buys none (1 call).
    assert calls == ["a", "a", "a", "b"]
    assert [e.reason for e in events] == ["attempts", "budget"]  # type: ignore[attr-defined]


def test_retry_rejects_an_object_that_is_not_a_budget() -> None:
    """retry(budget=...) needs deposit() and try_withdraw()."""
    with pytest.raises(TypeError, match="budget"):
        retry(budget=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"ratio": 0}, ValueError, "ratio"),
        ({"ratio": -0.1}, ValueError, "ratio"),
        ({"ratio": 1.5}, ValueError, "ratio"),
        ({"ratio": math.nan}, ValueError, "ratio"),
        ({"ratio": "0.2"}, TypeError, "ratio"),
        ({"ratio": True}, TypeError, "ratio"),
        ({"min_per_second": -1}, ValueError, "min_per_second"),
        ({"min_per_second": math.nan}, ValueError, "min_per_second"),
        ({"min_per_second": math.inf}, ValueError, "min_per_second"),
        ({"min_per_second": "1"}, TypeError, "min_per_second"),
        ({"capacity_calls": 0}, ValueError, "capacity_calls"),
        ({"capacity_calls": 2.5}, TypeError, "capacity_calls"),
        ({"capacity_calls": "3"}, TypeError, "capacity_calls"),
        ({"clock": object()}, TypeError, "clock"),
    ],
)
def test_bad_configuration_names_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad RetryBudget configuration raises TypeError/ValueError naming the parameter."""
    with pytest.raises(error, match=rf"^{param}\b"):
        RetryBudget(**kwargs)


def test_repr_shows_the_configuration() -> None:
    """The repr shows ratio and min_per_second."""
    assert repr(RetryBudget(ratio=0.5, min_per_second=3)) == "RetryBudget(ratio=0.5, min_per_second=3.0)"
