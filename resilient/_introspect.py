"""What a decorated (or called) target is: its name, and whether it is async."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

from ._numbers import describe

__all__ = ["full_name", "is_async_callable", "kind_of", "module_of", "qualname", "unwrap_descriptor"]


def qualname(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    func = getattr(fn, "func", None)  # functools.partial
    if func is not None:
        return qualname(func)
    return type(fn).__qualname__


def module_of(fn: object) -> str | None:
    """Return the module defining *fn* (a partial's function's, a callable object's class's), or None."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    module = getattr(fn, "__module__", None)
    if not isinstance(module, str):
        module = getattr(type(fn), "__module__", None)
    return module if isinstance(module, str) and module else None


def full_name(operation: str, module: str | None) -> str:
    """Return the module-qualified name ``module.operation`` (``"myapp.client.Client.fetch"``).

    Args:
        operation: The qualified name (``__qualname__``).
        module: The defining module, or None.

    Returns:
        ``module.operation``, or *operation* alone when no module is known.
    """
    return operation if module is None else f"{module}.{operation}"


def unwrap_descriptor(fn: object) -> object:
    if isinstance(fn, (classmethod, staticmethod)):
        return fn.__func__
    return fn


def is_async_callable(fn: object) -> bool:
    """True for a coroutine function, a partial of one, or an object with ``async def __call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)):
        return False
    return inspect.iscoroutinefunction(inspect.getattr_static(type(fn), "__call__", None))


_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def kind_of(fn: object) -> bool:
    """Return True for an async target, False for sync; reject the rest."""
    if type(fn) is types.FunctionType:
        # The common case, read off the code flags (decorating is on import's path).
        flags = fn.__code__.co_flags
        if flags & inspect.CO_COROUTINE:
            return True
        if not flags & _GENERATOR_FLAGS:
            # inspect also honours markcoroutinefunction (3.12+).
            return inspect.iscoroutinefunction(fn)
    target: Any = unwrap_descriptor(fn)
    if getattr(type(target), "__resilient_wrapper__", False):
        target = target.__wrapped__
    while isinstance(target, functools.partial):
        target = target.func
    if not callable(target):
        raise TypeError(f"resilient policies decorate callables, got {describe(fn)}")
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise TypeError(
            f"{qualname(target)} is a generator function; resilient policies cannot guard a "
            "generator's iteration. Decorate a function that consumes it (or returns a list) instead."
        )
    if inspect.iscoroutinefunction(target):
        return True
    if not isinstance(target, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        # A callable object: its class's __call__ decides (`async def __call__`).
        call = getattr(type(target), "__call__", None)  # noqa: B004
        if call is not None:
            if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
                raise TypeError(f"{qualname(target)}.__call__ is a generator function")
            return inspect.iscoroutinefunction(call)
    return False
