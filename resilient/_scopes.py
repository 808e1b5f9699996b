"""Per-entry state for policies used as ``async with`` context managers.

One policy object may be entered by many tasks at once (and nested within
one task), so the state of each entry lives in a context variable stack, not
on the policy.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

__all__ = ["pop_scope", "push_scope"]


class _Frame:
    __slots__ = ("owner", "parent", "state")

    def __init__(self, owner: object, state: Any, parent: _Frame | None) -> None:
        self.owner = owner
        self.state = state
        self.parent = parent


_stack: ContextVar[_Frame | None] = ContextVar("resilient_scopes", default=None)


def push_scope(owner: object, state: Any) -> None:
    """Record *state* as *owner*'s innermost entry in this context."""
    _stack.set(_Frame(owner, state, _stack.get()))


def pop_scope(owner: object) -> Any:
    """Remove and return *owner*'s innermost entry in this context."""
    frame = _stack.get()
    if frame is None or frame.owner is not owner:
        raise RuntimeError(f"{owner!r} exited without a matching entry in this task")
    _stack.set(frame.parent)
    return frame.state
