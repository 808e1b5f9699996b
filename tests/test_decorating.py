"""Decorating: one wrapper, the same signature and async-ness, correct binding."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import pickle
import threading
import tracemalloc
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import resilient
from resilient import Fallback, Policy, Retry, Timeout, fallback, pipeline, pipeline_of, retry, timeout
from resilient._pipeline import AsyncLayer, SyncLayer
from resilient.testing import FakeClock


async def resolve(value: Any) -> Any:
    """Await *value* if a coroutine function produced it."""
    if inspect.isawaitable(value):
        return await value
    return value


async def async_add(x: int, y: int = 1, *, scale: int = 1) -> int:
    """Add two numbers, asynchronously."""
    return (x + y) * scale


def sync_add(x: int, y: int = 1, *, scale: int = 1) -> int:
    """Add two numbers."""
    return (x + y) * scale


@pytest.fixture(params=["sync", "async"])
def add(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The same function, sync and async."""
    return sync_add if request.param == "sync" else async_add


@pytest.fixture
def policies(clock: FakeClock) -> tuple[Retry, Fallback[Any]]:
    """Two policies that guard both sync and async functions."""
    return retry(attempts=2, clock=clock), fallback(0)


# --- what the wrapper looks like -------------------------------------------------


def test_signature_preserved(add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]) -> None:
    """A decorated function has the original's inspect.signature."""
    r, f = policies
    assert inspect.signature(f(r(add))) == inspect.signature(add)


def test_iscoroutinefunction_preserved(
    add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """inspect.iscoroutinefunction answers the same for the wrapper as for the original."""
    r, f = policies
    assert inspect.iscoroutinefunction(f(r(add))) == inspect.iscoroutinefunction(add)


def test_metadata_preserved(add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]) -> None:
    """__name__, __qualname__, __doc__ and __module__ are the original's."""
    r, f = policies
    wrapped = f(r(add))
    assert (wrapped.__name__, wrapped.__qualname__, wrapped.__doc__, wrapped.__module__) == (
        add.__name__,
        add.__qualname__,
        add.__doc__,
        add.__module__,
    )


def test_wrapped_is_original_when_stacked(
    add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """__wrapped__ of a stacked wrapper is the original function, not an inner wrapper."""
    r, f = policies
    wrapped: Any = f(r(add))
    assert wrapped.__wrapped__ is add
    assert inspect.unwrap(wrapped) is add


async def test_arguments_pass_through(add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]) -> None:
    """Positional, default and keyword-only arguments reach the function unchanged."""
    r, f = policies
    guarded: Callable[..., Any] = f(r(add))
    assert await resolve(guarded(2, 3, scale=10)) == 50


def test_stacked_decorators_fold_into_one_wrapper(
    add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """Stacking gives one pipeline, top decorator outermost."""
    r, f = policies
    wrapped = f(r(add))
    assert pipeline_of(wrapped).policies == (f, r)


def test_stacking_does_not_change_the_inner_wrapper(
    add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """Decorating an already decorated function leaves the first wrapper's pipeline alone."""
    r, f = policies
    inner = r(add)
    f(inner)
    assert pipeline_of(inner).policies == (r,)


def test_decorator_syntax_top_is_outermost(clock: FakeClock) -> None:
    """With @-syntax the top decorator is the first policy."""
    r = retry(attempts=2, clock=clock)
    t = timeout(1, clock=clock)
    f = fallback(None)

    @f
    @t
    @r
    async def op() -> None:
        """Do nothing."""

    assert pipeline_of(op).policies == (f, t, r)


def test_pipeline_object_decorates(add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]) -> None:
    """A Pipeline used as a decorator is the decorated function's pipeline."""
    p = pipeline(*policies)
    assert pipeline_of(p(add)) is p


def test_pipeline_stacked_on_policy_flattens(
    add: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """A pipeline stacked on a decorated function lists its policies first."""
    r, f = policies
    g = fallback(1)
    wrapped = pipeline(g, f)(r(add))
    assert pipeline_of(wrapped).policies == (g, f, r)


def test_pipeline_of_undecorated_raises() -> None:
    """pipeline_of on a plain function raises TypeError."""
    with pytest.raises(TypeError, match="not decorated"):
        pipeline_of(sync_add)


def test_sync_function_stays_sync(policies: tuple[Retry, Fallback[Any]]) -> None:
    """Calling a decorated sync function returns the value, not an awaitable."""
    r, _ = policies
    assert r(sync_add)(1, 2) == 3


async def test_async_function_returns_coroutine(policies: tuple[Retry, Fallback[Any]]) -> None:
    """Calling a decorated async function returns an awaitable of the value."""
    r, _ = policies
    result = r(async_add)(1, 2)
    assert inspect.isawaitable(result)
    assert await result == 3


# --- rejected targets -------------------------------------------------------------


def gen() -> Iterator[int]:
    """A generator function."""
    yield 1


async def agen() -> AsyncIterator[int]:
    """An async generator function."""
    yield 1


@pytest.mark.parametrize("target", [gen, agen], ids=["generator", "async-generator"])
def test_generator_rejected_at_decoration(
    target: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """Generator and async-generator functions are rejected with TypeError when decorated."""
    r, _ = policies
    with pytest.raises(TypeError, match="generator"):
        r(target)


@pytest.mark.parametrize("target", [gen, agen], ids=["generator", "async-generator"])
def test_generator_rejected_by_call(
    target: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]
) -> None:
    """policy.call rejects generator functions with TypeError."""
    r, _ = policies
    with pytest.raises(TypeError, match="generator"):
        r.call(target)


@pytest.mark.parametrize("target", [None, 42, "fn", object()], ids=repr)
def test_non_callable_rejected(target: Any, policies: tuple[Retry, Fallback[Any]]) -> None:
    """Decorating something that is not callable raises TypeError."""
    r, _ = policies
    with pytest.raises(TypeError, match="callable"):
        r(target)


def test_timeout_rejects_sync_function_at_decoration(clock: FakeClock) -> None:
    """timeout() on a sync function raises TypeError when decorating, not when calling."""
    with pytest.raises(TypeError, match="async def"):
        timeout(1, clock=clock)(sync_add)  # type: ignore[arg-type]


def test_timeout_stacked_on_sync_wrapper_rejected(clock: FakeClock) -> None:
    """Stacking timeout() on a decorated sync function raises TypeError."""
    with pytest.raises(TypeError, match="async def"):
        timeout(1, clock=clock)(retry(clock=clock)(sync_add))  # type: ignore[arg-type]


def test_pipeline_with_timeout_rejects_sync_function(clock: FakeClock) -> None:
    """A pipeline holding a timeout rejects a sync function at decoration."""
    with pytest.raises(TypeError, match="timeout"):
        pipeline(retry(clock=clock), timeout(1, clock=clock))(sync_add)


# --- methods ----------------------------------------------------------------------


def make_class(clock: FakeClock) -> type[Any]:
    """A class with every kind of method, decorated above and below the descriptor."""
    r = retry(attempts=2, clock=clock)
    t = timeout(5, clock=clock)

    class Service:
        """A service."""

        factor = 10

        def __init__(self) -> None:
            self.calls = 0

        @r
        async def method(self, x: int) -> int:
            """A method."""
            self.calls += 1
            return x * self.factor

        @r
        def sync_method(self, x: int) -> int:
            """A sync method."""
            self.calls += 1
            return x * self.factor

        @r
        @classmethod
        async def cls_above(cls, x: int) -> str:
            """Decorated above @classmethod."""
            return f"{cls.__name__}:{x}"

        @classmethod
        @r
        async def cls_below(cls, x: int) -> str:
            """Decorated below @classmethod."""
            return f"{cls.__name__}:{x}"

        @t
        @classmethod
        @r
        async def cls_both(cls, x: int) -> str:
            """Decorated above and below @classmethod."""
            return f"{cls.__name__}:{x}"

        @r
        @classmethod
        def sync_cls_above(cls, x: int) -> str:
            """Sync, decorated above @classmethod."""
            return f"{cls.__name__}:{x}"

        @classmethod
        @r
        def sync_cls_below(cls, x: int) -> str:
            """Sync, decorated below @classmethod."""
            return f"{cls.__name__}:{x}"

        @r
        @staticmethod
        async def static_above(x: int) -> int:
            """Decorated above @staticmethod."""
            return x + 1

        @staticmethod
        @r
        async def static_below(x: int) -> int:
            """Decorated below @staticmethod."""
            return x + 1

        @t
        @staticmethod
        @r
        async def static_both(x: int) -> int:
            """Decorated above and below @staticmethod."""
            return x + 1

        @r
        @staticmethod
        def sync_static_above(x: int) -> int:
            """Sync, decorated above @staticmethod."""
            return x + 1

        @staticmethod
        @r
        def sync_static_below(x: int) -> int:
            """Sync, decorated below @staticmethod."""
            return x + 1

    return Service


@pytest.fixture
def service_cls(clock: FakeClock) -> type[Any]:
    """The decorated class and a subclass of it."""
    base = make_class(clock)

    class Sub(base):  # type: ignore[valid-type,misc]
        """A subclass."""

        factor = 100

    return Sub


async def test_method_binds_self(service_cls: type[Any]) -> None:
    """A decorated method receives the instance as self."""
    obj = service_cls()
    assert (await obj.method(2), obj.sync_method(3), obj.calls) == (200, 300, 2)


async def test_method_called_through_class(service_cls: type[Any]) -> None:
    """A decorated method looked up on the class takes the instance explicitly."""
    obj = service_cls()
    assert (await service_cls.method(obj, 2), service_cls.sync_method(obj, 3)) == (200, 300)


@pytest.mark.parametrize("name", ["cls_above", "cls_below", "cls_both", "sync_cls_above", "sync_cls_below"])
@pytest.mark.parametrize("via", ["class", "instance"])
async def test_classmethod_binds_cls(service_cls: type[Any], name: str, via: str) -> None:
    """A decorated classmethod receives the (sub)class, above or below @classmethod."""
    owner = service_cls if via == "class" else service_cls()
    assert await resolve(getattr(owner, name)(7)) == "Sub:7"


@pytest.mark.parametrize(
    "name", ["static_above", "static_below", "static_both", "sync_static_above", "sync_static_below"]
)
@pytest.mark.parametrize("via", ["class", "instance"])
async def test_staticmethod_gets_no_binding(service_cls: type[Any], name: str, via: str) -> None:
    """A decorated staticmethod receives only its own arguments, above or below @staticmethod."""
    owner = service_cls if via == "class" else service_cls()
    assert await resolve(getattr(owner, name)(7)) == 8


@pytest.mark.parametrize(
    ("name", "is_async"),
    [
        ("method", True),
        ("sync_method", False),
        ("cls_above", True),
        ("cls_below", True),
        ("cls_both", True),
        ("sync_cls_above", False),
        ("static_above", True),
        ("static_below", True),
        ("sync_static_below", False),
    ],
)
def test_bound_method_keeps_async_ness(service_cls: type[Any], name: str, is_async: bool) -> None:
    """inspect.iscoroutinefunction is preserved on methods looked up on an instance."""
    assert inspect.iscoroutinefunction(getattr(service_cls(), name)) is is_async


@pytest.mark.parametrize("name", ["method", "cls_above", "cls_below", "cls_both"])
def test_bound_signature_drops_self(service_cls: type[Any], name: str) -> None:
    """The signature of a bound method or classmethod no longer lists self/cls."""
    assert list(inspect.signature(getattr(service_cls(), name)).parameters) == ["x"]


@pytest.mark.parametrize("name", ["static_above", "static_below", "static_both"])
def test_staticmethod_signature(service_cls: type[Any], name: str) -> None:
    """A decorated staticmethod keeps its signature."""
    assert list(inspect.signature(getattr(service_cls, name)).parameters) == ["x"]


@pytest.mark.parametrize(
    ("name", "count"),
    [("method", 1), ("cls_above", 1), ("cls_below", 1), ("cls_both", 2), ("static_both", 2)],
)
def test_pipeline_of_methods(service_cls: type[Any], name: str, count: int) -> None:
    """pipeline_of works on methods looked up on the class, an instance, and in the class dict."""
    found = {
        len(pipeline_of(getattr(service_cls, name)).policies),
        len(pipeline_of(getattr(service_cls(), name)).policies),
        len(pipeline_of(service_cls.__mro__[1].__dict__[name]).policies),
    }
    assert found == {count}


@pytest.mark.parametrize(
    "name",
    [
        "method",
        "sync_method",
        "cls_above",
        "cls_below",
        "cls_both",
        "sync_cls_above",
        "static_above",
        "static_below",
        "static_both",
    ],
)
@pytest.mark.parametrize("via", ["class", "instance"])
def test_method_wrapped_is_original_function(service_cls: type[Any], name: str, via: str) -> None:
    """__wrapped__ of a decorated method, however it is looked up, is the original plain function."""
    owner = service_cls if via == "class" else service_cls()
    found = getattr(owner, name).__wrapped__
    assert type(found) is types.FunctionType
    assert found.__qualname__.endswith(f"Service.{name}")
    assert inspect.unwrap(getattr(owner, name)) is found


def test_both_sides_of_classmethod_fold_into_one_pipeline(service_cls: type[Any]) -> None:
    """Decorators above and below @classmethod give one pipeline, top decorator outermost."""
    kinds = [p.kind for p in pipeline_of(service_cls.cls_both).policies]
    assert kinds == ["timeout", "retry"]


def test_method_metadata(service_cls: type[Any]) -> None:
    """A decorated method keeps its __name__, __qualname__ and __doc__."""
    m = service_cls.method
    assert (m.__name__, m.__qualname__.rsplit(".", 1)[-1], m.__doc__) == ("method", "method", "A method.")


def test_method_operation_is_qualified_name(clock: FakeClock) -> None:
    """current_call().operation inside a method is the method's qualified name."""

    class Client:
        @retry(clock=clock)
        def get(self) -> str | None:
            ctx = resilient.current_call()
            return None if ctx is None else ctx.operation

    assert Client().get() == "test_method_operation_is_qualified_name.<locals>.Client.get"


# --- sharing, callables, decision time --------------------------------------------


async def test_one_policy_on_two_functions(clock: FakeClock) -> None:
    """One policy object decorates two functions; each runs its own function."""
    r = retry(attempts=2, clock=clock)

    @r
    async def one() -> int:
        return 1

    @r
    def two() -> int:
        return 2

    assert (await one(), two()) == (1, 2)
    assert pipeline_of(one).policies == pipeline_of(two).policies == (r,)


async def test_async_callable_object_is_async(policies: tuple[Retry, Fallback[Any]]) -> None:
    """An object with `async def __call__` is decorated as an async function."""

    class Handler:
        async def __call__(self, x: int) -> int:
            return x * 2

    r, _ = policies
    wrapped = r(Handler())
    assert await wrapped(4) == 8


def test_partial_of_sync_function(policies: tuple[Retry, Fallback[Any]]) -> None:
    """A functools.partial of a sync function is decorated as sync."""
    r, _ = policies
    assert r(functools.partial(sync_add, 1))(2) == 3


async def test_partial_of_async_function(policies: tuple[Retry, Fallback[Any]]) -> None:
    """A functools.partial of a coroutine function is decorated as async."""
    r, _ = policies
    assert await r(functools.partial(async_add, 1))(2) == 3


async def test_sync_async_decided_at_decoration(clock: FakeClock) -> None:
    """A sync function that returns an awaitable is treated as sync: the awaitable is returned as is."""
    calls = 0

    async def work() -> int:
        return 5

    def starts_work() -> Awaitable[int]:
        nonlocal calls
        calls += 1
        return work()

    wrapped = retry(clock=clock)(starts_work)
    awaitable = wrapped()
    assert (calls, inspect.iscoroutinefunction(wrapped)) == (1, False)
    assert await awaitable == 5


@pytest.mark.parametrize("fn", [sync_add, async_add], ids=["sync", "async"])
async def test_policy_call(fn: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]) -> None:
    """policy.call(fn, *args, **kwargs) runs fn with those arguments under the policy."""
    r, f = policies
    assert (await resolve(r.call(fn, 1, 2, scale=3)), await resolve(f.call(fn, 2, y=2))) == (9, 4)


@pytest.mark.parametrize("fn", [sync_add, async_add], ids=["sync", "async"])
async def test_pipeline_call(fn: Callable[..., Any], policies: tuple[Retry, Fallback[Any]]) -> None:
    """pipeline(...).call(fn, *args, **kwargs) runs fn under every policy."""
    assert await resolve(pipeline(*policies).call(fn, 4, scale=2)) == 10


async def test_timeout_call(clock: FakeClock) -> None:
    """timeout(...).call awaits a coroutine function."""
    assert await timeout(1, clock=clock).call(async_add, 1, 1) == 2


def test_timeout_call_rejects_sync_function(clock: FakeClock) -> None:
    """timeout(...).call on a sync function raises TypeError."""
    with pytest.raises(TypeError, match="async def"):
        timeout(1, clock=clock).call(sync_add, 1)  # type: ignore[arg-type,unused-coroutine]


async def test_policy_call_keyword_named_fn(policies: tuple[Retry, Fallback[Any]]) -> None:
    """A keyword argument named fn reaches the function (the policy's own parameter is positional-only)."""

    def takes_fn(fn: str) -> str:
        return fn

    r, _ = policies
    assert r.call(takes_fn, fn="value") == "value"


def test_module_function_pickles_by_reference(policies: tuple[Retry, Fallback[Any]]) -> None:
    """A decorated module-level function pickles by reference, like a plain function."""
    assert pickle.loads(pickle.dumps(decorated_module_function)) is decorated_module_function


@retry(attempts=1)
def decorated_module_function() -> int:
    """A module-level decorated function."""
    return 1


def test_policy_is_exported_base(policies: tuple[Retry, Fallback[Any]]) -> None:
    """Every policy object is a resilient.Policy, and so is a pipeline and a timeout."""
    assert all(isinstance(p, Policy) for p in (*policies, pipeline(*policies), timeout(1)))
    assert isinstance(timeout(1), Timeout)


async def test_coroutine_not_awaited_is_harmless(policies: tuple[Retry, Fallback[Any]]) -> None:
    """Creating the call's coroutine runs nothing until it is awaited."""
    calls: list[int] = []
    r, _ = policies

    @r
    async def op() -> None:
        calls.append(1)

    coro = op()
    assert calls == []
    await coro
    assert calls == [1]


async def test_concurrent_calls_of_one_wrapper(clock: FakeClock) -> None:
    """Concurrent calls of one decorated function each get their own context."""
    seen: list[tuple[int, int]] = []

    @retry(attempts=3, backoff=0, clock=clock)
    async def op(i: int) -> int:
        ctx = resilient.current_call()
        assert ctx is not None
        seen.append((i, ctx.attempt))
        await asyncio.sleep(0)
        if ctx.attempt < 2:
            raise ValueError(i)
        return i

    assert await asyncio.gather(*(op(i) for i in range(3))) == [0, 1, 2]
    assert sorted(seen) == [(i, a) for i in range(3) for a in (1, 2)]


def test_callable_object_with_generator_call_rejected(policies: tuple[Retry, Fallback[Any]]) -> None:
    """An object whose __call__ is a generator function is rejected like a generator function."""

    class Stream:
        def __call__(self) -> Iterator[int]:
            yield 1

    r, _ = policies
    with pytest.raises(TypeError, match="generator"):
        r(Stream())


# --- what decorating costs -----------------------------------------------------


def fresh_functions(n: int) -> list[Callable[..., Any]]:
    """*n* distinct function objects sharing sync_add's code."""
    return [types.FunctionType(sync_add.__code__, sync_add.__globals__, f"fn{i}") for i in range(n)]


def retained_per_decoration(decorate: Callable[[Callable[..., Any]], Any], n: int = 100) -> float:
    """Bytes that stay allocated per function decorated by *decorate* (tracemalloc, after gc)."""
    fns = fresh_functions(n + 1)
    decorate(fns[0])  # module-level caches fill outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [decorate(f) for f in fns[1:]]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return grown / n


def test_decorating_keeps_under_a_kilobyte_per_function() -> None:
    """`@retry(attempts=3)` above a function keeps at most 1 KB alive, the policy included."""
    assert retained_per_decoration(lambda fn: retry(attempts=3)(fn)) <= 1024


def test_a_function_nobody_observes_keeps_no_observer_after_its_first_call() -> None:
    """Called once with nobody subscribed, a retried function keeps under 3 KB: no call-event closures."""

    def decorate_and_call(fn: Callable[..., Any]) -> Any:
        guarded = retry(attempts=3)(fn)
        assert guarded(1, 2, scale=1) == 3
        return guarded

    assert retained_per_decoration(decorate_and_call) <= 3072


def test_decorated_functions_share_their_wrapper_class() -> None:
    """Decorating builds no class per function: two decorated functions share one wrapper type."""
    one, two = (retry(attempts=3)(f) for f in fresh_functions(2))
    assert type(one) is type(two)


class CountingRetry(Retry):
    """A retry that counts how often its layers are folded."""

    folds: list[str]

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Count, then fold the async layer."""
        self.folds.append("async")
        return super().wrap_async(inner)

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Count, then fold the sync layer."""
        self.folds.append("sync")
        return super().wrap_sync(inner)


async def test_decorating_folds_nothing_until_the_first_call(add: Callable[..., Any]) -> None:
    """Decorating only records the pipeline; the first call folds its layers, once for every call after."""
    policy = CountingRetry(attempts=2)
    policy.folds = []
    guarded = policy(add)
    assert policy.folds == []
    assert [await resolve(guarded(1)) for _ in range(3)] == [2, 2, 2]
    assert policy.folds == (["async"] if add is async_add else ["sync"])


class Ready:
    """A class with every kind of decorated method, for calls before and after the first."""

    @retry(attempts=2)
    def method(self, x: int) -> tuple[Any, int]:
        """A method."""
        return (self, x)

    @retry(attempts=2)
    @classmethod
    def cls_method(cls, x: int) -> tuple[Any, int]:
        """A classmethod below the decorator."""
        return (cls, x)

    @retry(attempts=2)
    @staticmethod
    def static(x: int) -> tuple[Any, int]:
        """A staticmethod below the decorator."""
        return (None, x)


@pytest.mark.parametrize("name", ["method", "cls_method", "static"])
def test_wrapper_behaves_the_same_after_its_first_call(name: str) -> None:
    """The first call readies a wrapper in place: later calls, binding and metadata are unchanged."""
    obj = Ready()
    owner = {"method": obj, "cls_method": Ready, "static": None}[name]
    before = (
        inspect.signature(getattr(obj, name)),
        getattr(Ready, name).__wrapped__,
        pipeline_of(getattr(Ready, name)),
    )
    assert [getattr(obj, name)(i) for i in range(3)] == [(owner, i) for i in range(3)]
    assert [getattr(Ready, name)(*([obj] if name == "method" else []), i) for i in range(2)] == [
        (owner, i) for i in range(2)
    ]
    after = (
        inspect.signature(getattr(obj, name)),
        getattr(Ready, name).__wrapped__,
        pipeline_of(getattr(Ready, name)),
    )
    assert after == before


def test_unbound_staticmethod_wrapper_calls_through() -> None:
    """A wrapper around a staticmethod object is callable by itself, before and after its first call."""
    guarded = retry(attempts=2)(staticmethod(sync_add))
    assert [guarded(i) for i in range(3)] == [1, 2, 3]


def test_first_calls_from_many_threads_all_run() -> None:
    """Threads racing to make a wrapper's first call each get the right result."""
    guarded = retry(attempts=2)(sync_add)
    start = threading.Barrier(8)
    results: list[int] = []

    def worker(i: int) -> None:
        start.wait()
        results.append(guarded(i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [i + 1 for i in range(8)]
    assert guarded(41) == 42
