"""The asyncio half of :class:`~resilient.backends.redis.RedisBackend`.

The same steps as the blocking half, through ``redis.asyncio`` and bounded
by the link's budget. A cancellation is the caller's: it propagates, and
a probe lease the cancelled step may hold is released in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from resilient._state import CircuitState
from resilient.backends._base import BreakerStats, Outcome, Permit, Rejection, Transition
from resilient.backends._redis_admit import Decisions, Local
from resilient.backends._redis_protocol import STATES, stats_of, transition_of

__all__ = ["NO_ARGS", "AsyncSteps"]

NO_ARGS: tuple[Any, ...] = ()


class AsyncSteps(Decisions):
    """The ``*_async`` steps of RedisBackend (a mixin; the state lives there)."""

    _keys: tuple[bytes, ...]
    _argv: tuple[bytes, ...]
    _seq: Iterator[int]
    _shields: set[asyncio.Future[Any]]

    async def _step_async(
        self, step: str, extra: tuple[Any, ...], *, bounded: bool = False
    ) -> list[Any] | None:
        view = self._view
        reply = await self._link.run_async(
            (*self._keys, step, *self._argv, *view.hint, *extra), bounded=bounded
        )
        if reply is not None:
            view.observe(reply)
        return reply

    def _release_soon(self, probe_id: str) -> asyncio.Future[Any]:
        # Shielded and held here: a second cancellation of the caller cannot
        # stop it, and the loop does not drop it before it finishes.
        task = asyncio.ensure_future(self._step_async("release", (probe_id,)))
        self._shields.add(task)
        task.add_done_callback(self._shields.discard)
        return task

    async def acquire_async(self) -> Permit | Rejection:
        """Async ``acquire``: one round trip carrying the deferred successes.

        Returns:
            As ``acquire``.
        """
        gen, count = self._successes.take()
        seq = next(self._seq)
        try:
            reply = await self._step_async("acquire", (gen, count, seq), bounded=self._view.last is not None)
        except BaseException:
            # Cancelled mid-step: the server may have granted a probe lease
            # whose reply is lost. Releasing an id never granted is a no-op.
            self._release_soon(f"{self.reporter}#{seq}")
            raise
        if reply is None:
            return self._without_turn(gen, count)
        return self._admission(reply, seq)

    async def record_async(self, permit: Permit, outcome: Outcome) -> Transition | None:
        """Async ``record``.

        Args:
            permit: As ``record``.
            outcome: As ``record``.

        Returns:
            As ``record``.
        """
        token = permit.token
        if token.__class__ is Local:
            return self._local.record(token.permit, outcome)
        if outcome is Outcome.SUCCESS and not permit.probe:
            self._successes.add(permit.generation)
            return None
        try:
            reply = await self._step_async("record", self._record_args(permit, outcome))
        except BaseException:
            if permit.probe:
                # Cancelled before the outcome reached Redis (or with its reply
                # lost): the outcome is dropped, but the probe's slot is freed
                # now instead of when its lease ends. A release after a record
                # that did land is a no-op.
                self._release_soon(str(token))
            raise
        return None if reply is None else transition_of(reply)

    async def release_async(self, permit: Permit) -> None:
        """Async ``release``; the lease is freed even if the caller is cancelled again.

        Args:
            permit: As ``release``.
        """
        token = permit.token
        if token.__class__ is Local:
            self._local.release(token.permit)
            return
        if not permit.probe:
            return
        # Usually called while a cancellation unwinds: a second one must not
        # leave the probe slot taken until its lease ends.
        await asyncio.shield(self._release_soon(str(token)))

    async def readmit_async(self, permit: Permit) -> Rejection | None:
        """Async ``readmit``: one round trip through ``redis.asyncio``, nothing blocking.

        Args:
            permit: As ``readmit``.

        Returns:
            As ``readmit``.
        """
        token = permit.token
        if token.__class__ is Local:
            return self._local.readmit(token.permit)
        return self._readmission(
            permit, await self._step_async("readmit", (permit.generation,), bounded=True)
        )

    async def isolate_async(self) -> Transition | None:
        """Async ``isolate``.

        Returns:
            As ``isolate``.
        """
        reply = await self._step_async("isolate", NO_ARGS)
        return self._local.isolate() if reply is None else transition_of(reply)

    async def reset_async(self) -> Transition | None:
        """Async ``reset``.

        Returns:
            As ``reset``.
        """
        reply = await self._step_async("reset", NO_ARGS)
        return self._local.reset() if reply is None else transition_of(reply)

    async def state_async(self) -> tuple[CircuitState, Transition | None]:
        """Async ``state``.

        Returns:
            As ``state``.
        """
        reply = await self._step_async("state", NO_ARGS)
        return self._local.state() if reply is None else (STATES[reply[0]], transition_of(reply))

    async def stats_async(self) -> BreakerStats:
        """Async ``stats``.

        Returns:
            As ``stats``.
        """
        reply = await self._step_async("stats", NO_ARGS)
        return self._local.stats() if reply is None else stats_of(reply)

    async def flush_async(self) -> None:
        """Async ``flush``."""
        gen, count = self._successes.take()
        if count:
            await self._step_async("flush", (gen, count))
