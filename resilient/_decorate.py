"""Decorating: the one wrapper a decorated function gets, and folding stacks into it."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, cast

import wrapt

from ._introspect import kind_of, module_of, qualname, unwrap_descriptor
from ._pipeline import Pipeline, Policy

__all__ = ["decorate", "pipeline_of"]


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


def _make_wrapper(wrapped: Any, pipeline: Pipeline, is_async: bool) -> _Wrapper:
    """Build the one wrapper of *wrapped*: an instance of a subclass of its own.

    Reading an attribute of a wrapt proxy costs about 90 ns, so the call path
    reads none: ``__call__`` closes over the runner's parts. A plain function
    (a method, in a class body) binds like a function, with ``MethodType``,
    instead of through wrapt's costlier bound proxy; classmethods and
    staticmethods keep wrapt's binding.

    Returns:
        The wrapper.
    """
    target = unwrap_descriptor(wrapped)
    parts = pipeline.parts(is_async, qualname(target), module_of(target))
    namespace: dict[str, Any] = {"__slots__": (), "__call__": parts.caller(wrapped)}
    if isinstance(wrapped, types.FunctionType):
        method_type = types.MethodType

        def __get__(self: Any, instance: Any, owner: Any = None) -> Any:
            if instance is None:
                return self
            return method_type(self, instance)

        namespace["__get__"] = __get__
    cls = type("_Wrapper", (_Wrapper,), namespace)
    return cls(wrapped, pipeline, is_async, parts.run)  # type: ignore[no-any-return]


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
        attributes=template.attributes if template.attributes is not None else inner.attributes,
    )


def decorate(policy: Policy, fn: Any) -> Any:
    """Wrap *fn* with *policy*, folding into an existing ``resilient`` wrapper."""
    if isinstance(fn, (classmethod, staticmethod)) and isinstance(fn.__func__, _Wrapper):
        # @policy above @classmethod above another resilient decorator: fold inside.
        return type(fn)(decorate(policy, fn.__func__))
    if isinstance(fn, _Wrapper):
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
