"""Tests of ``resilient.backoff``: the arithmetic, jitter bounds and validation."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from resilient import backoff, retry
from resilient.backoff import Backoff

finite_seconds = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
multipliers = st.floats(min_value=1.0, max_value=100.0, allow_nan=False, allow_infinity=False)
retry_numbers = st.integers(min_value=1, max_value=10_000)
jitters = st.sampled_from(["none", "full", "equal"])


class FixedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` always returns one value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        """Return the fixed value."""
        return self.value


def expected_exponential(initial: float, multiplier: float, max_delay: float, k: int) -> float:
    """The clamped exponential base delay, computed independently of the library."""
    if initial == 0 or max_delay == 0:
        return 0.0
    # Compare in log space so huge k never overflows.
    if math.log(initial) + (k - 1) * math.log(multiplier) >= math.log(max_delay):
        return max_delay
    try:
        return initial * multiplier ** (k - 1)
    except OverflowError:
        # A subnormal initial times a power beyond float range: the product fits.
        return math.exp(math.log(initial) + (k - 1) * math.log(multiplier))


# --- exact sequences without jitter ----------------------------------------------


def test_constant_returns_the_same_delay_every_time() -> None:
    """constant(d) waits d before every retry."""
    strategy = backoff.constant(0.5)
    assert [strategy.delay(k) for k in range(1, 6)] == [0.5] * 5


def test_constant_max_delay_defaults_to_the_delay() -> None:
    """A constant strategy's max_delay is its delay unless max_delay= is given (which also caps it)."""
    assert backoff.constant(0.5).max_delay == 0.5
    assert backoff.constant(0.5, max_delay=math.inf).max_delay == math.inf
    assert backoff.constant(5, max_delay=2).delay(1) == 2.0


def test_linear_grows_by_the_increment_and_clamps() -> None:
    """linear waits initial + increment * (k - 1), at most max_delay."""
    strategy = backoff.linear(initial=1.0, increment=2.0, max_delay=6.0)
    assert [strategy.delay(k) for k in range(1, 6)] == [1.0, 3.0, 5.0, 6.0, 6.0]


def test_exponential_without_jitter_doubles_and_clamps() -> None:
    """exponential(jitter="none") waits initial * multiplier ** (k - 1), at most max_delay."""
    strategy = backoff.exponential(initial=0.1, multiplier=2, max_delay=1.0, jitter="none")
    assert [strategy.delay(k) for k in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_exponential_default_jitter_is_full() -> None:
    """exponential() defaults to full jitter, the default of retry."""
    strategy = backoff.exponential()
    assert (strategy.initial, strategy.multiplier, strategy.max_delay, strategy.jitter) == (
        0.1,
        2.0,
        10.0,
        "full",
    )


@pytest.mark.parametrize("k", [1024, 10**6, 2**63, 10**400])
def test_exponential_huge_retry_number_returns_max_delay(k: int) -> None:
    """A retry number whose growth overflows a float returns max_delay instead of raising."""
    strategy = backoff.exponential(initial=0.1, multiplier=2, max_delay=7.0, jitter="none")
    assert strategy.delay(k) == 7.0


@pytest.mark.parametrize("k", [1024, 10**6, 10**400])
def test_exponential_zero_initial_stays_zero_on_overflow(k: int) -> None:
    """initial=0 stays 0 even where multiplier ** k overflows."""
    strategy = backoff.exponential(initial=0, multiplier=2, max_delay=7.0, jitter="none")
    assert strategy.delay(k) == 0.0


@pytest.mark.parametrize("k", [10**6, 10**400])
def test_linear_huge_retry_number_returns_max_delay(k: int) -> None:
    """A retry number too large for a float clamps linear growth to max_delay."""
    strategy = backoff.linear(initial=0.1, increment=0.1, max_delay=3.0)
    assert strategy.delay(k) == 3.0


def test_multiplier_one_is_constant() -> None:
    """multiplier=1 keeps the initial delay for every retry."""
    strategy = backoff.exponential(initial=0.3, multiplier=1, max_delay=10, jitter="none")
    assert {strategy.delay(k) for k in (1, 2, 50, 10**400)} == {0.3}


def test_initial_above_max_delay_is_clamped() -> None:
    """A first delay above max_delay is clamped to max_delay."""
    strategy = backoff.exponential(initial=5, max_delay=2, jitter="none")
    assert strategy.delay(1) == 2.0


# --- jitter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jitter", "draw", "expected"),
    [("full", 0.25, 0.25), ("full", 0.0, 0.0), ("equal", 0.0, 0.5), ("equal", 0.5, 0.75), ("none", 0.3, 1.0)],
)
def test_jitter_formula(jitter: Any, draw: float, expected: float) -> None:
    """full jitter is draw * d; equal jitter is d/2 + draw * d/2; none ignores the draw."""
    strategy = backoff.constant(1.0, jitter=jitter, rng=FixedRandom(draw))
    assert strategy.delay(1) == pytest.approx(expected)


@pytest.mark.parametrize("jitter", ["full", "equal"])
def test_clamp_happens_before_jitter(jitter: Any) -> None:
    """The base delay is clamped to max_delay before jitter, so jitter spreads over [0, max_delay]."""
    strategy = backoff.exponential(
        initial=1, multiplier=2, max_delay=1.0, jitter=jitter, rng=FixedRandom(0.5)
    )
    # Jitter-then-clamp would give min(1, 0.5 * 2**9) == 1.0 here.
    expected = 0.5 if jitter == "full" else 0.75
    assert strategy.delay(10) == pytest.approx(expected)


def test_full_jitter_kth_wait_is_scaled_draw_of_its_bound() -> None:
    """The k-th full-jitter wait is draw * min(max_delay, initial * multiplier ** (k - 1))."""
    draws = random.Random(7)
    strategy = backoff.exponential(
        initial=0.1, multiplier=3, max_delay=5.0, jitter="full", rng=random.Random(7)
    )
    for k in range(1, 8):
        bound = min(5.0, 0.1 * 3 ** (k - 1))
        assert strategy.delay(k) == pytest.approx(draws.random() * bound)


def test_seeded_rng_reproduces_the_sequence() -> None:
    """Two strategies with equally seeded rngs produce the same jittered delays."""
    first = backoff.exponential(rng=random.Random(42))
    second = backoff.exponential(rng=random.Random(42))
    assert [first.delay(k) for k in range(1, 20)] == [second.delay(k) for k in range(1, 20)]


def test_decorrelated_seeded_rng_reproduces_the_sequence() -> None:
    """decorrelated with equally seeded rngs produces the same sequence."""

    def run(strategy: Backoff) -> list[float]:
        out: list[float] = []
        previous = None
        for k in range(1, 15):
            previous = strategy.delay(k, previous)
            out.append(previous)
        return out

    assert run(backoff.decorrelated(rng=random.Random(3))) == run(backoff.decorrelated(rng=random.Random(3)))


def test_full_jitter_is_not_constant() -> None:
    """Full jitter actually spreads delays (not every draw is the same)."""
    strategy = backoff.exponential(initial=1, max_delay=1, rng=random.Random(1))
    assert len({strategy.delay(1) for _ in range(20)}) > 1


def test_decorrelated_first_delay_is_between_initial_and_three_times_initial() -> None:
    """The first decorrelated delay is uniform in [initial, 3 * initial]."""
    assert backoff.decorrelated(initial=1.0, rng=FixedRandom(1.0)).delay(1) == 3.0
    assert backoff.decorrelated(initial=1.0, rng=FixedRandom(0.0)).delay(1) == 1.0


def test_decorrelated_grows_from_the_previous_delay() -> None:
    """Each decorrelated delay draws from [initial, 3 * previous], clamped to max_delay."""
    strategy = backoff.decorrelated(initial=1.0, max_delay=20.0, rng=FixedRandom(1.0))
    assert [strategy.delay(2, 2.0), strategy.delay(3, 6.0), strategy.delay(4, 18.0)] == [6.0, 18.0, 20.0]


# --- properties (Hypothesis) -----------------------------------------------------


@given(initial=finite_seconds, multiplier=multipliers, max_delay=finite_seconds, k=retry_numbers, j=jitters)
def test_exponential_delay_always_within_zero_and_max_delay(
    initial: float, multiplier: float, max_delay: float, k: int, j: Any
) -> None:
    """Every exponential delay, jittered or not, lies in [0, max_delay]."""
    strategy = backoff.exponential(initial=initial, multiplier=multiplier, max_delay=max_delay, jitter=j)
    assert 0.0 <= strategy.delay(k) <= max_delay


@example(initial=5e-324, multiplier=39.0, max_delay=1.0, k=195)  # growth overflows, the product does not
@given(initial=finite_seconds, multiplier=multipliers, max_delay=finite_seconds, k=retry_numbers)
def test_exponential_without_jitter_matches_the_formula(
    initial: float, multiplier: float, max_delay: float, k: int
) -> None:
    """Without jitter the delay is min(max_delay, initial * multiplier ** (k - 1))."""
    strategy = backoff.exponential(initial=initial, multiplier=multiplier, max_delay=max_delay, jitter="none")
    expected = expected_exponential(initial, multiplier, max_delay, k)
    assert strategy.delay(k) == pytest.approx(expected, rel=1e-9)


@example(initial=2.225073858507e-311, multiplier=25.0, max_delay=1.0, k=222, draw=0.0)
@given(
    initial=finite_seconds,
    multiplier=multipliers,
    max_delay=finite_seconds,
    k=retry_numbers,
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_full_jitter_bound_property(
    initial: float, multiplier: float, max_delay: float, k: int, draw: float
) -> None:
    """Full jitter is uniform over [0, min(max_delay, initial * multiplier ** (k - 1))]."""
    strategy = backoff.exponential(
        initial=initial, multiplier=multiplier, max_delay=max_delay, jitter="full", rng=FixedRandom(draw)
    )
    bound = expected_exponential(initial, multiplier, max_delay, k)
    assert strategy.delay(k) == pytest.approx(draw * bound, rel=1e-9, abs=1e-12)


@given(
    initial=finite_seconds,
    max_delay=finite_seconds,
    k=retry_numbers,
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_equal_jitter_stays_in_upper_half(initial: float, max_delay: float, k: int, draw: float) -> None:
    """Equal jitter lies in [d / 2, d] where d is the clamped base delay."""
    strategy = backoff.linear(
        initial=initial, increment=initial, max_delay=max_delay, jitter="equal", rng=FixedRandom(draw)
    )
    d = min(max_delay, initial * k)
    assert d / 2 - 1e-9 <= strategy.delay(k) <= d + 1e-9


@given(
    initial=st.floats(min_value=1e-6, max_value=1e3),
    max_delay=finite_seconds,
    previous=st.one_of(st.none(), finite_seconds),
    k=retry_numbers,
)
def test_decorrelated_bounds(initial: float, max_delay: float, previous: float | None, k: int) -> None:
    """A decorrelated delay lies in [min(initial, max_delay), max_delay] and within 3x the previous."""
    strategy = backoff.decorrelated(initial=initial, max_delay=max_delay)
    value = strategy.delay(k, previous)
    prev = initial if previous is None else previous
    assert min(initial, max_delay) <= value <= max_delay
    assert value <= max(initial, 3 * prev) * (1 + 1e-12)


@given(initial=finite_seconds, increment=finite_seconds, max_delay=finite_seconds, k=retry_numbers)
def test_linear_without_jitter_matches_the_formula(
    initial: float, increment: float, max_delay: float, k: int
) -> None:
    """Without jitter linear is min(max_delay, initial + increment * (k - 1))."""
    strategy = backoff.linear(initial=initial, increment=increment, max_delay=max_delay)
    assert strategy.delay(k) == pytest.approx(min(max_delay, initial + increment * (k - 1)))


# --- durations as timedelta ------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: backoff.constant(timedelta(milliseconds=250)), 0.25),
        (lambda: backoff.linear(initial=timedelta(seconds=1), increment=timedelta(seconds=1)), 1.0),
        (lambda: backoff.exponential(initial=timedelta(milliseconds=500), jitter="none"), 0.5),
        (
            lambda: backoff.decorrelated(initial=timedelta(seconds=2), rng=FixedRandom(0.0)),
            2.0,
        ),
    ],
)
def test_timedelta_durations_are_accepted(make: Callable[[], Backoff], expected: float) -> None:
    """Every duration parameter accepts a timedelta."""
    assert make().delay(1) == pytest.approx(expected)


def test_timedelta_max_delay_is_accepted() -> None:
    """max_delay accepts a timedelta and clamps in seconds."""
    strategy = backoff.exponential(initial=10, max_delay=timedelta(seconds=3), jitter="none")
    assert (strategy.max_delay, strategy.delay(1)) == (3.0, 3.0)


# --- validation ------------------------------------------------------------------

DURATION_PARAMS: list[tuple[Callable[..., Any], str]] = [
    (lambda v: backoff.constant(v), "delay"),
    (lambda v: backoff.linear(initial=v), "initial"),
    (lambda v: backoff.linear(increment=v), "increment"),
    (lambda v: backoff.linear(max_delay=v), "max_delay"),
    (lambda v: backoff.exponential(initial=v), "initial"),
    (lambda v: backoff.exponential(max_delay=v), "max_delay"),
    (lambda v: backoff.decorrelated(initial=v), "initial"),
    (lambda v: backoff.decorrelated(max_delay=v), "max_delay"),
]


@pytest.mark.parametrize(("factory", "param"), DURATION_PARAMS)
@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, math.inf, -math.inf, timedelta(seconds=-1)])
def test_bad_duration_raises_value_error_naming_the_parameter(
    factory: Callable[..., Any], param: str, bad: object
) -> None:
    """A negative, NaN or infinite duration raises ValueError naming the parameter."""
    with pytest.raises(ValueError, match=param):
        factory(bad)


@pytest.mark.parametrize(("factory", "param"), DURATION_PARAMS)
@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_wrong_type_duration_raises_type_error_naming_the_parameter(
    factory: Callable[..., Any], param: str, bad: object
) -> None:
    """A duration that is not a number or timedelta raises TypeError naming the parameter."""
    with pytest.raises(TypeError, match=param):
        factory(bad)


@pytest.mark.parametrize("bad", [-1, math.nan])
def test_constant_bad_max_delay_is_rejected(bad: float) -> None:
    """constant(max_delay=...) must be >= 0 (infinite is the default)."""
    with pytest.raises(ValueError, match="max_delay"):
        backoff.constant(1, max_delay=bad)


def test_decorrelated_zero_initial_is_rejected() -> None:
    """decorrelated(initial=0) would never grow, so it raises ValueError naming initial."""
    with pytest.raises(ValueError, match="initial"):
        backoff.decorrelated(initial=0)


@pytest.mark.parametrize("bad", [0.5, 0, -2, math.nan, math.inf])
def test_multiplier_below_one_or_not_finite_is_rejected(bad: float) -> None:
    """multiplier < 1, NaN or inf raises ValueError naming multiplier."""
    with pytest.raises(ValueError, match="multiplier"):
        backoff.exponential(multiplier=bad)


@pytest.mark.parametrize("bad", ["2", True, None])
def test_multiplier_wrong_type_is_rejected(bad: object) -> None:
    """A multiplier that is not a number raises TypeError naming multiplier."""
    with pytest.raises(TypeError, match="multiplier"):
        backoff.exponential(multiplier=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "factory",
    [
        lambda j: backoff.constant(1, jitter=j),
        lambda j: backoff.linear(jitter=j),
        lambda j: backoff.exponential(jitter=j),
    ],
)
@pytest.mark.parametrize("bad", ["bogus", "FULL", None, 1])
def test_unknown_jitter_is_rejected(factory: Callable[[Any], Any], bad: object) -> None:
    """An unknown jitter raises ValueError naming jitter."""
    with pytest.raises(ValueError, match="jitter"):
        factory(bad)


def test_rng_must_be_a_random_instance() -> None:
    """rng that is not a random.Random raises TypeError naming rng."""
    with pytest.raises(TypeError, match="rng"):
        backoff.exponential(rng=42)  # type: ignore[arg-type]


def test_zero_delays_are_allowed() -> None:
    """Zero is a valid delay: constant(0) never waits."""
    assert backoff.constant(0).delay(3) == 0.0
    assert backoff.exponential(initial=0, max_delay=0).delay(3) == 0.0


def _zero(attempt: int, exc: BaseException | None) -> float:
    return 0.0


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            backoff.exponential(initial=0.5, multiplier=3, max_delay=4, jitter="equal"),
            "exponential(initial=0.5, multiplier=3.0, max_delay=4.0, jitter='equal')",
        ),
        (
            backoff.linear(initial=1, increment=2),
            "linear(initial=1.0, increment=2.0, max_delay=10.0, jitter='none')",
        ),
        (backoff.decorrelated(initial=1), "decorrelated(initial=1.0, max_delay=10.0)"),
        (backoff.constant(2), "constant(2.0, jitter='none')"),
        (backoff.constant(2, max_delay=3), "constant(2.0, jitter='none', max_delay=3.0)"),
        (backoff.FromCallable(_zero), "FromCallable(_zero)"),
    ],
)
def test_repr_shows_the_configuration(strategy: Backoff, expected: str) -> None:
    """A strategy's repr shows its parameters."""
    assert repr(strategy) == expected


# --- callables -------------------------------------------------------------------


def test_from_callable_passes_attempt_and_exception() -> None:
    """A callable strategy receives the retry number and the exception being retried."""
    seen: list[tuple[int, BaseException | None]] = []
    error = ValueError("x")

    def fn(attempt: int, exc: BaseException | None) -> float:
        seen.append((attempt, exc))
        return 0.5 * attempt

    strategy = backoff.FromCallable(fn)
    assert (strategy.delay(2, None, error), seen) == (1.0, [(2, error)])


def test_from_callable_accepts_a_timedelta_result() -> None:
    """A callable may return a timedelta; it is converted to seconds."""
    assert backoff.FromCallable(lambda k, e: timedelta(milliseconds=1500)).delay(1) == 1.5


def test_from_callable_has_no_max_delay_by_default() -> None:
    """A callable strategy's max_delay is infinite, so retry_after never exceeds it."""
    assert backoff.FromCallable(lambda k, e: 1.0).max_delay == math.inf


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("1", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_from_callable_bad_result_raises(bad: object, error: type[Exception]) -> None:
    """A callable returning a negative, NaN, infinite or non-number delay raises."""
    with pytest.raises(error, match="backoff function"):
        backoff.FromCallable(lambda k, e: bad).delay(1)  # type: ignore[arg-type]


def test_from_callable_rejects_a_non_callable() -> None:
    """FromCallable of something not callable raises TypeError naming backoff."""
    with pytest.raises(TypeError, match="backoff"):
        backoff.FromCallable(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uncalled",
    [backoff.exponential, backoff.constant, backoff.linear, backoff.decorrelated, backoff.Exponential],
)
def test_an_uncalled_strategy_factory_is_rejected_at_once(uncalled: object) -> None:
    """retry(backoff=backoff.exponential) (not called) fails when retry() is called, naming backoff."""
    with pytest.raises(TypeError, match="backoff"):
        retry(backoff=uncalled)  # type: ignore[arg-type]


@pytest.mark.xfail(
    strict=True,
    reason="A backoff callable that cannot take (attempt, exception) is accepted at construction and "
    "fails the first retry with a TypeError. Found by the qa-toolkit helper; backoff.py belongs to "
    "another helper.",
)
@pytest.mark.parametrize(
    "fn",
    [lambda attempt: 1.0, lambda attempt, exc, *, result: 1.0, lambda: 1.0],
    ids=["one-parameter", "keyword-only-result", "no-parameter"],
)
def test_a_backoff_callable_of_the_wrong_shape_fails_at_construction(fn: Callable[..., float]) -> None:
    """retry(backoff=fn), fn unable to take (attempt, exception[, result]): TypeError naming backoff."""
    with pytest.raises(TypeError, match="backoff"):
        retry(backoff=fn)
