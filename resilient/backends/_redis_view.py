"""What one process last saw of a shared breaker, and what it concludes when that is lost.

Redis can lose a breaker's state: a restart without persistence, ``FLUSHALL``,
eviction under ``maxmemory``. The script then starts a new state, CLOSED,
with a new *epoch* (the server time it was created at). Every reply carries
the epoch and the earliest server time the state's keys can expire, so a
process that sees the epoch change can tell a loss from an expiry: the new
state was created before the old one could have expired.

A process that saw something other than CLOSED emits
:class:`~resilient.events.BackendStateLost` once per loss. A process that saw
ISOLATED (or OPEN, with ``restore_open=True``) sends that state's epoch and
earliest expiry (and the end of the open period) with every step (the
*hint*), and the script restores the state (see the script): an operator's
``isolate()`` holds until ``reset()``, whatever Redis forgets, and an open
period the loss cut short is restored over the fresh CLOSED state until it
ends, so the fleet does not send every call to a dependency that was
failing moments ago.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from resilient._events import BackendStateLost
from resilient._state import CircuitState
from resilient.backends._redis_link import RedisLink
from resilient.backends._redis_protocol import EPOCH, EXPIRY, ISOLATED, NO_HINT, OPEN, STATES, hint

__all__ = ["View"]

logger = logging.getLogger("resilient")

_CLOSED = 0
_RESTORED = (OPEN, ISOLATED)  # the states a hint can restore (OPEN only with restore_open)


class View:
    """This process's last view of the shared state (thread-safe).

    Args:
        link: The backend's link (its bus, name, clock and description).
    """

    __slots__ = ("_hinted", "_link", "_lock", "hint", "last")

    def __init__(self, link: RedisLink, *, restore_open: bool = False) -> None:
        self._link = link
        self._hinted = _RESTORED if restore_open else (ISOLATED,)
        self._lock = threading.Lock()
        self.last: list[Any] | None = None
        self.hint: tuple[bytes, ...] = NO_HINT
        """Sent with every step: the isolation or open period to restore if the state was lost."""

    @property
    def isolated(self) -> bool:
        """True if the last state seen was ISOLATED."""
        last = self.last
        return last is not None and last[0] == ISOLATED

    def observe(self, reply: list[Any]) -> None:
        """Take in a step's reply (any step's: every reply starts with the header).

        Args:
            reply: The decoded reply.
        """
        last = self.last
        if last is None or reply[EPOCH] != last[EPOCH]:
            self._new_epoch(reply)
        elif reply[1] >= last[1]:  # not a late reply from an earlier generation
            self.last = reply
            hinted = self._hinted
            if reply[0] in hinted or last[0] in hinted:
                self.hint = hint(reply, hinted)

    def _new_epoch(self, reply: list[Any]) -> None:
        epoch = reply[EPOCH]
        if not epoch:
            return  # a read of a state not stored (yet): nothing to compare
        with self._lock:
            last = self.last
            if last is not None and epoch <= last[EPOCH]:
                return  # a late reply from an older state, or another thread took this one in
            self.last = reply
            self.hint = hint(reply, self._hinted)
        if last is None or last[0] == _CLOSED or epoch >= last[EXPIRY]:
            return  # a first view, a CLOSED state's counters, or keys that expired
        self._lost(STATES[last[0]], STATES[reply[0]])

    def _lost(self, previous: CircuitState, state: CircuitState) -> None:
        link = self._link
        logger.warning(
            "circuit breaker %r: Redis lost its shared state (it was %s, it is %s now)",
            link.name,
            previous.name,
            state.name,
        )
        bus = link.bus
        if bus.wants(BackendStateLost):
            bus.emit(
                BackendStateLost(
                    policy="circuit_breaker",
                    name=link.name,
                    operation=None,
                    time=link.now(),
                    backend=link.describe(),
                    previous=previous,
                    state=state,
                )
            )
