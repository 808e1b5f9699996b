"""Whether Redis answers: the outage bookkeeping of a :class:`RedisLink`.

After a failure the link reports "down" once (``BackendDegraded``), then
lets one caller per reconnect interval try Redis again (the *prober*), and
reports "up" when Redis answers (``BackendRecovered``).

Every change of status starts a new *era*, and only a step that began in the
current era may change it again: a reply arriving late from a step that began
before an outage does not end it, and a failure from a step that began before
a recovery does not start another one. One outage, one
``BackendDegraded``/``BackendRecovered`` pair, one reset of the local state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import ClassVar

from resilient._clock import Clock
from resilient._events import BackendDegraded, BackendRecovered, EventBus

__all__ = ["LinkStatus"]

logger = logging.getLogger("resilient")


class LinkStatus:
    """Up, down, and who may try Redis while it is down (a mixin; RedisLink sets the fields)."""

    policy: ClassVar[str]
    noun: ClassVar[str]
    name: str | None
    bus: EventBus
    clock: Clock | None
    reconnect_interval: float
    down_until: float | None
    _lock: threading.Lock
    _probing: bool
    _era: int
    _on_down: Callable[[], object]
    _on_up: Callable[[], object]

    def describe(self) -> str:  # pragma: no cover - RedisLink's
        """Return a short description of the backend, for events and logs."""
        raise NotImplementedError

    def now(self) -> float:
        """Return the breaker's clock reading (for events and the reconnect interval)."""
        clock = self.clock
        if clock is None:
            raise RuntimeError("RedisBackend used before bind()")
        return clock.monotonic()

    def _begin(self) -> int | None:
        """Return the era a step starts in, or None if it must not try Redis.

        While Redis is down, one caller per reconnect interval may try (it
        becomes the prober); the others are told no at once.
        """
        era = self._era  # read first: a step that sees "up" belongs to that era
        until = self.down_until
        if until is None:
            return era
        with self._lock:
            until = self.down_until
            if until is None:
                return self._era
            if self._probing or self.now() < until:
                return None
            self._probing = True
            return self._era

    def _failed(self, exc: BaseException, era: int) -> bool:
        """Note a failed step; True if it started an outage."""
        with self._lock:
            if era != self._era:
                return False  # began before the last change of status: not news
            first = self.down_until is None
            self.down_until = self.now() + self.reconnect_interval
            self._probing = False
            if first:
                self._era += 1
        if not first:
            return False
        self._on_down()
        logger.warning("%s %r: Redis unavailable, using local state (%r)", self.noun, self.name, exc)
        bus = self.bus
        if bus.wants(BackendDegraded):
            bus.emit(
                BackendDegraded(
                    policy=self.policy,
                    name=self.name,
                    operation=None,
                    time=self.now(),
                    backend=self.describe(),
                    exception=exc,
                )
            )
        return True

    def _answered(self, era: int) -> bool:
        """Note a reply; True if it ended an outage."""
        if self.down_until is None:
            return False
        with self._lock:
            if era != self._era or self.down_until is None:
                return False  # a late reply from before the outage: not news
            self.down_until = None
            self._probing = False
            self._era += 1
        self._on_up()
        logger.info("%s %r: Redis answers again, using shared state", self.noun, self.name)
        bus = self.bus
        if bus.wants(BackendRecovered):
            bus.emit(
                BackendRecovered(
                    policy=self.policy,
                    name=self.name,
                    operation=None,
                    time=self.now(),
                    backend=self.describe(),
                )
            )
        return True

    def _unanswered(self, era: int) -> None:
        """A step ended without news (interrupted, or no connection for it): free the probe slot."""
        if self.down_until is None:
            return
        with self._lock:
            if era == self._era and self.down_until is not None:
                self._probing = False
