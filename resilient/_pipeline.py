"""The policy-pipeline core every policy plugs into.

A policy contributes a *layer*: given the next layer inward, it returns a
function ``(ctx, fn, args, kwargs)`` that runs it (a coroutine function for
async code, a plain function for sync code). A :class:`Pipeline` folds its
policies' layers once, outermost first, around a terminal layer that calls
the function; decorating stacks into ONE wrapper holding one pipeline.
"""

from __future__ import annotations

import abc
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeAlias, TypeGuard, TypeVar, overload

from ._clock import Clock, DefaultClock
from ._context import AttributeValue, CallContext, register_layer
from ._events import (
    CallCancelled,
    CallFailed,
    CallStarted,
    CallSucceeded,
    Event,
    EventBus,
    default_bus,
)
from ._introspect import full_name, is_async_callable, kind_of, module_of, qualname
from ._numbers import describe
from ._runner import Parts
from ._validate import check_bus, check_clock, check_name

__all__ = [
    "AsyncLayer",
    "AsyncOnlyPolicy",
    "Attributes",
    "Pipeline",
    "Policy",
    "SyncLayer",
    "is_frameless",
    "mark_frameless",
    "pipeline",
]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")

Args: TypeAlias = tuple[Any, ...]
Kwargs: TypeAlias = dict[str, Any]
Attributes: TypeAlias = Callable[..., Mapping[str, AttributeValue] | None]
"""``(*args, **kwargs) -> {name: value}``: a call's attributes, from its arguments."""
AsyncLayer: TypeAlias = Callable[[CallContext, Callable[..., Any], Args, Kwargs], Awaitable[Any]]
"""``(ctx, fn, args, kwargs) -> awaitable result``: one async layer of a pipeline."""
SyncLayer: TypeAlias = Callable[[CallContext, Callable[..., Any], Args, Kwargs], Any]
"""``(ctx, fn, args, kwargs) -> result``: one sync layer of a pipeline."""


_CALL_CACHE_SIZE = 128
"""How many operations' runners a pipeline keeps for ``.call()``."""


def _terminal(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
    # For async code this returns the coroutine; the layer above awaits it.
    return fn(*args, **kwargs)


# Async layers that may hand back their inner layer's awaitable instead of
# awaiting it (a disabled chaos policy): while the function runs, no frame
# of theirs, nor of any layer inside them, is on the stack for
# current_call() to find.
_frameless: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def mark_frameless(layer: Callable[..., Any]) -> None:
    """Record that the async *layer* may return its inner layer's awaitable without a frame of its own.

    Mark it only if its inner layer is frameless too (:func:`is_frameless`);
    a chain whose outermost layer is frameless gets one frame on top.
    """
    _frameless.add(layer)


def is_frameless(layer: Callable[..., Any]) -> bool:
    """True if the async *layer* may run the function with no layer frame on the stack."""
    return layer is _terminal or layer in _frameless


def _framed(chain: AsyncLayer) -> AsyncLayer:
    async def framed(ctx: CallContext, fn: Callable[..., Any], args: Args, kwargs: Kwargs) -> Any:
        # The frame current_call() finds while the function runs.
        return await chain(ctx, fn, args, kwargs)

    register_layer(framed)
    return framed


class Policy(abc.ABC):
    """Base class of every policy: a decorator, an executor, and its own state.

    Subclasses set :attr:`kind` and implement :meth:`wrap_async` and
    :meth:`wrap_sync`; everything else (decorating, folding stacked
    decorators, ``call``) comes from here.
    """

    kind: ClassVar[str] = "policy"
    """The ``policy`` string of the events this policy emits."""
    supports_sync: ClassVar[bool] = True
    """False for policies that cannot guard a sync function (``timeout``)."""
    emits: ClassVar[tuple[type[Event], ...]] = (Event,)
    """The event classes this policy may emit on its bus. A pipeline gives
    each call its own :class:`CallContext` only while one of them (or a
    call event) has a subscriber; the default, ``(Event,)``, means any."""

    name: str | None
    clock: Clock
    bus: EventBus

    @abc.abstractmethod
    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Return the async layer this policy puts around *inner*.

        Write the layer as a plain ``async def`` whose first parameter is the
        call's context: :func:`resilient.current_call` finds a running call
        by looking for such frames. Pass the context on to *inner* unchanged
        (or a :meth:`CallContext.fork` of it; never mutate a ``shared`` one).

        Args:
            inner: The next layer inward.

        Returns:
            A coroutine function ``(ctx, fn, args, kwargs)``.
        """

    @abc.abstractmethod
    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Return the sync layer this policy puts around *inner*.

        Args:
            inner: The next layer inward.

        Returns:
            A function ``(ctx, fn, args, kwargs)``.

        Raises:
            TypeError: The policy cannot guard sync functions.
        """

    @property
    def policies(self) -> tuple[Policy, ...]:
        """This policy as a one-element tuple (a Pipeline lists its own)."""
        return (self,)

    def check_sync(self, target: object) -> None:
        """Raise TypeError if this policy cannot guard the sync function *target*.

        Called when a sync function is decorated or passed to ``call``,
        before any layer is built (layers are folded on the first call), so
        a policy that refuses a target says so at decoration time.

        Args:
            target: The sync function about to be guarded.

        Raises:
            TypeError: The policy does not support sync functions.
        """
        if not self.supports_sync:
            raise TypeError(
                f"{self.kind}() cannot guard the sync function {qualname(target)}: "
                f"a running thread cannot be interrupted. Make it `async def`, or run it "
                f"with `await asyncio.to_thread(...)` inside an async function."
            )

    @overload
    def __call__(self, fn: classmethod[C, P, T]) -> classmethod[C, P, T]: ...
    @overload
    def __call__(self, fn: staticmethod[P, T]) -> staticmethod[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Any) -> Any:
        """Decorate *fn* with this policy.

        Args:
            fn: A function, coroutine function, method, classmethod or
                staticmethod (generators are rejected).

        Returns:
            A wrapper with *fn*'s signature. Stacked ``resilient``
            decorators fold into this one wrapper.

        Raises:
            TypeError: *fn* is not callable, is a generator function, or is
                sync while a policy needs async.
        """
        return _decorate.decorate(self, fn)

    @overload
    def call(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...
    @overload
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` under this policy.

        For a coroutine function this returns an awaitable
        (``await policy.call(fetch, url)``); for a sync function, the result.

        Args:
            fn: The function to run.
            *args: Positional arguments for *fn*.
            **kwargs: Keyword arguments for *fn*.

        Returns:
            What *fn* returns (or an awaitable of it).

        Raises:
            TypeError: *fn* is not callable or is a generator function.
        """
        solo: Pipeline | None = self.__dict__.get("_solo")
        if solo is None:
            solo = self.__dict__["_solo"] = Pipeline(self)
        return solo.call(fn, *args, **kwargs)


class AsyncOnlyPolicy(Policy):
    """A policy that cannot guard a sync function: refused when decorated, and for type checkers.

    Subclasses still implement :meth:`wrap_sync` (to raise); they may
    override :meth:`check_sync` to explain the refusal in their own words.
    """

    supports_sync: ClassVar[bool] = False

    if TYPE_CHECKING:
        # Narrower static signatures than Policy's: only coroutine functions,
        # so `@timeout(1)` or `@hedge()` on a sync function is a type error as
        # well as a TypeError at decoration time. The runtime methods are Policy's.
        @overload  # type: ignore[override]
        def __call__(
            self, fn: classmethod[C, P, Coroutine[Any, Any, T]]
        ) -> classmethod[C, P, Coroutine[Any, Any, T]]: ...
        @overload
        def __call__(
            self, fn: staticmethod[P, Coroutine[Any, Any, T]]
        ) -> staticmethod[P, Coroutine[Any, Any, T]]: ...
        @overload
        def __call__(
            self, fn: Callable[P, Coroutine[Any, Any, T]]
        ) -> Callable[P, Coroutine[Any, Any, T]]: ...
        def __call__(self, fn: Any) -> Any: ...

        def call(  # type: ignore[override]
            self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, T]: ...


def is_pipeline(obj: object) -> TypeGuard[Pipeline]:
    """``isinstance(obj, Pipeline)`` without ABCMeta's Python-level instance check (a third of a µs)."""
    return Pipeline in type(obj).__mro__


def _flatten(policies: tuple[object, ...]) -> tuple[Policy, ...]:
    if len(policies) == 1:
        (p,) = policies
        if is_pipeline(p):
            return p.policies
        if Policy in type(p).__mro__:
            return policies  # type: ignore[return-value]
    out: list[Policy] = []
    for i, p in enumerate(policies):
        if is_pipeline(p):
            out.extend(p.policies)
        elif isinstance(p, Policy):
            out.append(p)
        else:
            raise TypeError(f"pipeline() argument {i + 1} must be a policy, got {describe(p)}")
    return tuple(out)


def _give_clock(policies: tuple[Policy, ...], clock: Clock) -> None:
    """Make *clock* the clock of every policy given none (all or nothing)."""
    takers = []
    for p in policies:
        own = getattr(p, "clock", None)
        if type(own) is DefaultClock:
            if own.target is None:
                takers.append(own)
            elif own.target is not clock:
                raise ValueError(
                    f"clock: {describe(p, typed=False)} already takes its clock from another pipeline "
                    f"({describe(own.target, typed=False)}); "
                    "give it clock= explicitly, or give both pipelines the same clock"
                )
    for own in takers:
        own.target = clock


class Pipeline(Policy):
    """Policies applied in order, the first outermost.

    A pipeline is itself a policy: it decorates, it has ``call``, and a
    pipeline inside a pipeline is flattened. It emits ``CallStarted`` and
    then ``CallSucceeded``, ``CallFailed`` or ``CallCancelled`` once per
    outer call, and sets the :class:`CallContext`.
    """

    kind: ClassVar[str] = "pipeline"

    def __init__(
        self,
        *policies: Policy,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        attributes: Attributes | None = None,
    ) -> None:
        self._policies = _flatten(policies)
        if attributes is not None and (not callable(attributes) or is_async_callable(attributes)):
            raise TypeError(
                "attributes must be a sync callable (*args, **kwargs) -> mapping or None; "
                f"got {describe(attributes)}"
            )
        self.attributes = attributes
        self.name = check_name(name)
        self._explicit_clock = clock is not None
        if clock is not None:
            self.clock = check_clock(clock)
            _give_clock(self._policies, self.clock)
        elif not self._policies:
            self.clock = check_clock(None)
        else:
            # Call durations use the first injected clock, so FakeClock tests
            # agree; else the first policy's default clock (no new object).
            self.clock = self._policies[0].clock
            for p in self._policies:
                own = p.clock
                if type(own) is not DefaultClock or own.target is not None:
                    self.clock = own
                    break
        self.bus = check_bus(bus)
        self._explicit_bus = bus is not None
        if bus is None:
            # CallSucceeded/CallFailed go where the policies' own events go:
            # `retry(bus=b)(fn)` must not leak call events to the default bus.
            for p in self._policies:
                if p.bus is not default_bus:
                    self.bus = p.bus
                    break
        self._async_chain: AsyncLayer | None = None
        self._sync_chain: SyncLayer | None = None
        # `.call()`'s runners by (is_async, operation, module), made on first use.
        self._parts: dict[tuple[bool, str, str | None], Parts] | None = None

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    @property
    def supports_sync(self) -> bool:  # type: ignore[override]
        """True if every policy can guard a sync function."""
        return all(p.supports_sync for p in self._policies)

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self._policies)
        return f"pipeline({inner})"

    def wrap_async(self, inner: AsyncLayer) -> AsyncLayer:
        """Fold every policy's async layer around *inner*, the first outermost.

        Args:
            inner: The innermost layer.

        Returns:
            The outermost layer.
        """
        layer = inner
        for p in reversed(self._policies):
            layer = p.wrap_async(layer)
            register_layer(layer)
        return layer

    def wrap_sync(self, inner: SyncLayer) -> SyncLayer:
        """Fold every policy's sync layer around *inner*, the first outermost.

        Args:
            inner: The innermost layer.

        Returns:
            The outermost layer.

        Raises:
            TypeError: A policy cannot guard sync functions.
        """
        layer = inner
        for p in reversed(self._policies):
            layer = p.wrap_sync(layer)
            register_layer(layer)
        return layer

    def _chain(self, is_async: bool) -> Any:
        if is_async:
            if self._async_chain is None:
                chain = self.wrap_async(_terminal)
                if self._policies and is_frameless(chain):
                    chain = _framed(chain)
                self._async_chain = chain
            return self._async_chain
        if self._sync_chain is None:
            self._sync_chain = self.wrap_sync(_terminal)
        return self._sync_chain

    def check_sync(self, target: object) -> None:
        """Raise TypeError if a policy here cannot guard the sync *target*.

        Args:
            target: The sync function about to be guarded.
        """
        for p in self._policies:
            p.check_sync(target)

    def _observed(self) -> bool:
        """True while some subscriber would receive an event of this pipeline's calls."""
        bus = self.bus
        if any(bus.wants(t) for t in (CallStarted, CallSucceeded, CallFailed, CallCancelled)):
            return True
        return any(p.bus.wants(t) for p in self._policies for t in p.emits)

    def runner(
        self, is_async: bool, operation: str, module: str | None = None
    ) -> Callable[[Callable[..., Any], Args, Kwargs], Any]:
        """Return the function ``(fn, args, kwargs)`` that runs a call of *operation*.

        Built once per operation. While nobody subscribes to the events its
        calls may emit, a call is the folded chain itself, run with one
        shared context: no allocation, no extra frame. Otherwise each call
        gets its own context and reports its lifecycle (``CallStarted``,
        then ``CallSucceeded``, ``CallFailed`` or ``CallCancelled``).

        Args:
            is_async: Whether calls are coroutine functions.
            operation: The qualified name reported for the calls.
            module: The module defining the function (for
                :attr:`CallContext.full_name`), or None.

        Returns:
            The runner.
        """
        run = self.parts(is_async, operation, module).run
        assert run is not None  # parts() builds the run form
        return run

    def parts(self, is_async: bool, operation: str, module: str | None = None) -> Parts:
        """The runner of *operation* and what it is built from.

        Cached for the last 128 operations (``_CALL_CACHE_SIZE``): ``.call()``
        of a few functions builds each runner once, and one pipeline called
        with ever new functions keeps its memory bounded.

        Returns:
            The parts; ``.run`` is the runner.
        """
        cache = self._parts
        if cache is None:
            cache = self._parts = {}
        key = (is_async, operation, module)
        found = cache.get(key)
        if found is None:
            if len(cache) >= _CALL_CACHE_SIZE:
                try:  # the oldest entry (dicts keep insertion order); another thread may be here too
                    del cache[next(iter(cache))]
                except (KeyError, RuntimeError, StopIteration):
                    pass
            found = cache[key] = Parts(self, is_async, operation, full_name(operation, module))
        return found

    @overload
    def call(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...
    @overload
    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` through the pipeline.

        Args:
            fn: The function to run.
            *args: Positional arguments for *fn*.
            **kwargs: Keyword arguments for *fn*.

        Returns:
            What *fn* returns, or an awaitable of it for a coroutine function.

        Raises:
            TypeError: *fn* is not callable, is a generator function, or is
                sync while a policy needs async.
        """
        is_async = kind_of(fn)
        if not is_async:
            self.check_sync(fn)
        return self.runner(is_async, qualname(fn), module_of(fn))(fn, args, kwargs)


def pipeline(
    *policies: Policy,
    name: str | None = None,
    clock: Clock | None = None,
    bus: EventBus | None = None,
    attributes: Attributes | None = None,
) -> Pipeline:
    """Compose *policies* into one :class:`Pipeline`, the first outermost (Polly v8 order).

    Recommended order: ``fallback`` > ``timeout`` (total) > ``retry`` >
    ``circuit_breaker`` > ``bulkhead`` > ``timeout`` (per attempt).

    Args:
        *policies: Policies or pipelines (nested pipelines are flattened).
        name: Reported as ``name`` on the call events.
        clock: The clock of every policy given none, and of call
            durations (default: the first policy's injected clock, else
            the system clock). A policy already given another clock by a
            different pipeline is an error.
        bus: Bus for the call events (``CallStarted``, ``CallSucceeded``,
            ``CallFailed``, ``CallCancelled``; default: the first policy's
            non-default bus, else ``default_bus``).
        attributes: A sync callable given the call's arguments,
            ``(*args, **kwargs) -> {name: value}``, whose result becomes the
            call's :attr:`CallContext.attributes` (for spans, log records and
            allow-listed metric labels). Called only for observed calls; if it
            raises or returns something unusable, that is logged and the call
            runs without (those) attributes.

    Returns:
        The pipeline.

    Raises:
        TypeError: An argument is not a policy, or *attributes* is not a
            sync callable.
        ValueError: *clock* is given and a policy already takes another
            pipeline's clock.
    """
    return Pipeline(*policies, name=name, clock=clock, bus=bus, attributes=attributes)


# The decorating module builds on this one: imported last, whichever loads first.
from . import _decorate  # noqa: E402
