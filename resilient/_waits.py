"""Queue time: what a policy that made a call wait tells the policies around it.

A call can be held back inside a pipeline before it reaches the dependency:
in a ``bulkhead``'s queue today, in a rate limiter that waits for a permit
tomorrow. Two things go wrong if the policies around it do not know:

- a ``circuit_breaker`` admitted the call while CLOSED; if it opened while
  the call waited, the call must not go on to the dead dependency;
- the breaker times the call for its slow-call rate, and local queue time is
  not dependency time: a healthy dependency behind a busy queue would look slow.

So a policy that made a call wait reports the wait, **only when the call
actually waited**, from its layer, after the wait and before it runs the
inner layers. An uncontended call reports nothing and pays nothing.

Writing a queueing policy
-------------------------
In the layer (the ``(ctx, fn, args, kwargs)`` function your ``wrap_sync`` /
``wrap_async`` returns), once the call has what it waited for::

    report_wait(layer_frame, seconds, ctx.operation)              # sync layer
    await report_wait_async(layer_frame, seconds, ctx.operation)  # async layer

``layer_frame`` is the frame of your layer function (``sys._getframe()`` in
it, or ``sys._getframe(1)`` in a helper it calls directly); ``seconds`` is how
long the call waited, by your clock. The report may raise (a breaker rejecting
the call): treat that like an interrupted wait, that is, give back what the call
holds (your slot or permit) and let the exception propagate. Your outer layers
then see a rejection raised by an inner policy, which breakers count as
nothing. A policy used as a context manager (``async with bulkhead:``) is not
a pipeline layer and reports nothing.

Writing a listener
------------------
:func:`on_wait` registers a listener for a layer function's code; every layer
built from that ``def`` shares it. A report walks the stack outward from the
reporting layer, the way :func:`resilient.current_call` finds the running
call, through the layers of the same pipeline call (it stops at the first
frame that is not a pipeline layer: a pipeline called from inside the
protected function is another call, and its waits are that function's
business), and calls each registered listener, innermost first, with its
layer's frame: ``listener(frame, seconds, operation)``. The listener reads
what it needs from ``frame.f_locals`` (read-only: never write to it). It may
raise to stop the call, or move the start of what it times by *seconds* (keep
the start in a mutable object the frame holds). For an async layer the
listener may return an awaitable; ``report_wait_async`` awaits it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import CodeType, FrameType
from typing import Any, TypeAlias

from ._context import _layer_codes

__all__ = ["Listener", "on_wait", "report_wait", "report_wait_async"]

Listener: TypeAlias = Callable[[FrameType, float, "str | None"], "Awaitable[None] | None"]
"""``(layer frame, seconds waited, operation) -> None`` (or an awaitable, for async layers)."""

_listeners: dict[CodeType, Listener] = {}


def on_wait(layer: Callable[..., Any], listener: Listener) -> None:
    """Call *listener* when a call inside a layer made by *layer*'s ``def`` reports a wait.

    Args:
        layer: A layer function (a ``(ctx, fn, args, kwargs)`` function or
            coroutine function); its code object is the key, so every layer
            built from the same ``def`` shares the listener.
        listener: ``(frame, seconds, operation)``; see the module docstring.
    """
    _listeners[layer.__code__] = listener


def _enclosing(frame: FrameType) -> list[tuple[FrameType, Listener]]:
    """The listening layers around *frame* in the same pipeline call, innermost first."""
    found: list[tuple[FrameType, Listener]] = []
    if frame.f_code not in _layer_codes:
        return found  # not running as a pipeline layer (a context manager, say)
    codes = _layer_codes
    listeners = _listeners
    outer = frame.f_back
    while outer is not None and outer.f_code in codes:
        listener = listeners.get(outer.f_code)
        if listener is not None:
            found.append((outer, listener))
        outer = outer.f_back
    return found


def report_wait(frame: FrameType, seconds: float, operation: str | None) -> None:
    """Tell the layers around the sync layer running in *frame* that the call waited *seconds*.

    Args:
        frame: The reporting layer's frame.
        seconds: How long the call waited (>= 0).
        operation: The call's operation, for the events a listener emits.
    """
    for outer, listener in _enclosing(frame):
        listener(outer, seconds, operation)


async def report_wait_async(frame: FrameType, seconds: float, operation: str | None) -> None:
    """Like :func:`report_wait`, from an async layer: awaits listeners that return awaitables.

    Args:
        frame: The reporting layer's frame.
        seconds: How long the call waited (>= 0).
        operation: The call's operation, for the events a listener emits.
    """
    for outer, listener in _enclosing(frame):
        pending = listener(outer, seconds, operation)
        if pending is not None:
            await pending
