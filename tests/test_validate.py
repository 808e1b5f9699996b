"""Tests of the checks and the exception matcher shared by every policy (``resilient._validate``)."""

from __future__ import annotations

import functools
import inspect
import operator
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient
from resilient import CircuitOpenError, CircuitState, circuit_breaker, fallback, retry
from resilient._validate import make_matcher
from resilient.testing import FakeClock

# --- exception groups nested deeper than the recursion limit (issue 10, item 19) --


def nested(leaf: BaseException, depth: int) -> BaseException:
    """Wrap *leaf* in *depth* single-member exception groups."""
    exc = leaf
    for _ in range(depth):
        exc = BaseExceptionGroup("wrapped", [exc])  # an ExceptionGroup when every leaf is an Exception
    return exc


DEEP = sys.getrecursionlimit() + 100
RECURSED = object()


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Run the test against an async and a sync protected function."""
    return str(request.param)


def raising(kind: str, exc: BaseException, calls: list[int]) -> Callable[..., Any]:
    """An async or sync function that counts its calls and raises *exc*."""

    async def op() -> str:
        calls.append(1)
        raise exc

    def sync_op() -> str:
        calls.append(1)
        raise exc

    return op if kind == "async" else sync_op


async def invoke(fn: Callable[..., Any]) -> Any:
    """Call *fn*, await the result if it is awaitable; a RecursionError fails the test cleanly.

    (Reporting the RecursionError itself would recurse through the deep group again.)
    """
    try:
        result = fn()
        if inspect.isawaitable(result):
            result = await result
    except RecursionError:
        result = RECURSED
    if result is RECURSED:  # failed outside the except block: no chained RecursionError to report
        pytest.fail("RecursionError while matching a deeply nested exception group", pytrace=False)
    return result


def matches(spec: Any, exc: BaseException) -> bool:
    """Run ``make_matcher("on", spec)`` on *exc*; a RecursionError fails the test cleanly."""
    try:
        return make_matcher("on", spec)(exc)
    except RecursionError:
        pass
    pytest.fail("RecursionError while matching a deeply nested exception group", pytrace=False)


async def test_retry_matches_a_group_nested_past_the_recursion_limit(kind: str, clock: FakeClock) -> None:
    """retry matches a deeply nested group of matching leaves (no RecursionError) and retries it."""
    group = nested(ConnectionError("leaf"), DEEP)
    calls: list[int] = []
    guarded = retry(attempts=3, on=ConnectionError, backoff=0, clock=clock)(raising(kind, group, calls))
    with pytest.raises(ExceptionGroup) as info:
        await invoke(guarded)
    assert info.value is group
    assert len(calls) == 3


async def test_fallback_matches_a_group_nested_past_the_recursion_limit(kind: str) -> None:
    """fallback answers a deeply nested group of matching leaves instead of raising RecursionError."""
    calls: list[int] = []
    guarded = fallback("default", on=ConnectionError)(raising(kind, nested(ConnectionError(), DEEP), calls))
    assert await invoke(guarded) == "default"


async def test_breaker_counts_a_group_nested_past_the_recursion_limit(kind: str, clock: FakeClock) -> None:
    """A breaker classifies a deeply nested group as one failure (and a group of rejections as neutral)."""
    breaker = circuit_breaker(failure_threshold=1, on=ConnectionError, clock=clock)
    calls: list[int] = []
    rejected = breaker(raising(kind, nested(CircuitOpenError("inner", 1.0), DEEP), calls))
    with pytest.raises(ExceptionGroup):
        await invoke(rejected)
    after_rejections = breaker.state  # rejections by an inner policy are neutral
    failing = breaker(raising(kind, nested(ConnectionError(), DEEP), calls))
    with pytest.raises(ExceptionGroup):
        await invoke(failing)
    assert (after_rejections, breaker.state) == (CircuitState.CLOSED, CircuitState.OPEN)


@pytest.mark.parametrize(
    ("spec", "leaf", "expected"),
    [
        (ConnectionError, ConnectionError(), True),
        (ConnectionError, ValueError(), False),
        (lambda exc: isinstance(exc, ConnectionError), ConnectionError(), True),
        (lambda exc: isinstance(exc, ConnectionError), ValueError(), False),
    ],
    ids=["type-match", "type-miss", "predicate-match", "predicate-miss"],
)
def test_deep_group_matches_exactly_when_its_leaf_does(
    spec: Any, leaf: BaseException, expected: bool
) -> None:
    """A group nested past the recursion limit matches when, and only when, its leaf matches."""
    assert matches(spec, nested(leaf, DEEP)) is expected


def test_a_wide_and_deep_group_needs_every_leaf_to_match() -> None:
    """One non-matching leaf anywhere in a deep, wide tree of groups stops the match."""
    good = nested(ConnectionError(), DEEP)
    assert matches(ConnectionError, BaseExceptionGroup("top", [good, nested(ConnectionError(), 3)])) is True
    assert matches(ConnectionError, BaseExceptionGroup("top", [good, nested(ValueError(), DEEP)])) is False


def test_a_control_flow_leaf_deep_inside_a_group_never_matches() -> None:
    """A KeyboardInterrupt deep inside a BaseExceptionGroup keeps the whole group from matching."""
    group = BaseExceptionGroup("top", [ConnectionError(), nested(KeyboardInterrupt(), DEEP)])
    assert matches(BaseException, group) is False


def test_a_group_type_in_on_matches_the_group_itself() -> None:
    """An ExceptionGroup type listed in on matches the group, whatever its leaves."""
    assert matches((ExceptionGroup, ConnectionError), nested(ValueError(), DEEP)) is True


# --- a value too long to repr() ------------------------------------------------------------------

HUGE = 10**5000  # repr() raises ValueError: "Exceeds the limit (4300 digits) for integer string conversion"
untyped_retry: Any = retry  # the bad arguments below are static type errors too
untyped_fallback: Any = fallback


class BrokenRepr:
    """A value whose ``repr()`` raises, as a 5,000-digit int's does."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BrokenReprStr(str):
    """A str whose ``repr()`` raises: it passes an isinstance(str) check."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BrokenReprCallable:
    """A callable taking nothing, whose ``repr()`` raises."""

    def __call__(self) -> None:
        return None

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BrokenReprAsyncCallable:
    """An async callable whose ``repr()`` raises."""

    async def __call__(self, *args: object) -> bool:
        return False

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


untyped: Any = resilient
UNREPRESENTABLE: list[Any] = [HUGE, BrokenRepr()]

# (build(value), the parameter its error must name): every one refuses both unrepresentable values.
REFUSED: list[tuple[Callable[[Any], Any], str]] = [
    (lambda v: untyped_retry(name=v), "name"),
    (lambda v: untyped_retry(on=v), "on"),
    (lambda v: untyped_retry(on=(v,)), "on"),
    (lambda v: untyped_retry(on_result=v), "on_result"),
    (lambda v: untyped_retry(long_retry_after=v), "long_retry_after"),
    (lambda v: untyped_retry(budget=v), "budget"),
    (lambda v: untyped_retry(clock=v), "clock"),
    (lambda v: untyped_retry(bus=v), "bus"),
    (lambda v: untyped_fallback(None, on_result=v), "on_result"),
    (lambda v: untyped_fallback(None, on=v), "on"),
    (lambda v: untyped.circuit_breaker(name=v), "name"),
    (lambda v: untyped.circuit_breaker(backend=v), "backend"),
    (lambda v: untyped.bulkhead(1, name=v), "name"),
    (lambda v: untyped.timeout(1, name=v), "name"),
    (lambda v: untyped.rate_limiter(1, backend=v), "backend"),
    (lambda v: untyped.pipeline(v), "pipeline"),
    (lambda v: untyped.pipeline(retry(), attributes=v), "attributes"),
    (lambda v: untyped.backoff.exponential(jitter=v), "jitter"),
    (lambda v: untyped.backoff.exponential(rng=v), "rng"),
    (lambda v: untyped.backoff.FromCallable(v), "backoff"),
    (lambda v: untyped.EventBus().subscribe(v), "handler"),
    (lambda v: untyped.EventBus().subscribe(print, v), "event_types"),
    (lambda v: untyped.subscribe(print, bus=v), "bus"),
    (lambda v: untyped.testing.capture_events(bus=v).__enter__(), "bus"),
    (lambda v: untyped.set_testing(v), "testing"),
    (lambda v: untyped.Outcome(exception=v), "exception"),
    (lambda v: untyped.parse_config("{}", v), "format"),
    (lambda v: untyped.pipeline_of(v), "not decorated"),
    (lambda v: untyped.Registry(v), "template"),
]
REFUSED_IDS = [
    "retry-name",
    "retry-on",
    "retry-on-tuple",
    "retry-on_result",
    "retry-long_retry_after",
    "retry-budget",
    "retry-clock",
    "retry-bus",
    "fallback-on_result",
    "fallback-on",
    "breaker-name",
    "breaker-backend",
    "bulkhead-name",
    "timeout-name",
    "rate_limiter-backend",
    "pipeline-policy",
    "pipeline-attributes",
    "backoff-jitter",
    "backoff-rng",
    "backoff-FromCallable",
    "bus-handler",
    "bus-event_types",
    "subscribe-bus",
    "capture_events-bus",
    "set_testing",
    "Outcome-exception",
    "parse_config-format",
    "pipeline_of",
    "Registry-template",
]


@pytest.mark.parametrize("value", UNREPRESENTABLE, ids=["huge-int", "broken-repr"])
@pytest.mark.parametrize(("build", "param"), REFUSED, ids=REFUSED_IDS)
def test_a_value_too_long_to_repr_still_gets_an_error_naming_the_parameter(
    build: Callable[[Any], Any], param: str, value: Any
) -> None:
    """A value whose repr() raises, where it does not belong: a TypeError/ValueError naming the parameter."""
    with pytest.raises((TypeError, ValueError), match=param) as info:
        build(value)
    assert "<unrepresentable " in str(info.value)


# (build(callable), the parameter its error must name, whether a sync callable taking nothing is refused too).
CALLABLE_ARGUMENTS: list[tuple[Callable[[Any], Any], str, bool]] = [
    (lambda f: untyped_retry(backoff=f), "backoff", True),
    (lambda f: untyped_retry(on_result=f), "on_result", True),
    (lambda f: untyped_retry(on=f), "on", True),
    (lambda f: untyped_fallback(None, on_result=f), "on_result", True),
    (lambda f: untyped.pipeline(retry(), attributes=f), "attributes", False),  # attributes() may take nothing
    (lambda f: untyped.Registry(f), "template", True),
]


@pytest.mark.parametrize(
    ("build", "param", "fn"),
    [
        pytest.param(build, param, fn, id=f"{param}-{kind}")
        for build, param, refuses_sync in CALLABLE_ARGUMENTS
        for kind, fn in [("sync", BrokenReprCallable()), ("async", BrokenReprAsyncCallable())]
        if refuses_sync or kind == "async"
    ],
)
def test_a_callable_of_the_wrong_shape_with_a_broken_repr_is_named(
    build: Callable[[Any], Any], param: str, fn: Any
) -> None:
    """A callable of the wrong shape (or async) that cannot be shown: an error naming the parameter."""
    with pytest.raises(TypeError, match=param) as info:
        build(fn)
    assert f"<unrepresentable {type(fn).__name__}>" in str(info.value)


def test_a_name_that_is_a_str_subclass_is_kept_as_a_plain_str(clock: FakeClock) -> None:
    """A str subclass as name is stored as the plain str, so the circuit's own error messages still work."""
    breaker = circuit_breaker(name=BrokenReprStr("db"), failure_threshold=1, clock=clock)
    assert type(breaker.name) is str
    with pytest.raises(ConnectionError):
        breaker.call(raising("sync", ConnectionError(), []))
    with pytest.raises(CircuitOpenError, match="'db'"):
        breaker.call(raising("sync", ConnectionError(), []))


async def async_predicate(value: object) -> bool:
    """A predicate that needs awaiting: policies ask theirs synchronously."""
    return False


class AsyncPredicate:
    """A callable object whose ``__call__`` is ``async def``."""

    async def __call__(self, value: object) -> bool:
        return False


def two_argument_predicate(value: object, other: object) -> bool:
    """A predicate that cannot be called with the one value a policy passes."""
    return False


# (build(predicate), the parameter its error must name): every place a policy asks a predicate.
PREDICATES: list[tuple[Callable[[Any], Any], str]] = [
    (lambda p: untyped_retry(on_result=p), "on_result"),
    (lambda p: untyped_retry(on=p), "on"),
    (lambda p: untyped_fallback(None, on_result=p), "on_result"),
    (lambda p: untyped_fallback(None, on=p), "on"),
    (lambda p: untyped.circuit_breaker(on=p), "on"),
    (lambda p: untyped.circuit_breaker(ignore=p), "ignore"),
    (lambda p: untyped.hedge(on=p), "on"),
]
PREDICATE_IDS = [
    "retry-on_result",
    "retry-on",
    "fallback-on_result",
    "fallback-on",
    "breaker-on",
    "breaker-ignore",
    "hedge-on",
]


@pytest.mark.parametrize(
    "predicate",
    [async_predicate, AsyncPredicate(), functools.partial(async_predicate)],
    ids=["async-def", "async-call", "partial"],
)
@pytest.mark.parametrize(("build", "param"), PREDICATES, ids=PREDICATE_IDS)
def test_an_async_predicate_fails_at_construction(
    build: Callable[[Any], Any], param: str, predicate: Any
) -> None:
    """An ``async def`` predicate, which would always match, is a TypeError naming the parameter."""
    with pytest.raises(TypeError, match=rf"^{param} must be a plain function .*not async"):
        build(predicate)


@pytest.mark.parametrize(
    "predicate", [two_argument_predicate, lambda: True], ids=["two-parameters", "no-parameter"]
)
@pytest.mark.parametrize(("build", "param"), PREDICATES, ids=PREDICATE_IDS)
def test_a_predicate_that_cannot_take_one_argument_fails_at_construction(
    build: Callable[[Any], Any], param: str, predicate: Any
) -> None:
    """A predicate that cannot take the one value it is given: a TypeError naming the parameter, at once."""
    with pytest.raises(TypeError, match=rf"^{param} must be a predicate taking one argument"):
        build(predicate)


@pytest.mark.parametrize(
    "predicate",
    [
        lambda value, extra=None: True,
        lambda *values: True,
        operator.truth,
        functools.partial(lambda kind, value: isinstance(value, kind), ConnectionError),
    ],
    ids=["optional-second", "star-args", "builtin-function", "partial"],
)
@pytest.mark.parametrize(("build", "param"), PREDICATES, ids=PREDICATE_IDS)
def test_a_predicate_that_can_take_one_argument_is_accepted(
    build: Callable[[Any], Any], param: str, predicate: Any
) -> None:
    """A predicate callable with one argument (defaults, ``*args``, a builtin, a partial) is accepted."""
    assert build(predicate) is not None


class BrokenReprClock(FakeClock):
    """A FakeClock whose ``repr()`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_a_policy_shared_by_pipelines_of_clocks_that_cannot_be_shown_is_named() -> None:
    """A policy following one pipeline's clock, given another: a ValueError naming clock, not the repr's."""
    shared = retry()
    resilient.pipeline(shared, clock=BrokenReprClock())
    with pytest.raises(ValueError, match=r"^clock: .*<unrepresentable BrokenReprClock>"):
        resilient.pipeline(shared, clock=BrokenReprClock())


# --- any value for any non-numeric parameter of the core policies -------------------------------


async def coroutine_function(*args: object) -> bool:
    """An ``async def`` where a plain callable belongs."""
    return False


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(HUGE),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.tuples(st.sampled_from([ConnectionError, KeyboardInterrupt, HUGE, "x", BrokenRepr()])),
    st.sampled_from(
        [
            BrokenRepr(),
            BrokenReprStr("x"),
            BrokenReprCallable(),
            BrokenReprAsyncCallable(),
            coroutine_function,
            functools.partial(coroutine_function),
            lambda: True,
            lambda x: True,
            lambda x, y: True,
            lambda x, y, z: True,
            print,
            object(),
            ConnectionError,
            KeyboardInterrupt,
            ConnectionError("instance"),
            (),
            "give_up",
            "cap",
        ]
    ),
)

# (the parameter, build(value)): what a value is checked by when a policy is built.
CORE_PARAMETERS: list[tuple[str, Callable[[Any], Any]]] = [
    ("on", lambda v: untyped_retry(on=v)),
    ("on_result", lambda v: untyped_retry(on_result=v)),
    ("backoff", lambda v: untyped_retry(backoff=v)),
    ("long_retry_after", lambda v: untyped_retry(long_retry_after=v)),
    ("budget", lambda v: untyped_retry(budget=v)),
    ("name", lambda v: untyped_retry(name=v)),
    ("clock", lambda v: untyped_retry(clock=v)),
    ("bus", lambda v: untyped_retry(bus=v)),
    ("on", lambda v: untyped_fallback(None, on=v)),
    ("on_result", lambda v: untyped_fallback(None, on_result=v)),
    ("on", lambda v: untyped.circuit_breaker(on=v)),
    ("ignore", lambda v: untyped.circuit_breaker(ignore=v)),
    ("backend", lambda v: untyped.circuit_breaker(backend=v)),
    ("name", lambda v: untyped.bulkhead(1, name=v)),
    ("attributes", lambda v: untyped.pipeline(retry(), attributes=v)),
]


@pytest.mark.parametrize(("param", "build"), CORE_PARAMETERS, ids=[p for p, _ in CORE_PARAMETERS])
@settings(max_examples=60, deadline=None)
@given(value=ANY_VALUE)
def test_any_value_is_a_clear_error_or_a_policy(param: str, build: Callable[[Any], Any], value: Any) -> None:
    """Any value: a TypeError/ValueError naming the parameter, or a policy; never an error from a message."""
    message = None
    try:
        build(value)
    except (TypeError, ValueError) as exc:
        message = str(exc)
    if message is not None:
        assert message.startswith((f"{param} ", f"{param}=", f"{param}.")), message
