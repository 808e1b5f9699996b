"""Tests of ``fallback``: value and handler forms, filtering, events and decoration errors."""

from __future__ import annotations

import asyncio
import functools
import inspect
import pickle
from collections.abc import Callable, Coroutine
from typing import Any, Literal, overload

import pytest

import resilient
from resilient import FailedResult, Fallback, ResilientError, fallback, retry
from resilient.events import CallSucceeded, EventBus, FallbackUsed
from resilient.testing import FakeClock, capture_events


class Boom(Exception):
    """The failure the fallbacks answer."""


class Other(Exception):
    """A failure the fallbacks do not answer."""


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Run the test against an async and a sync protected function."""
    return str(request.param)


@overload
def make_fn(kind: Literal["async"], outcome: object) -> Callable[..., Coroutine[Any, Any, object]]: ...
@overload
def make_fn(kind: Literal["sync"], outcome: object) -> Callable[..., object]: ...
@overload
def make_fn(kind: str, outcome: object) -> Callable[..., Any]: ...
def make_fn(kind: str, outcome: object) -> Callable[..., Any]:
    """An async or sync function that raises *outcome* if it is an exception, else returns it."""

    def body(*args: Any, **kwargs: Any) -> Any:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def op(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    return op if kind == "async" else body


async def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fn* and await the result if it is awaitable."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


# --- value form ------------------------------------------------------------------


@pytest.mark.parametrize("default", ["cached", 0, None, [], ("a", 1)])
async def test_value_default_replaces_a_matching_failure(kind: str, default: object) -> None:
    """A non-callable default is returned as is (falsy values and None included)."""
    assert await invoke(fallback(default)(make_fn(kind, Boom()))) is default


async def test_success_passes_through_untouched(kind: str) -> None:
    """A successful call returns its own result, calls no handler and emits no event."""
    handled: list[BaseException] = []
    with capture_events(FallbackUsed) as events:
        result = await invoke(fallback(lambda e: handled.append(e))(make_fn(kind, "fresh")))
    assert (result, handled, events) == ("fresh", [], [])


# --- handler form ----------------------------------------------------------------


async def test_handler_receives_the_exception_and_the_call_arguments(kind: str) -> None:
    """A callable default is called as default(exc, *args, **kwargs) and its result returned."""
    error = Boom()
    seen: list[tuple[BaseException, tuple[Any, ...], dict[str, Any]]] = []

    def handler(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        seen.append((exc, args, kwargs))
        return "handled"

    assert await invoke(fallback(handler)(make_fn(kind, error)), 1, 2, key="k") == "handled"
    assert seen == [(error, (1, 2), {"key": "k"})]


async def test_async_handler_is_awaited() -> None:
    """An async handler guarding an async function is awaited."""

    async def handler(exc: BaseException, x: int) -> int:
        await asyncio.sleep(0)
        return x * 10

    assert await fallback(handler)(make_fn("async", Boom()))(4) == 40


async def test_sync_handler_returning_an_awaitable_is_awaited() -> None:
    """For an async function, a handler returning an awaitable has it awaited."""

    async def later(value: str) -> str:
        return value

    assert await fallback(lambda exc: later("awaited"))(make_fn("async", Boom()))() == "awaited"


async def test_callable_object_with_async_call_is_awaited() -> None:
    """An object whose __call__ is async works as a handler for async functions."""

    class Handler:
        async def __call__(self, exc: BaseException) -> str:
            return type(exc).__name__

    assert await fallback(Handler())(make_fn("async", Boom()))() == "Boom"


@pytest.mark.parametrize(
    "make_handler",
    [
        lambda: _async_handler,
        lambda: functools.partial(_async_handler),
        lambda: _AsyncCallable(),
    ],
    ids=["coroutine-function", "partial", "async-__call__"],
)
def test_async_handler_on_a_sync_function_fails_at_decoration(make_handler: Callable[[], Any]) -> None:
    """Decorating a sync function with an async handler raises TypeError at once, not at call time."""

    def sync_fn() -> str:
        raise Boom()

    with pytest.raises(TypeError, match="sync"):
        fallback(make_handler())(sync_fn)


async def _async_handler(exc: BaseException) -> str:
    return "async"


class _AsyncCallable:
    async def __call__(self, exc: BaseException) -> str:
        return "async"


def test_sync_handler_returning_a_coroutine_for_a_sync_function_raises() -> None:
    """A handler that returns a coroutine for a sync function raises TypeError, closing the coroutine."""
    error = Boom()
    guarded = fallback(lambda exc: _async_handler(exc))(make_fn("sync", error))
    with pytest.raises(TypeError, match="awaitable") as info:
        guarded()
    # The original failure is kept as context; no "never awaited" warning (warnings are errors).
    assert info.value.__context__ is error


async def test_sync_handler_returning_a_future_for_a_sync_function_raises() -> None:
    """Any awaitable returned for a sync function (not only a coroutine) raises TypeError."""
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    with pytest.raises(TypeError, match="awaitable"):
        fallback(lambda exc: future)(make_fn("sync", Boom()))()


def test_repr_shows_the_default() -> None:
    """fallback's repr shows its default."""
    assert repr(fallback("cached")) == "fallback('cached')"


async def test_handler_error_propagates_with_the_original_as_context(kind: str) -> None:
    """If the handler raises, its exception propagates with __context__ set to the original."""
    original, replacement = Boom(), Other()

    def handler(exc: BaseException) -> None:
        raise replacement

    with pytest.raises(Other) as info:
        await invoke(fallback(handler)(make_fn(kind, original)))
    assert (info.value, info.value.__context__) == (replacement, original)


async def test_async_handler_error_propagates_with_the_original_as_context() -> None:
    """An async handler that raises keeps the original failure as __context__."""
    original, replacement = Boom(), Other()

    async def handler(exc: BaseException) -> None:
        await asyncio.sleep(0)
        raise replacement

    with pytest.raises(Other) as info:
        await fallback(handler)(make_fn("async", original))()
    assert info.value.__context__ is original


# --- on= -------------------------------------------------------------------------


async def test_non_matching_failure_propagates_unchanged(kind: str) -> None:
    """A failure not matching on propagates as the same object; the handler is not called."""
    error, handled = Other(), []
    with capture_events(FallbackUsed) as events, pytest.raises(Other) as info:
        await invoke(fallback(lambda e: handled.append(e), on=Boom)(make_fn(kind, error)))
    assert (info.value, handled, events) == (error, [], [])


@pytest.mark.parametrize(
    ("on", "error", "replaced"),
    [
        ((Boom, KeyError), KeyError("k"), True),
        ((Boom, KeyError), Other(), False),
        (lambda e: "soft" in str(e), Boom("soft"), True),
        (lambda e: "soft" in str(e), Boom("hard"), False),
        (Boom, ExceptionGroup("g", [Boom(), Boom()]), True),
        (Boom, ExceptionGroup("g", [Boom(), Other()]), False),
        (BaseException, Other(), True),
    ],
    ids=["tuple-hit", "tuple-miss", "predicate-hit", "predicate-miss", "group-all", "group-one-miss", "base"],
)
async def test_on_selects_the_failures_to_replace(
    kind: str, on: Any, error: Exception, replaced: bool
) -> None:
    """on= takes a type, a tuple or a predicate; a group matches only when every leaf does."""
    guarded = fallback("default", on=on)(make_fn(kind, error))
    if replaced:
        assert await invoke(guarded) == "default"
    else:
        with pytest.raises(type(error)) as info:
            await invoke(guarded)
        assert info.value is error


# --- events ----------------------------------------------------------------------


async def test_fallback_used_event_describes_the_replacement(kind: str) -> None:
    """FallbackUsed carries the policy kind, name, operation, clock time and the replaced exception."""
    clock, error = FakeClock(start=12.5), Boom()
    with capture_events(FallbackUsed) as events:
        await invoke(fallback("x", name="cache", clock=clock)(make_fn(kind, error)))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, FallbackUsed)
    assert (event.policy, event.name, event.time, event.exception) == ("fallback", "cache", 12.5, error)
    assert str(event.operation).endswith(("op", "body"))


async def test_fallback_events_go_to_the_policy_bus(kind: str) -> None:
    """With bus=, FallbackUsed reaches that bus and not the default one."""
    bus = EventBus()
    mine: list[object] = []
    bus.subscribe(mine.append, FallbackUsed)
    with capture_events(FallbackUsed) as default_events:
        await invoke(fallback("x", bus=bus)(make_fn(kind, Boom())))
    assert ([type(e) for e in mine], default_events) == ([FallbackUsed], [])


# --- stacking, methods, decoration -----------------------------------------------


async def test_fallback_over_retry_answers_once_after_retries_run_out(kind: str, clock: FakeClock) -> None:
    """fallback outside retry is used once, with the last exception, after every attempt failed."""
    errors = [Boom(1), Boom(2), Boom(3)]
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        raise errors[len(calls) - 1]

    async def op() -> None:
        body()

    target: Callable[..., Any] = op if kind == "async" else body
    seen: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        seen.append(exc)
        return "fb"

    guarded = fallback(handler)(retry(attempts=3, backoff=0, clock=clock)(target))
    assert await invoke(guarded) == "fb"
    assert (len(calls), seen) == (3, [errors[-1]])


async def test_retry_over_fallback_never_sees_the_failure(kind: str, clock: FakeClock) -> None:
    """retry outside fallback gets the fallback's answer on the first attempt and never retries."""
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        raise Boom()

    async def op() -> None:
        body()

    target: Callable[..., Any] = op if kind == "async" else body
    guarded = retry(attempts=3, backoff=0, clock=clock)(fallback("fb")(target))
    assert (await invoke(guarded), len(calls)) == ("fb", 1)


async def test_fallback_on_methods_classmethods_and_staticmethods() -> None:
    """fallback binds on methods, classmethods and staticmethods and the handler gets keyword arguments."""

    def handler(exc: BaseException, *args: Any, **kwargs: Any) -> str:
        return f"fb:{kwargs['key']}"

    class Service:
        @fallback(handler)
        async def method(self, *, key: str) -> str:
            raise Boom()

        @fallback(handler)
        @classmethod
        def cm(cls, *, key: str) -> str:
            raise Boom()

        @staticmethod
        @fallback(handler)
        def sm(*, key: str) -> str:
            raise Boom()

    service = Service()
    assert (await service.method(key="a"), Service.cm(key="b"), service.sm(key="c")) == (
        "fb:a",
        "fb:b",
        "fb:c",
    )


async def test_decorated_function_keeps_signature_and_asyncness(kind: str) -> None:
    """The fallback wrapper keeps the signature, name and async-ness of the function."""
    fn = make_fn(kind, 1)
    wrapped = fallback(0)(fn)
    assert inspect.signature(wrapped) == inspect.signature(fn)
    assert inspect.iscoroutinefunction(wrapped) == (kind == "async")
    assert wrapped.__name__ == fn.__name__


async def test_call_runs_a_function_under_the_fallback(kind: str) -> None:
    """fallback(...).call(fn, *args) answers failures like the decorator."""
    policy = fallback(lambda exc, x: x + 1)
    assert await invoke(policy.call, make_fn(kind, Boom()), 41) == 42


# --- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"on": KeyboardInterrupt}, ValueError, "on"),
        ({"on": asyncio.CancelledError}, ValueError, "on"),
        ({"on": (Boom, SystemExit)}, ValueError, "on"),
        ({"on": "x"}, TypeError, "on"),
        ({"on": ()}, ValueError, "on"),
        ({"on_result": "x"}, TypeError, "on_result"),
        ({"on_result": 5}, TypeError, "on_result"),
        ({"name": ""}, ValueError, "name"),
        ({"name": 3}, TypeError, "name"),
        ({"bus": object()}, TypeError, "bus"),
        ({"clock": object()}, TypeError, "clock"),
    ],
)
def test_bad_configuration_fails_at_factory_time(
    kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    """Bad fallback configuration raises at factory time, naming the parameter."""
    with pytest.raises(error, match=rf"^{param}\b"):
        fallback("x", **kwargs)


def test_default_is_required_and_the_rest_keyword_only() -> None:
    """fallback needs a default; on= cannot be passed positionally."""
    with pytest.raises(TypeError):
        fallback()  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        fallback("x", Boom)  # type: ignore[call-overload]


def test_factory_returns_a_fallback_policy() -> None:
    """fallback(...) returns a Fallback holding its default."""
    policy = fallback("x")
    assert isinstance(policy, Fallback)
    assert policy.default == "x"


# --- on_result= ------------------------------------------------------------------


def is_bad(result: object) -> bool:
    """The on_result predicate of these tests: the string 'bad' is a failure."""
    return result == "bad"


async def test_a_matching_result_is_replaced_by_the_value(kind: str) -> None:
    """A result matching on_result is replaced by the default; any other result passes through."""
    policy = fallback("cached", on_result=is_bad)
    assert (await invoke(policy(make_fn(kind, "bad"))), await invoke(policy(make_fn(kind, "good")))) == (
        "cached",
        "good",
    )


async def test_the_handler_receives_the_result_as_a_failed_result(kind: str) -> None:
    """For a result, the handler gets FailedResult(result) first, then the call's arguments."""
    seen: list[tuple[BaseException, tuple[Any, ...], dict[str, Any]]] = []

    def handler(exc: Exception, *args: Any, **kwargs: Any) -> str:
        seen.append((exc, args, kwargs))
        return "handled"

    assert await invoke(fallback(handler, on_result=is_bad)(make_fn(kind, "bad")), 1, key="k") == "handled"
    [(failure, args, kwargs)] = seen
    assert (type(failure), getattr(failure, "result", None), args, kwargs) == (
        FailedResult,
        "bad",
        (1,),
        {"key": "k"},
    )


async def test_an_async_handler_answers_a_result() -> None:
    """An async handler answering a result is awaited."""

    async def handler(exc: Exception) -> str:
        await asyncio.sleep(0)
        assert isinstance(exc, FailedResult)
        return f"instead of {exc.result}"

    assert await fallback(handler, on_result=is_bad)(make_fn("async", "bad"))() == "instead of bad"


async def test_a_result_fallback_emits_fallback_used_with_the_result(kind: str) -> None:
    """FallbackUsed reports a replaced result as a FailedResult (its exception field stays an exception)."""
    with capture_events(FallbackUsed) as events:
        await invoke(fallback("x", on_result=is_bad, name="r")(make_fn(kind, "bad")))
    [event] = events
    assert isinstance(event, FallbackUsed)
    assert (event.name, type(event.exception), getattr(event.exception, "result", None)) == (
        "r",
        FailedResult,
        "bad",
    )


async def test_a_result_fallback_marks_the_call(kind: str) -> None:
    """A call whose result was replaced counts as answered by the fallback, like a replaced failure."""
    bus, marks = EventBus(), []

    def ended(event: CallSucceeded) -> None:
        ctx = resilient.current_call()
        assert ctx is not None
        marks.append(ctx.fallback_used)

    with bus.subscribe(ended, CallSucceeded):
        await invoke(fallback("x", on_result=is_bad, bus=bus)(make_fn(kind, "bad")))
        await invoke(fallback("x", on_result=is_bad, bus=bus)(make_fn(kind, "good")))
    assert marks == [True, False]


async def test_a_handler_error_for_a_result_has_the_failed_result_as_context(kind: str) -> None:
    """A handler raising while answering a result chains to the FailedResult, as for an exception."""
    replacement = Other()

    def handler(exc: Exception) -> None:
        raise replacement

    with pytest.raises(Other) as info:
        await invoke(fallback(handler, on_result=is_bad)(make_fn(kind, "bad")))
    assert isinstance(info.value.__context__, FailedResult)
    assert info.value.__context__.result == "bad"


async def test_a_handler_re_raising_the_failed_result_does_not_loop(kind: str) -> None:
    """A handler that raises the FailedResult it got propagates it without a self-referencing context."""

    def handler(exc: Exception) -> None:
        raise exc

    with pytest.raises(FailedResult) as info:
        await invoke(fallback(handler, on_result=is_bad)(make_fn(kind, "bad")))
    assert info.value.__context__ is None


async def test_exceptions_still_fall_back_and_answers_are_not_rechecked(kind: str) -> None:
    """With on_result set, a matching exception still falls back, and its answer is not fed to on_result."""
    checked: list[object] = []

    def predicate(result: object) -> bool:
        checked.append(result)
        return True  # every result is "bad": the fallback's own answer must not be checked

    assert await invoke(fallback("answer", on_result=predicate)(make_fn(kind, Boom()))) == "answer"
    assert checked == []


async def test_on_empty_with_on_result_replaces_results_only(kind: str) -> None:
    """on=() with on_result: results are replaced, every exception propagates unchanged."""
    error = Boom()
    policy = fallback("x", on=(), on_result=is_bad)
    assert await invoke(policy(make_fn(kind, "bad"))) == "x"
    with pytest.raises(Boom) as info:
        await invoke(policy(make_fn(kind, error)))
    assert info.value is error


async def test_a_failing_predicate_propagates(kind: str) -> None:
    """An on_result predicate that raises is a bug: its error propagates, the default is not used."""

    def predicate(result: object) -> bool:
        raise KeyError("predicate bug")

    with capture_events(FallbackUsed) as events, pytest.raises(KeyError):
        await invoke(fallback("x", on_result=predicate)(make_fn(kind, "bad")))
    assert events == []


@pytest.mark.parametrize("interrupt", [asyncio.CancelledError, KeyboardInterrupt])
async def test_control_flow_is_never_replaced_with_on_result(
    kind: str, interrupt: type[BaseException]
) -> None:
    """A control-flow exception passes through a fallback with on_result; the predicate is not asked."""
    checked: list[object] = []
    error = interrupt()

    def predicate(result: object) -> bool:
        checked.append(result)
        return True

    with pytest.raises(interrupt) as info:
        await invoke(fallback("x", on=BaseException, on_result=predicate)(make_fn(kind, error)))
    assert (info.value, checked) == (error, [])


async def test_cancelling_an_async_handler_for_a_result_propagates() -> None:
    """A cancellation while an async handler answers a result propagates; it is not answered or chained."""
    started = asyncio.Event()

    async def handler(exc: Exception) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(fallback(handler, on_result=is_bad)(make_fn("async", "bad"))())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    assert info.value.__context__ is None


async def test_fallback_on_result_over_retry_on_result(kind: str, clock: FakeClock) -> None:
    """fallback(on_result) outside retry(on_result) replaces the last bad result once retries run out."""
    calls: list[int] = []

    def body() -> str:
        calls.append(1)
        return "bad"

    async def op() -> str:
        return body()

    target: Callable[..., Any] = op if kind == "async" else body
    guarded = fallback("stale", on_result=is_bad)(
        retry(attempts=3, on_result=is_bad, backoff=0, clock=clock)(target)
    )
    assert (await invoke(guarded), len(calls)) == ("stale", 3)


def test_failed_result_is_a_resilient_error_that_pickles() -> None:
    """FailedResult is a ResilientError holding the result; str names it, pickling keeps it."""
    failure = FailedResult([1, 2])
    copy = pickle.loads(pickle.dumps(failure))
    assert isinstance(failure, ResilientError)
    assert (str(failure), repr(failure), copy.result) == (
        "result matched on_result: [1, 2]",
        "FailedResult([1, 2])",
        [1, 2],
    )


def test_policy_keeps_its_on_result() -> None:
    """The policy exposes the predicate it was given."""
    assert fallback("x", on_result=is_bad).on_result is is_bad
