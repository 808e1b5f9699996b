"""The interface between a rate limiter and a shared place its state lives.

A :class:`~resilient.RateLimiter` keeps its GCRA state in process memory by
default (with a FIFO queue of waiting calls). A :class:`RateLimiterBackend`
makes one limit shared by several processes: each call is one atomic
:meth:`~RateLimiterBackend.reserve` step on the shared state, which either
grants a permit (now, or after a wait the caller sleeps through) or refuses
it with the time until one would be free.

The contract, step by step:

1. ``bind(config, clock, name=..., bus=...)`` once, when the limiter is built.
2. Per call, ``reserve(max_wait)`` returns a :class:`Reservation`, or None
   when the shared state cannot be reached: the limiter then decides on its
   local state (with ``local_share`` of the limit) until the backend answers
   again.
3. A granted reservation with a ``delay`` whose caller is cancelled while it
   sleeps is handed to ``cancel(reservation)``: the backend gives it back if
   that cannot let the fleet exceed the limit.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from resilient._clock import Clock
from resilient._events import EventBus

__all__ = ["RateLimiterBackend", "RateLimiterConfig", "Reservation"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimiterConfig:
    """A rate limiter's limit, validated by :func:`resilient.rate_limiter`.

    Attributes:
        rate: Permits per *per* seconds at the sustained rate.
        per: The period *rate* is counted over, in seconds.
        burst: Permits that may be taken at once after an idle period.
    """

    rate: float
    per: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds between two permits at the sustained rate (``per / rate``)."""
        return self.per / self.rate


class Reservation:
    """A backend's answer to one call.

    Args:
        granted: True if the call holds a permit.
        delay: Granted: seconds to wait before running (0.0: at once).
            Refused: seconds until a permit would be free (the error's
            ``retry_after``).
        token: Backend-specific data identifying the reservation for
            :meth:`RateLimiterBackend.cancel`.
    """

    __slots__ = ("delay", "granted", "token")

    def __init__(self, granted: bool, delay: float, token: object = None) -> None:
        self.granted = granted
        self.delay = delay
        self.token = token

    def __repr__(self) -> str:
        return f"Reservation(granted={self.granted}, delay={self.delay})"


class RateLimiterBackend(abc.ABC):
    """Where a shared rate limit lives, and its atomic step.

    Implement the sync methods; the async ones default to calling them. A
    backend that talks to a server overrides the ``*_async`` variants with
    non-blocking I/O. Time is the backend's: a shared one should use one
    time source for every process (e.g. the server's clock).
    """

    local_share: float = 1.0
    """Fraction of the limit this process allows itself on its local state
    while the shared state cannot be reached."""

    @abc.abstractmethod
    def bind(
        self,
        config: RateLimiterConfig,
        clock: Clock,
        *,
        name: str | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """Receive the limiter's limit and clock, once, before any other call.

        Args:
            config: The limit.
            clock: The limiter's clock.
            name: The limiter's name (a shared backend may key its state by it).
            bus: The limiter's bus (for a backend's own events, such as
                ``BackendDegraded``).

        Raises:
            ValueError: The backend is already bound to another limit or name.
        """

    @abc.abstractmethod
    def reserve(self, max_wait: float) -> Reservation | None:
        """Take a permit for one call, atomically, if one is free within *max_wait* seconds.

        Args:
            max_wait: The longest the call may wait (>= 0; may be infinite).

        Returns:
            A granted reservation (with the wait before the call may run),
            a refused one (with the time until a permit), or None when the
            shared state cannot be reached.
        """

    @abc.abstractmethod
    def cancel(self, reservation: Reservation) -> None:
        """Give back a granted reservation whose call will not run.

        Args:
            reservation: What :meth:`reserve` granted.
        """

    async def reserve_async(self, max_wait: float) -> Reservation | None:
        """Async :meth:`reserve` (default: calls the sync one).

        Args:
            max_wait: As :meth:`reserve`.

        Returns:
            As :meth:`reserve`.
        """
        return self.reserve(max_wait)

    async def cancel_async(self, reservation: Reservation) -> None:
        """Async :meth:`cancel` (default: calls the sync one).

        Args:
            reservation: As :meth:`cancel`.
        """
        self.cancel(reservation)
