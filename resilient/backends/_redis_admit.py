"""How RedisBackend turns the script's replies (or their absence) into decisions.

A mixin of :class:`~resilient.backends.redis.RedisBackend`, shared by its
sync and async steps: an admission's reply becomes a permit or a rejection;
no reply becomes the local breaker's decision while Redis is down, or the
decision of the shared state last seen when Redis is up but gave the call
no turn in time. The re-check of a call that waited in a queue
(``readmit``) is decided the same way.
"""

from __future__ import annotations

from typing import Any

from resilient.backends._base import Outcome, Permit, Rejection
from resilient.backends._redis_link import RedisLink
from resilient.backends._redis_protocol import (
    HEADER,
    STATES,
    SuccessTally,
    rejection_of,
    transition_of,
)
from resilient.backends._redis_view import View
from resilient.backends.memory import MemoryBackend

__all__ = ["Decisions", "Local"]

# A permit of no local generation: the local breaker re-checks it by its state alone.
_SHARED = Permit(-1)


class Local:
    """Marks a permit issued by the local fallback breaker."""

    __slots__ = ("permit",)

    def __init__(self, permit: Permit) -> None:
        self.permit = permit


class Decisions:
    """Replies to permits and rejections (a mixin; the state lives in RedisBackend)."""

    reporter: str
    _local: MemoryBackend
    _successes: SuccessTally
    _view: View
    _closed: Permit
    _link: RedisLink

    def _went_down(self) -> None:
        # A fresh local breaker per outage (what it knew before is stale), but
        # an isolation holds: it lasts until reset(), outage or not.
        self._local.reset()
        if self._view.isolated:
            self._local.isolate()

    def _admission(self, reply: list[Any], seq: int) -> Permit | Rejection:
        # reply: the header, then admitted, permit generation, probe, retry_after_us
        admitted, generation, probe = reply[HEADER : HEADER + 3]
        if not admitted:
            return rejection_of(reply)
        transition = transition_of(reply)
        if probe:
            return Permit(generation, True, transition, f"{self.reporter}#{seq}")
        if transition is not None:
            return Permit(generation, False, transition)
        return self._closed_permit(generation)

    def _closed_permit(self, generation: int) -> Permit:
        permit = self._closed
        if permit.generation != generation:
            # One permit per generation, shared by every CLOSED call.
            permit = self._closed = Permit(generation)
        return permit

    def _without_turn(self, gen: int, count: int) -> Permit | Rejection:
        """Decide a call whose admission got no answer from Redis."""
        last = self._view.last
        if self._link.down_until is not None or last is None:
            return self._local_acquire()  # Redis is down (or never answered): local state
        # Redis is up but gave this call no turn in time (the pool is busy):
        # the step never left, so its successes wait for the next one, and
        # the call is decided as the shared state last seen would decide it.
        self._successes.restore(gen, count)
        state = last[0]
        if state == 0:
            return self._closed_permit(last[1])  # recorded in Redis like any CLOSED call
        # OPEN (until when is not known here), HALF_OPEN (probes need a lease), ISOLATED.
        return Rejection(STATES[state], 0.0 if state == 2 else None)

    def _readmission(self, permit: Permit, reply: list[Any] | None) -> Rejection | None:
        """Decide the re-check of a call admitted with *permit* that then waited (``readmit``)."""
        if reply is not None:
            # reply: the header, then go ahead, retry_after_us
            if reply[HEADER]:
                return None
            retry = reply[HEADER + 1]
            return Rejection(STATES[reply[0]], None if retry < 0 else retry / 1e6)
        last = self._view.last
        if self._link.down_until is not None or last is None:
            # Redis is down: the local breaker decides (fresh when the outage
            # began, so it rejects only once it has opened on its own).
            return self._local.readmit(_SHARED)
        # Redis is up but gave the step no turn in time: as last seen.
        state = last[0]
        if state == 0 or last[1] == permit.generation:
            return None
        return Rejection(STATES[state], 0.0 if state == 2 else None)

    def _local_acquire(self) -> Permit | Rejection:
        got = self._local.acquire()
        if isinstance(got, Rejection):
            return got
        return Permit(got.generation, got.probe, got.transition, Local(got))

    def _record_args(self, permit: Permit, outcome: Outcome) -> tuple[Any, ...]:
        gen, count = self._successes.take()
        return (permit.generation, int(outcome), permit.token or "", gen, count)
