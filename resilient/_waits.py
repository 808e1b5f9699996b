"""Queue time: what a policy that made a call wait tells the policies around it.

A call can be held back inside a pipeline before it reaches the dependency:
in a ``bulkhead``'s queue, or by any policy that waits before it runs the
call (a rate limiter waiting for a permit). Two things go wrong if the
policies around it do not know:

- a ``circuit_breaker`` admitted the call while CLOSED; if it opened while
  the call waited, the call must not go on to the dead dependency;
- the breaker times the call for its slow-call rate, and local queue time is
  not dependency time: a healthy dependency behind a busy queue would look slow.

So a policy that made a call wait reports the wait, **only when the call
actually waited**, from its layer, after the wait and before it runs the
inner layers. An uncontended call reports nothing and pays nothing.

Writing a queueing policy
-------------------------
When the policy builds a layer (in ``wrap_sync`` / ``wrap_async``), it makes
a :class:`WaitReporter` for it. In the layer (the ``(ctx, fn, args, kwargs)``
function), once a call has what it waited for::

    if reporter.listening:  # False once nobody around listens
        gate = reporter.gate
        if gate is None or not gate.waiters_admitted:  # (a CLOSED breaker: nothing to do)
            seconds = clock.monotonic() - joined if reporter.needs_time else 0.0
            pending = reporter.report(seconds, ctx.operation)
            if pending is not None:  # only around an async listener
                await pending

(a sync layer ignores *pending*, which its listeners never return; the
checks before ``report`` only save time). ``seconds`` is how long the call
waited, by your clock. Call ``report`` directly from the layer function, or
pass ``depth`` (2 from a helper the layer calls). The report may raise (a
breaker rejecting the call): treat that like an interrupted wait, that is,
give back what the call holds (your slot or permit) and let the exception
propagate. Your outer layers then see a rejection raised by an inner
policy, which breakers count as nothing. A policy used as a context manager
(``async with bulkhead:``) is not a pipeline layer and reports nothing.

Writing a listener
------------------
:func:`on_wait` registers, for a layer function's code (every layer built
from that ``def`` shares it), a *binder*: ``bind(frame) -> (listener,
uses_seconds, gate)``. A report reaches the listening layers of the same
pipeline call around the reporting one, innermost first: they are found the
way :func:`resilient.current_call` finds the running call, by walking the
stack outward (past policies' helper frames) as long as the layers belong
to the same pipeline call: it stops at a layer of another pipeline (a
pipeline called from inside the protected function is another call, and
its waits are that function's business). A policy that runs the call in
another task (``hedge``) ends the stack there: put breakers inside it.

A chain of layers is built once, so the layers around a layer function are
the same objects for every call: the first report walks the stack, calls
each binder once with its layer's frame (read per-layer data, such as the
policy object, from ``frame.f_locals``, read-only) and keeps the listener it
returns with the frame's distance. ``uses_seconds`` False tells the
reporting layer it need not read its clock (:attr:`WaitReporter.needs_time`,
if no listener uses them); a *gate* is an object whose ``waiters_admitted``
attribute is true while the listener has nothing to do (a CLOSED breaker's
backend): with a single listener around, the reporting layer skips the
report while it is (:attr:`WaitReporter.gate`). Every report calls
``listener(seconds, operation, None)`` first: the listener either handles
the report without the call's own data (returns None), or returns
:data:`NEED_FRAME`, and is called again with the layer's frame of this call,
fetched only then (``sys._getframe(n)``, which builds no frame object for the
frames in between; a layer that sometimes runs without a frame of its own
shifts the distances: that call walks the stack instead).

With the frame, a listener may raise to stop the call, or move the start of
what it times by *seconds* (keep the start in a mutable object the frame
holds); for an async layer it may return an awaitable. A layer with no
listener around pays nothing after its first report.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from types import CodeType, FrameType
from typing import Any, TypeAlias

from ._context import _layer_codes

__all__ = ["NEED_FRAME", "Binder", "Listener", "WaitReporter", "on_wait"]

NEED_FRAME: Any = object()
"""What a listener returns when it needs the call's layer frame to handle a report."""

Listener: TypeAlias = Callable[[float, "str | None", "FrameType | None"], Any]
"""``(seconds waited, operation, frame or None) -> None | NEED_FRAME | awaitable``."""

Binder: TypeAlias = Callable[[FrameType], "tuple[Listener, bool, object]"]
"""``(a layer's frame) -> (listener, uses the seconds, gate or None)``, once per layer (see above)."""

_binders: dict[CodeType, Binder] = {}


def on_wait(layer: Callable[..., object], bind: Binder) -> None:
    """Let the layers made by *layer*'s ``def`` hear of the waits of calls inside them.

    Args:
        layer: A layer function (a ``(ctx, fn, args, kwargs)`` function or
            coroutine function); its code object is the key.
        bind: Called once per such layer around a reporting one, with that
            layer's frame; returns its listener (see the module docstring).
    """
    _binders[layer.__code__] = bind


def _pipeline_of(frame: FrameType) -> object:
    """The pipeline of the call a layer frame runs (its first argument is the call's context)."""
    ctx = frame.f_locals.get(frame.f_code.co_varnames[0])
    return getattr(ctx, "pipeline", None)


def _walk(frame: FrameType) -> list[tuple[int, FrameType, Binder]]:
    """The listening layers around the layer running in *frame*, innermost first, with their distance.

    The walk goes outward past frames that are not layers (a policy's helper
    coroutine, say) and stops at a layer of another pipeline's call (a
    pipeline that the protected function of another one calls).

    Returns:
        ``(distance, frame, binder)`` for each listening layer.
    """
    found: list[tuple[int, FrameType, Binder]] = []
    codes = _layer_codes
    if frame.f_code not in codes:
        return found  # not running as a pipeline layer (a context manager, say)
    pipeline = _pipeline_of(frame)
    binders = _binders
    distance = 1
    outer = frame.f_back
    while outer is not None:
        code = outer.f_code
        if code in codes:
            if _pipeline_of(outer) is not pipeline:
                break
            bind = binders.get(code)
            if bind is not None:
                found.append((distance, outer, bind))
        outer = outer.f_back
        distance += 1
    return found


class WaitReporter:
    """Tells the listening layers around one layer function that a call waited (see the module docstring)."""

    __slots__ = ("_around", "gate", "listening", "needs_time")

    def __init__(self) -> None:
        # (distance from the layer's frame, its code, its listener), innermost
        # first; None until the first report.
        self._around: tuple[tuple[int, CodeType, Listener], ...] | None = None
        #: False once a report found no listening layer around: the layer may
        #: then skip measuring the wait and calling :meth:`report`.
        self.listening = True
        #: False once the listeners around are known not to use the seconds:
        #: the layer may then pass 0.0 instead of reading its clock.
        self.needs_time = True
        #: With a single listener around that has a gate, the gate: the layer
        #: may skip :meth:`report` while ``gate.waiters_admitted`` is true.
        self.gate: Any = None

    def report(self, seconds: float, operation: str | None, depth: int = 1) -> Awaitable[None] | None:
        """Report a wait of *seconds* to the listening layers around the caller's layer.

        Args:
            seconds: How long the call waited (>= 0; 0.0 will do while
                :attr:`needs_time` is False).
            operation: The call's operation, for the events a listener emits.
            depth: How far up the stack the layer's frame is (1: the caller).

        Returns:
            None, or (from an async layer with an async listener around) an
            awaitable finishing the report.
        """
        around = self._around
        if around is None:
            bound = [(d, f.f_code, *bind(f)) for d, f, bind in _walk(sys._getframe(depth))]
            self.needs_time = any(timed for _, _, _, timed, _ in bound)
            self.gate = bound[0][4] if len(bound) == 1 else None
            around = self._around = tuple((d, code, listener) for d, code, listener, _, _ in bound)
            self.listening = bool(around)
        for i, (distance, code, listener) in enumerate(around):
            result = listener(seconds, operation, None)
            if result is NEED_FRAME:
                frame = sys._getframe(depth + distance)
                if frame.f_code is not code:  # a frameless layer shifted the frames: walk, this once
                    frame = _walk(sys._getframe(depth))[i][1]
                result = listener(seconds, operation, frame)
            if result is not None:
                # An async listener: finish it, then the rest (their frames, fetched now).
                rest: list[tuple[Listener, FrameType]] = []
                for j in range(i + 1, len(around)):
                    d, c, other = around[j]
                    f = sys._getframe(depth + d)
                    if f.f_code is not c:
                        f = _walk(sys._getframe(depth))[j][1]
                    rest.append((other, f))
                return _finish(result, rest, seconds, operation)
        return None


async def _finish(
    pending: Awaitable[None],
    rest: Sequence[tuple[Listener, FrameType]],
    seconds: float,
    operation: str | None,
) -> None:
    await pending
    for listener, frame in rest:
        result = listener(seconds, operation, None)
        if result is NEED_FRAME:
            result = listener(seconds, operation, frame)
        if result is not None:
            await result
