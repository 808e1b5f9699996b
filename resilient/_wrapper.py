"""The one wrapper a decorated function gets (wrapt's proxies; loaded by the first decoration).

Every wrapper is an instance of one of a few shared classes, holding its
pipeline and async-ness in slots: decorating builds nothing per function
but the wrapper. Its first call builds what calls run (the pipeline's
folded layers, the operation's runner) and switches the wrapper, in place,
to the matching *ready* class, whose ``__call__`` is the slot the runner
was stored in. A ready wrapper's call therefore reads no wrapt proxy
attribute (about 90 ns each): Python finds ``__call__`` on the type, gets
the slot's value with one C-level read and calls it with the caller's
arguments.

This module imports wrapt, whose 2.x releases import asyncio and
importlib.metadata: :mod:`resilient._decorate` loads it on the first
decoration, so ``import resilient`` does not pay for them.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, cast

import wrapt

from ._introspect import full_name, module_of, qualname, unwrap_descriptor
from ._pipeline import Pipeline
from ._runner import Parts

__all__ = ["BoundWrapper", "FunctionWrapper", "Wrapper", "rebind", "wrap"]


# wrapt's stubs type the wrapper callback as (wrapped, instance, args, kwargs);
# ours override __call__, so the bases are seen as Any.
_FunctionWrapperBase: Any = wrapt.FunctionWrapper
_BoundFunctionWrapperBase: Any = wrapt.BoundFunctionWrapper

# The proxy's own slot for the wrapped object (for a bound wrapper: the bound
# method); `__wrapped__` is overridden below to show the original function.
_object_proxy: Any = wrapt.ObjectProxy
_bound_target: Callable[[Any], Any] = _object_proxy.__wrapped__.__get__
# A bound wrapper's parent (the decorated function's wrapper), read in C
# rather than through the proxy's attribute lookup.
_bound_parent: Callable[[Any], Any] = _FunctionWrapperBase._self_parent.__get__
# `obj.__class__ = cls` on a proxy would set the wrapped object's class.
_set_class: Callable[[Any, type], None] = vars(object)["__class__"].__set__


def _never_called(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:  # pragma: no cover
    # wrapt's wrapper callback: every wrapper class here overrides __call__.
    raise AssertionError("resilient wrappers run their own __call__")


class BoundWrapper(_BoundFunctionWrapperBase):  # type: ignore[misc]
    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        target = _bound_target(self)
        run = _run_of(_bound_parent(self))
        if type(target) is types.MethodType:
            # A classmethod bound to its class: the pipeline sees the function
            # and the class as its first argument, as it sees `self` for a
            # method, so handlers get the same arguments whatever the
            # decorator order.
            return run(target.__func__, (target.__self__, *args), kwargs)
        return run(target, args, kwargs)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self

    @property
    def __wrapped__(self) -> Any:
        # Like a bound method of a functools.wraps wrapper: the original
        # (unbound) function, so `inspect.unwrap(obj.method)` finds it.
        return unwrap_descriptor(self._self_parent.__wrapped__)


class Wrapper(_FunctionWrapperBase):  # type: ignore[misc]
    """The single wrapper around a decorated function, before its first call."""

    # _self_call: the operation's runner called as the wrapper, (*args, **kwargs);
    # _self_run: the same as run(fn, args, kwargs), for the bound forms.
    # Both stay None until the first call.
    __slots__ = ("_self_call", "_self_is_async", "_self_pipeline", "_self_run")
    __bound_function_wrapper__ = BoundWrapper
    __resilient_wrapper__ = True

    def __init__(self, wrapped: Any, pipeline: Pipeline, is_async: bool) -> None:
        super().__init__(wrapped, _never_called)
        self._self_pipeline = pipeline
        self._self_is_async = is_async
        self._self_call = None
        self._self_run = None

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return _ready(self)(*args, **kwargs)

    def __copy__(self) -> Any:
        # Like a function: copies are the object itself (wrapt's proxy refuses).
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Like a plain function: pickled (and copied) by reference to its
        # qualified name, so module-level decorated functions cross processes.
        return self.__qualname__


class FunctionWrapper(Wrapper):
    """The wrapper of a plain function: binds like one, with ``MethodType``.

    Cheaper than wrapt's bound-function proxy; classmethods and
    staticmethods keep wrapt's binding (``Wrapper``).
    """

    __slots__ = ()

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)


# The slots' descriptors: C-level reads and writes, past the proxy's attribute hooks.
_CALL_SLOT: Any = vars(Wrapper)["_self_call"]
_RUN_SLOT: Any = vars(Wrapper)["_self_run"]
_get_call: Callable[[Any], Any] = _CALL_SLOT.__get__
_set_call: Callable[[Any, Any], None] = _CALL_SLOT.__set__
_get_run: Callable[[Any], Any] = _RUN_SLOT.__get__
_set_run: Callable[[Any, Any], None] = _RUN_SLOT.__set__


class ReadyWrapper(Wrapper):
    __slots__ = ()
    # Python looks `__call__` up on the type, finds the slot's descriptor and
    # calls the slot's value: the runner, with no frame of ours in between.
    __call__ = _CALL_SLOT


class ReadyFunctionWrapper(FunctionWrapper):
    __slots__ = ()
    __call__ = _CALL_SLOT


_READY: dict[type, type] = {Wrapper: ReadyWrapper, FunctionWrapper: ReadyFunctionWrapper}


def _build(wrapper: Wrapper) -> None:
    """Build *wrapper*'s runners and switch it to its ready class (its first call).

    Threads racing here each build equivalent runners; whichever is stored
    last serves the calls after.
    """
    rebind(wrapper, wrapper._self_pipeline)()


def rebind(wrapper: Wrapper, pipeline: Pipeline) -> Callable[[], None]:
    """Build *wrapper*'s runners for *pipeline*; return the function that installs them.

    Installing sets the pipeline and the runners, each one atomic store,
    and switches the wrapper to its ready class. A call already running
    keeps the runner it started with. Building may raise (a layer refusing
    the function); installing does not.

    Returns:
        The installer.
    """
    wrapped = wrapper.__wrapped__
    # A plain function's wrapper binds with MethodType: only the (*args, **kwargs) form is called.
    bound_forms = not isinstance(wrapper, FunctionWrapper)
    target = unwrap_descriptor(wrapped)
    operation = qualname(target)
    parts = Parts(
        pipeline,
        wrapper._self_is_async,
        operation,
        full_name(operation, module_of(target)),
        run=bound_forms,
    )
    call = parts.caller(wrapped)

    def install() -> None:
        wrapper._self_pipeline = pipeline
        if bound_forms:
            _set_run(wrapper, parts.run)
        _set_call(wrapper, call)
        ready = _READY.get(type(wrapper))
        if ready is not None:
            _set_class(wrapper, ready)

    return install


def _ready(wrapper: Wrapper) -> Callable[..., Any]:
    """The ``(*args, **kwargs)`` runner of *wrapper*, built on first use."""
    call = _get_call(wrapper)
    if call is None:
        _build(wrapper)
        call = _get_call(wrapper)
    return cast(Callable[..., Any], call)


def _run_of(wrapper: Wrapper) -> Callable[..., Any]:
    """The ``run(fn, args, kwargs)`` runner of *wrapper*, built on first use."""
    run = _get_run(wrapper)
    if run is None:
        _build(wrapper)
        run = _get_run(wrapper)
    return cast(Callable[..., Any], run)


def wrap(wrapped: Any, pipeline: Pipeline, is_async: bool) -> Wrapper:
    """The one wrapper of *wrapped*: nothing is built until its first call."""
    if isinstance(wrapped, types.FunctionType):
        return FunctionWrapper(wrapped, pipeline, is_async)
    return Wrapper(wrapped, pipeline, is_async)
