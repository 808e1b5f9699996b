"""Sliding windows of call outcomes for the failure-rate and slow-call modes.

Both windows store outcome codes (:class:`resilient.backends.Outcome`: bit 1
failed, bit 2 slow) and keep running totals, so reading a rate is O(1). They
are not thread-safe on their own: the backend updates them under its lock.
"""

from __future__ import annotations

__all__ = ["CountWindow", "TimeWindow", "TIME_BUCKETS"]

TIME_BUCKETS = 10
"""Buckets in a time window: its memory is fixed, whatever the traffic.

Ten buckets (Hystrix's default) make the window's edge accurate to a tenth of
its length, which is plenty for a threshold decision.
"""


class CountWindow:
    """The outcomes of the last *size* recorded calls, in a ring buffer.

    Args:
        size: How many calls the window holds (>= 1).
    """

    __slots__ = ("_pos", "_ring", "_size", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring = bytearray(size)
        self._pos = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, code: int, now: float) -> None:
        """Record one outcome, evicting the oldest when full.

        Args:
            code: The outcome code.
            now: Ignored (a count window has no time); kept so both windows
                share one signature.
        """
        ring = self._ring
        pos = self._pos
        if self.calls == self._size:
            old = ring[pos]
            self.failures -= old & 1
            self.slow -= old >> 1
        else:
            self.calls += 1
        ring[pos] = code
        self.failures += code & 1
        self.slow += code >> 1
        pos += 1
        self._pos = 0 if pos == self._size else pos

    def refresh(self, now: float) -> None:
        """Nothing to expire in a count window.

        Args:
            now: Ignored.
        """

    def clear(self) -> None:
        """Forget every outcome."""
        self._ring = bytearray(self._size)
        self._pos = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    """The outcomes of the last *seconds* seconds, in :data:`TIME_BUCKETS` buckets.

    Bucket ``i`` holds the calls whose time falls in slot ``e`` (``e =
    floor(now / width)``, ``e % buckets == i``); moving to a later slot
    empties the buckets that fell out of the window and subtracts them from
    the totals. Memory is O(buckets) and each step amortised O(1).

    Args:
        seconds: The window length (> 0).
        buckets: How many buckets split it.
    """

    __slots__ = ("_buckets", "_calls", "_failures", "_last", "_slow", "_width", "calls", "failures", "slow")

    def __init__(self, seconds: float, buckets: int = TIME_BUCKETS) -> None:
        self._buckets = buckets
        self._width = seconds / buckets
        self._calls = [0] * buckets
        self._failures = [0] * buckets
        self._slow = [0] * buckets
        self._last: int | None = None
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def _slot(self, now: float) -> int:
        slot = int(now // self._width)
        last = self._last
        if last is None:
            self._last = slot
            return slot
        if slot <= last:
            # A clock never goes back; if one does, count the call in the newest slot.
            return last
        n = self._buckets
        if slot - last >= n:
            self._zero_all()
        else:
            for s in range(last + 1, slot + 1):
                b = s % n
                self.calls -= self._calls[b]
                self.failures -= self._failures[b]
                self.slow -= self._slow[b]
                self._calls[b] = self._failures[b] = self._slow[b] = 0
        self._last = slot
        return slot

    def add(self, code: int, now: float) -> None:
        """Record one outcome at time *now*.

        Args:
            code: The outcome code.
            now: The clock reading when the call ended.
        """
        b = self._slot(now) % self._buckets
        failed = code & 1
        slow = code >> 1
        self._calls[b] += 1
        self._failures[b] += failed
        self._slow[b] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def refresh(self, now: float) -> None:
        """Expire the buckets that fell out of the window by *now*.

        Args:
            now: The clock reading.
        """
        self._slot(now)

    def _zero_all(self) -> None:
        n = self._buckets
        self._calls = [0] * n
        self._failures = [0] * n
        self._slow = [0] * n
        self.calls = self.failures = self.slow = 0

    def clear(self) -> None:
        """Forget every outcome."""
        self._zero_all()
        self._last = None
