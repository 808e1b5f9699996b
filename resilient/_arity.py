"""Whether a user's callable can be called the way a policy will call it, checked at construction.

A predicate, template or clock function of the wrong shape would otherwise
fail only when first called, deep inside a call (or, where a hook's errors
are contained, be silently ignored). One that is ``async def`` is worse: its
coroutine is truthy, so a predicate or a switch asked synchronously always
says yes, and the coroutine is never awaited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._introspect import is_async_callable

__all__ = ["accepts", "sync_callable"]


def accepts(fn: Callable[..., Any], nargs: int) -> bool:
    """Return True if ``fn`` can be called with *nargs* positional arguments.

    A callable without a readable signature (some builtins) is trusted.

    Args:
        fn: The callable.
        nargs: How many positional arguments it will be given.

    Returns:
        False only when its signature cannot bind that call.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*([None] * nargs))
    except TypeError:
        return False
    return True


def sync_callable(fn: object, nargs: int) -> bool:
    """Return True if *fn* is a plain (not ``async``) callable taking *nargs* positional arguments.

    Args:
        fn: What the user passed.
        nargs: How many positional arguments it will be given.

    Returns:
        Whether it can be called, synchronously, that way.
    """
    return callable(fn) and not is_async_callable(fn) and accepts(fn, nargs)
