"""The pipeline core: order, flattening, custom policies, control flow."""

from __future__ import annotations

import asyncio
import gc
import inspect
import tracemalloc
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from resilient import (
    Pipeline,
    Policy,
    fallback,
    pipeline,
    pipeline_of,
    retry,
    timeout,
)
from resilient._context import CallContext
from resilient._pipeline import AsyncLayer, SyncLayer
from resilient.testing import FakeClock


class Trace(Policy):
    """A policy that records when its layer is entered and left."""

    kind: ClassVar[str] = "trace"

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log
        self.name = label
        self.clock = FakeClock()
        self.bus = pipeline().bus

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Record around the async layer below."""

        async def run(ctx: CallContext, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            self.log.append(f"{self.label}>")
            try:
                return await inner(ctx, fn, args, kwargs)
            finally:
                self.log.append(f"<{self.label}")

        return run

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Record around the sync layer below."""

        def run(ctx: CallContext, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            self.log.append(f"{self.label}>")
            try:
                return inner(ctx, fn, args, kwargs)
            finally:
                self.log.append(f"<{self.label}")

        return run


@pytest.fixture
def log() -> list[str]:
    """The shared trace log."""
    return []


@pytest.fixture(params=["sync", "async"])
def is_async(request: pytest.FixtureRequest) -> bool:
    """Run each test for a sync and an async function."""
    return bool(request.param == "async")


def target(is_async: bool, log: list[str]) -> Callable[[], Any]:
    """A function that records its own run."""

    def body() -> str:
        log.append("fn")
        return "done"

    async def abody() -> str:
        return body()

    return abody if is_async else body


async def resolve(value: Any) -> Any:
    """Await *value* if it is awaitable."""
    return await value if inspect.isawaitable(value) else value


# --- order -------------------------------------------------------------------------------


async def test_pipeline_first_is_outermost(is_async: bool, log: list[str]) -> None:
    """pipeline(a, b, c): a is entered first and left last (Polly v8 order)."""
    p = pipeline(Trace("a", log), Trace("b", log), Trace("c", log))
    assert await resolve(p.call(target(is_async, log))) == "done"
    assert log == ["a>", "b>", "c>", "fn", "<c", "<b", "<a"]


async def test_top_decorator_is_outermost(is_async: bool, log: list[str]) -> None:
    """Stacked decorators run the top one outermost."""
    fn = Trace("a", log)(Trace("b", log)(target(is_async, log)))
    await resolve(fn())
    assert log == ["a>", "b>", "fn", "<b", "<a"]


def test_nested_pipelines_flatten(log: list[str]) -> None:
    """A pipeline inside a pipeline contributes its policies in place."""
    a, b, c, d = (Trace(x, log) for x in "abcd")
    assert pipeline(a, pipeline(b, pipeline(c)), d).policies == (a, b, c, d)


def test_policy_policies_is_itself(log: list[str]) -> None:
    """A single policy's .policies is a one-element tuple of itself."""
    a = Trace("a", log)
    assert a.policies == (a,)


def test_empty_pipeline_has_no_policies() -> None:
    """pipeline() with no policies is valid and empty."""
    assert pipeline().policies == ()


async def test_empty_pipeline_call(is_async: bool, log: list[str]) -> None:
    """An empty pipeline's call returns the function's result."""
    assert await resolve(pipeline().call(target(is_async, log))) == "done"


@pytest.mark.parametrize("bad", [None, 3, "retry", retry], ids=repr)
def test_pipeline_rejects_non_policy(bad: Any) -> None:
    """pipeline() with something that is not a policy raises TypeError naming the argument."""
    with pytest.raises(TypeError, match="argument 2"):
        pipeline(retry(), bad)


def test_pipeline_is_policy() -> None:
    """A Pipeline is a Policy with kind 'pipeline'."""
    p = pipeline(retry())
    assert isinstance(p, Policy)
    assert isinstance(p, Pipeline)
    assert p.kind == "pipeline"


def test_pipeline_name() -> None:
    """pipeline(name=...) keeps its name."""
    assert pipeline(retry(), name="api").name == "api"


@pytest.mark.parametrize(("kw", "value"), [("name", 1), ("name", ""), ("clock", 1), ("bus", "b")])
def test_pipeline_bad_config_names_parameter(kw: str, value: Any) -> None:
    """Bad pipeline configuration raises naming the parameter."""
    with pytest.raises((TypeError, ValueError), match=kw):
        pipeline(retry(), **{kw: value})


def test_pipeline_repr() -> None:
    """A pipeline's repr lists its policies' own reprs, outermost first."""
    r, t = retry(name="r"), timeout(1)
    assert repr(pipeline(r, t)) == f"pipeline({r!r}, {t!r})"
    assert repr(t) == "timeout(1.0)"


def test_pipeline_supports_sync() -> None:
    """A pipeline guards sync functions only if every policy does."""
    assert (pipeline(retry()).supports_sync, pipeline(retry(), timeout(1)).supports_sync) == (True, False)


async def test_one_pipeline_on_many_functions(log: list[str]) -> None:
    """One pipeline decorates several functions, sync and async, each running its own function."""
    p = pipeline(Trace("a", log))

    @p
    def one() -> int:
        return 1

    @p
    async def two() -> int:
        return 2

    assert (one(), await two()) == (1, 2)
    assert pipeline_of(one) is pipeline_of(two) is p


async def test_pipeline_layers_built_once(log: list[str]) -> None:
    """A pipeline folds each policy's layer once, not per call."""
    built: list[str] = []

    class Counting(Trace):
        def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
            built.append("async")
            return super().wrap_async(inner)

    p = pipeline(Counting("a", log))
    for _ in range(3):
        await p.call(target(True, log))
    assert built == ["async"]


def test_stacking_keeps_explicit_pipeline_settings(clock: FakeClock) -> None:
    """Stacking a policy on a named pipeline keeps the pipeline's name, clock and bus."""
    bus = pipeline().bus.__class__()
    p = pipeline(retry(), name="api", clock=clock, bus=bus)
    merged = pipeline_of(fallback(None)(p(target(False, []))))
    assert (merged.name, merged.clock, merged.bus) == ("api", clock, bus)


def test_pipeline_clock_from_policies(clock: FakeClock) -> None:
    """Without clock=, a pipeline times calls with its first policy's injected clock."""
    assert pipeline(fallback(None), retry(clock=clock)).clock is clock


# --- control flow ---------------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError])
async def test_control_flow_passes_every_policy(
    clock: FakeClock, is_async: bool, exc_type: type[BaseException]
) -> None:
    """A control-flow exception passes retry(on=BaseException) and fallback(on=BaseException) untouched."""
    exc = exc_type()
    calls = 0

    def body() -> None:
        nonlocal calls
        calls += 1
        raise exc

    async def abody() -> None:
        body()

    p = pipeline(
        fallback("fallback", on=BaseException),
        retry(attempts=3, on=BaseException, backoff=0, clock=clock),
        retry(attempts=3, on=lambda e: True, backoff=0, clock=clock),
    )
    with pytest.raises(exc_type) as info:
        await resolve(p.call(abody if is_async else body))
    assert (info.value, calls) == (exc, 1)


async def test_user_exception_same_object_through_pipeline(clock: FakeClock, is_async: bool) -> None:
    """An exception nobody handles propagates through every layer as the same object."""
    boom = LookupError("boom")

    def body() -> None:
        raise boom

    async def abody() -> None:
        body()

    p = pipeline(fallback(None, on=KeyError), retry(on=TypeError, clock=clock))
    with pytest.raises(LookupError) as info:
        await resolve(p.call(abody if is_async else body))
    assert info.value is boom


async def test_cancelled_pipeline_call_not_retried(clock: FakeClock) -> None:
    """A call cancelled from outside is not retried or replaced by fallback."""
    calls = 0

    @fallback("fallback", on=BaseException)
    @retry(attempts=5, on=BaseException, backoff=0, clock=clock)
    async def op() -> str:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()
        return "never"

    task = asyncio.ensure_future(op())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


async def test_recommended_order_runs(clock: FakeClock) -> None:
    """The documented order fallback > timeout > retry > timeout works end to end."""
    calls = 0

    @fallback("cached")
    @timeout(10, clock=clock)
    @retry(attempts=3, backoff=1, clock=clock)
    @timeout(1, clock=clock)
    async def op() -> str:
        nonlocal calls
        calls += 1
        await clock.sleep(5)
        return "fresh"

    assert await op() == "cached"
    assert (calls, clock.monotonic()) == (3, 5.0)


def test_call_memory_stays_bounded_over_many_operations() -> None:
    """`.call()` of 20,000 functions with distinct qualified names keeps memory bounded (was 34 MB)."""
    p = pipeline(retry(attempts=1))

    def op() -> int:
        return 1

    p.call(op)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            op.__qualname__ = f"op{i}"
            assert p.call(op) == 1
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000


def test_call_reuses_its_runner_for_a_few_functions() -> None:
    """`.call()` builds one runner per operation and reuses it while few operations share the pipeline."""
    p = pipeline(retry(attempts=1))
    first = {name: p.runner(False, name) for name in ("a", "b", "c")}
    assert all(p.runner(False, name) is run for name, run in first.items())
