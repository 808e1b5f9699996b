"""Whether a user's callable can be called the way a policy will call it, checked at construction.

A predicate, template or clock function of the wrong shape would otherwise
fail only when first called, deep inside a call (or, where a hook's errors
are contained, be silently ignored).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["accepts"]


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
