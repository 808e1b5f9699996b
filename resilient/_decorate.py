"""Decorating: the one wrapper a decorated function gets, and folding stacks into it."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, cast

import wrapt

from ._introspect import kind_of, qualname, unwrap_descriptor
from ._pipeline import Pipeline, Policy

__all__ = ["decorate", "follow", "pipeline_of", "rebinder"]


# wrapt's stubs type the wrapper callback as (wrapped, instance, args, kwargs);
# ours overrides __call__ to pass (fn, args, kwargs) to the pipeline runner, so
# the bases are seen as Any.
_FunctionWrapperBase: Any = wrapt.FunctionWrapper
_BoundFunctionWrapperBase: Any = wrapt.BoundFunctionWrapper


# The proxy's own slot for the wrapped object (for a bound wrapper: the bound
# method); `__wrapped__` is overridden below to show the original function.
_object_proxy: Any = wrapt.ObjectProxy
_bound_target: Callable[[Any], Any] = _object_proxy.__wrapped__.__get__


class _BoundWrapper(_BoundFunctionWrapperBase):  # type: ignore[misc]
    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        target = _bound_target(self)
        if type(target) is types.MethodType:
            # A classmethod bound to its class: the pipeline sees the function
            # and the class as its first argument, as it sees `self` for a
            # method, so handlers get the same arguments whatever the
            # decorator order.
            return self._self_wrapper(target.__func__, (target.__self__, *args), kwargs)
        return self._self_wrapper(target, args, kwargs)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self

    @property
    def __wrapped__(self) -> Any:
        # Like a bound method of a functools.wraps wrapper: the original
        # (unbound) function, so `inspect.unwrap(obj.method)` finds it.
        return unwrap_descriptor(self._self_parent.__wrapped__)


class _Wrapper(_FunctionWrapperBase):  # type: ignore[misc]
    """The single wrapper around a decorated function."""

    __bound_function_wrapper__ = _BoundWrapper
    __resilient_wrapper__ = True

    def __init__(self, wrapped: Any, pipeline: Pipeline, is_async: bool, run: Callable[..., Any]) -> None:
        # `run` serves the bound form (classmethods, staticmethods); each
        # function's own subclass supplies __call__ (see _make_wrapper).
        super().__init__(wrapped, run)
        self._self_pipeline = pipeline
        self._self_is_async = is_async

    def __copy__(self) -> Any:
        # Like a function: copies are the object itself (wrapt's proxy refuses).
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Like a plain function: pickled (and copied) by reference to its
        # qualified name, so module-level decorated functions cross processes.
        return self.__qualname__


def _make_wrapper(wrapped: Any, pipeline: Pipeline, is_async: bool, movable: bool = False) -> _Wrapper:
    """Build the one wrapper of *wrapped*: an instance of a subclass of its own.

    Reading an attribute of a wrapt proxy costs about 90 ns, so the call path
    reads none: ``__call__`` closes over the runner's parts. A plain function
    (a method, in a class body) binds like a function, with ``MethodType``,
    instead of through wrapt's costlier bound proxy; classmethods and
    staticmethods keep wrapt's binding.

    A *movable* wrapper can be pointed at another pipeline later
    (:func:`rebinder`): its class's ``__call__`` is replaced, and its bound
    forms read the current runner from a cell.

    Returns:
        The wrapper.
    """
    parts = pipeline.parts(is_async, qualname(unwrap_descriptor(wrapped)))
    run = parts.run
    namespace: dict[str, Any] = {"__slots__": (), "__call__": parts.caller(wrapped)}
    if movable:
        current = namespace["_resilient_run"] = [run]

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            return current[0](fn, args, kwargs)

    if isinstance(wrapped, types.FunctionType):
        method_type = types.MethodType

        def __get__(self: Any, instance: Any, owner: Any = None) -> Any:
            if instance is None:
                return self
            return method_type(self, instance)

        namespace["__get__"] = __get__
    cls = type("_Wrapper", (_Wrapper,), namespace)
    return cls(wrapped, pipeline, is_async, run)  # type: ignore[no-any-return]


def _merge(outer: Policy, inner: Pipeline) -> Pipeline:
    """The pipeline of *outer* stacked on a function already guarded by *inner*."""
    policies = (*outer.policies, *inner.policies)
    template = outer if isinstance(outer, Pipeline) else inner
    return Pipeline(
        *policies,
        name=template.name if template.name is not None else (inner.name if template is outer else None),
        clock=(
            template.clock if template._explicit_clock else (inner.clock if inner._explicit_clock else None)
        ),
        bus=template.bus if template._explicit_bus else (inner.bus if inner._explicit_bus else None),
    )


def decorate(policy: Policy, fn: Any) -> Any:
    """Wrap *fn* with *policy*, folding into an existing ``resilient`` wrapper."""
    if isinstance(fn, (classmethod, staticmethod)) and isinstance(fn.__func__, _Wrapper):
        # @policy above @classmethod above another resilient decorator: fold inside.
        return type(fn)(decorate(policy, fn.__func__))
    if isinstance(fn, _Wrapper):
        stack = getattr(fn, "_self_follow", None)
        if stack is not None:
            # A wrapper that follows a registry key: the registry folds the
            # policy in, and keeps doing so when the key's pipeline changes.
            return stack(policy)
        inner: Pipeline = fn._self_pipeline
        merged = _merge(policy, inner)
        is_async: bool = fn._self_is_async
        if not is_async:
            merged.check_sync(fn.__wrapped__)
        return _make_wrapper(fn.__wrapped__, merged, is_async)
    is_async = kind_of(fn)
    pipe = policy if isinstance(policy, Pipeline) else Pipeline(policy)
    if not is_async:
        pipe.check_sync(unwrap_descriptor(fn))
    return _make_wrapper(fn, pipe, is_async)


def follow(target: Any, pipeline: Pipeline, stack: Callable[[Policy], Any]) -> Any:
    """Wrap *target* in a movable wrapper running *pipeline* (see :func:`rebinder`).

    Args:
        target: A function, method, classmethod or staticmethod (not a wrapper).
        pipeline: The pipeline its calls run through, for now.
        stack: Called with a policy that decorates the returned wrapper;
            what it returns is the decorated result.

    Returns:
        The wrapper.

    Raises:
        TypeError: *target* cannot be decorated, or *pipeline* cannot guard it.
    """
    is_async = kind_of(target)
    if not is_async:
        pipeline.check_sync(unwrap_descriptor(target))
    wrapper = _make_wrapper(target, pipeline, is_async, movable=True)
    wrapper._self_follow = stack
    return wrapper


def merge(outer: Policy, inner: Pipeline) -> Pipeline:
    """The pipeline of *outer* stacked on a function already guarded by *inner* (as decorating does)."""
    return _merge(outer, inner)


def rebinder(wrapper: Any, pipeline: Pipeline) -> Callable[[], None]:
    """Prepare pointing the movable *wrapper* at *pipeline*; return what does it.

    Everything that can fail (the pipeline cannot guard a sync function, a
    layer refuses it) fails here; the returned function only assigns.
    Calls already running finish on the pipeline they started on.

    Args:
        wrapper: A wrapper made by :func:`follow`.
        pipeline: The pipeline its later calls run through.

    Returns:
        The function that points the wrapper at the pipeline.

    Raises:
        TypeError: *pipeline* cannot guard the wrapped function.
    """
    is_async: bool = wrapper._self_is_async
    target = wrapper.__wrapped__
    if not is_async:
        pipeline.check_sync(unwrap_descriptor(target))
    parts = pipeline.parts(is_async, qualname(unwrap_descriptor(target)))
    caller = parts.caller(target)
    cls = type(wrapper)
    current: list[Any] = cls._resilient_run

    def commit() -> None:
        wrapper._self_pipeline = pipeline
        cls.__call__ = caller
        current[0] = parts.run

    return commit


def pipeline_of(fn: object) -> Pipeline:
    """Return the :class:`Pipeline` guarding a decorated function.

    Works on the decorated function, a method looked up on a class or an
    instance, and classmethod/staticmethod objects.

    Args:
        fn: A function decorated with ``resilient`` policies.

    Returns:
        Its pipeline; ``.policies`` lists the policies outermost first.

    Raises:
        TypeError: *fn* is not guarded by ``resilient``.
    """
    seen = 0
    obj = fn
    while seen < 8:
        seen += 1
        if isinstance(obj, (_Wrapper, _BoundWrapper)):
            found = obj._self_pipeline
            return cast(Pipeline, found)
        nxt = getattr(obj, "__func__", None)
        if nxt is None:
            break
        obj = nxt
    raise TypeError(f"{fn!r} is not decorated with a resilient policy")
