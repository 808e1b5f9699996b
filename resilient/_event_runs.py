"""Where a bus's async handler runs go, how many it holds, and what it drops.

The model (documented in ``docs/events.md``):

- An async handler's runs go to its *home* loop: the loop that was running
  in the thread that subscribed it. Emitted in that loop's thread, a run is a
  task created at once; emitted anywhere else (a worker thread, another
  loop), the event is put in the home loop's mailbox and the loop is woken
  with ``call_soon_threadsafe`` (once per batch, not once per event).
- A handler subscribed where no loop was running has no home: its runs go to
  the loop running where the event is emitted, and an event emitted where no
  loop runs waits in a queue that ``drain()`` starts.
- Every accepted run counts until it finishes (mailbox, queue and tasks
  alike); beyond ``max_pending`` a new run is dropped and counted, and
  drops are logged at most once per ``LOG_EVERY`` seconds.
- A run whose home loop is closed is dropped; unsubscribing forgets the
  runs of the handler that have not started.
- ``drain()`` works on the loop it is awaited in only: it starts that
  loop's mailbox and the homeless queue, and waits for that loop's tasks.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._lazy import LazyLogger, LazyModule

if TYPE_CHECKING:
    import asyncio
    import logging
    import threading
    from typing import TypeAlias

    from ._event_types import Event

    _Loop: TypeAlias = asyncio.AbstractEventLoop
else:
    # Loaded on first use: `import resilient` stays cheap (see _lazy).
    asyncio = LazyModule("asyncio", globals())
    logging = LazyModule("logging", globals())

__all__ = ["LOG_EVERY", "AsyncRuns", "Sub", "report"]

logger = LazyLogger("resilient")  # logging loads with the first message

LOG_EVERY = 10.0
"""Seconds between two log lines about dropped runs (the first drop is logged at once)."""


def _get_running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


class Sub:
    """One subscription: the handler, its types, and (async handlers) its home loop."""

    __slots__ = ("active", "handler", "is_async", "loop", "types", "warned")

    def __init__(
        self, handler: Callable[[Any], object], types: tuple[type[Event], ...], is_async: bool
    ) -> None:
        self.handler = handler
        self.types = types
        self.is_async = is_async
        # The loop that runs an async handler: the one running where it subscribed.
        self.loop: _Loop | None = _get_running_loop() if is_async else None
        self.active = True
        self.warned = False  # told once that its events wait for drain()


def report(sub: Sub, event: object) -> None:
    """Log a handler that raised when called; never raise (not even for a broken logging setup)."""
    try:
        logger.exception("resilient event handler %r failed on %r", sub.handler, event)
    except Exception:  # a logging filter or handler that raises
        pass


def _log(level: int, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
    """Log on the ``resilient`` logger; a broken logging setup must not reach the caller."""
    try:
        logger.log(level, msg, *args, exc_info=exc_info)
    except Exception:  # pragma: no cover - a logging filter or handler that raises
        pass


class _Home:
    """One loop's share of a bus's runs: its tasks and the events handed to it."""

    __slots__ = ("mail", "tasks", "woken")

    def __init__(self) -> None:
        self.tasks: set[asyncio.Future[Any]] = set()
        self.mail: deque[tuple[Sub, Event]] = deque()
        self.woken = False  # a flush is scheduled on the loop


class AsyncRuns:
    """The async handler runs of one bus (every method is thread-safe).

    Args:
        max_pending: Runs that may be accepted and not finished at once.
        lock: The bus's lock. It is never held while user code runs (a
            handler, a task factory, a logging handler), so that code may
            emit on the same bus.
    """

    def __init__(self, max_pending: int, lock: threading.Lock) -> None:
        self.max_pending = max_pending
        self._lock = lock
        self._homes: dict[_Loop, _Home] = {}
        self._homeless: deque[tuple[Sub, Event]] = deque()
        self._count = 0  # accepted and not finished (nor forgotten)
        self.dropped = 0
        self._unlogged = 0
        self._log_after = -math.inf

    # --- accounting (the *_locked methods run under the lock) -------------------------

    def _drop_locked(self, n: int, why: str) -> str | None:
        """Count *n* drops; return the log line when one is due (at most one per LOG_EVERY)."""
        self.dropped += n
        self._unlogged += n
        now = time.monotonic()
        if now < self._log_after:
            return None
        self._log_after = now + LOG_EVERY
        line = (
            f"resilient event bus dropped {self._unlogged} async handler run(s) since its last report "
            f"({why}); {self.dropped} in total (EventBus.dropped)"
        )
        self._unlogged = 0
        return line

    def _reap_locked(self) -> str | None:
        """Give up on the runs of closed loops: they can never start or finish."""
        note = None
        for loop in [loop for loop in self._homes if loop.is_closed()]:
            home = self._homes.pop(loop)
            self._count -= len(home.mail) + len(home.tasks)
            # Finished tasks whose done callback the closed loop never ran are not losses.
            lost = len(home.mail) + sum(1 for t in home.tasks if not t.done())
            if lost:
                note = self._drop_locked(lost, _CLOSED) or note
        return note

    def _reserve_locked(self) -> tuple[bool, str | None]:
        """Count one more run if the bound allows; else count a drop."""
        note = None
        if self._count >= self.max_pending:
            note = self._reap_locked()
            if self._count >= self.max_pending:
                why = f"max_pending={self.max_pending} runs already in flight"
                return False, self._drop_locked(1, why) or note
        self._count += 1
        return True, note

    def _reserve(self) -> bool:
        with self._lock:
            ok, note = self._reserve_locked()
        _say(note)
        return ok

    def _release(self) -> None:
        with self._lock:
            self._count -= 1

    def _tidy_locked(self, loop: _Loop, home: _Home) -> None:
        if not home.tasks and not home.mail and not home.woken and self._homes.get(loop) is home:
            del self._homes[loop]

    def _home_locked(self, loop: _Loop) -> _Home:
        home = self._homes.get(loop)
        if home is None:
            home = self._homes[loop] = _Home()
        return home

    @property
    def pending(self) -> int:
        """Runs accepted and not finished, wherever they are."""
        with self._lock:
            note = self._reap_locked()
            count = self._count
        _say(note)
        return count

    # --- delivery ------------------------------------------------------------------------

    def deliver(self, sub: Sub, event: Event) -> None:
        """Run async handler *sub* on *event* where the model says (see the module docstring)."""
        running = _get_running_loop()
        home = sub.loop
        if home is not None and home is not running:
            self._hand_over(home, sub, event)
        elif running is not None:
            if self._reserve():
                self._start_one(running, sub, event)
        else:
            self._queue(sub, event)

    def adopt(self, awaitable: Awaitable[Any], sub: Sub) -> None:
        """Hold an awaitable a sync handler returned until it finishes."""
        is_future = asyncio.isfuture(awaitable)
        running = _get_running_loop()
        if not is_future and running is None:
            _close(awaitable)
            _log(
                logging.ERROR, "resilient event handler %r returned an awaitable outside a loop", sub.handler
            )
            return
        if not self._reserve():
            _close(awaitable)
            return
        try:
            fut = asyncio.ensure_future(awaitable, loop=None if is_future else running)
            loop = fut.get_loop()
        except BaseException:
            self._release()
            raise
        self._hold(loop, fut)

    def _start_one(self, loop: _Loop, sub: Sub, event: Event) -> None:
        """Start one counted run on *loop* (the running loop); a handler failing when called is logged."""
        if not sub.active:
            self._release()  # unsubscribed meanwhile: never delivered
            return
        try:
            fut = asyncio.ensure_future(sub.handler(event), loop=loop)  # type: ignore[call-overload]
        except Exception:
            self._release()
            report(sub, event)
            return
        except BaseException:
            self._release()
            raise
        self._hold(loop, fut)

    def _start(self, loop: _Loop, runs: Iterable[tuple[Sub, Event]]) -> None:
        """Start counted *runs* on *loop*, the running one."""
        it = iter(runs)
        try:
            for sub, event in it:
                self._start_one(loop, sub, event)
        except BaseException:  # KeyboardInterrupt from a handler's __call__: the rest never start
            for _ in it:
                self._release()
            raise

    def _hold(self, loop: _Loop, fut: asyncio.Future[Any]) -> None:
        """Keep a counted run's future until it is done."""
        with self._lock:
            self._home_locked(loop).tasks.add(fut)
        try:
            fut.add_done_callback(self._done)
        except BaseException:  # a finished future of a closed loop cannot call back
            self._forget_task(loop, fut)
            raise

    def _forget_task(self, loop: _Loop, fut: asyncio.Future[Any]) -> bool:
        with self._lock:
            home = self._homes.get(loop)
            if home is None or fut not in home.tasks:
                return False
            home.tasks.discard(fut)
            self._count -= 1
            self._tidy_locked(loop, home)
            return True

    def _done(self, fut: asyncio.Future[Any]) -> None:
        # Once per run: from the done callback or from drain(), whichever comes first.
        if not self._forget_task(fut.get_loop(), fut) or fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            _log(logging.ERROR, "resilient async event handler failed", exc_info=exc)

    def _hand_over(self, loop: _Loop, sub: Sub, event: Event) -> None:
        """Put the event in *loop*'s mailbox, waking the loop if it is not woken yet."""
        wake = False
        with self._lock:
            if loop.is_closed():
                ok, note = False, self._drop_locked(1, _CLOSED)
                self._reap_locked()  # what it still held can never run either
            else:
                ok, note = self._reserve_locked()
            if ok:
                home = self._home_locked(loop)
                home.mail.append((sub, event))
                wake = not home.woken
                home.woken = True
        _say(note)
        if wake:
            try:
                loop.call_soon_threadsafe(self._flush, loop)
            except RuntimeError:  # pragma: no cover - closed since the check above (a race)
                with self._lock:
                    note = self._reap_locked()
                _say(note)

    def _queue(self, sub: Sub, event: Event) -> None:
        """Keep the event for drain(): no loop runs here and the handler has no home loop."""
        with self._lock:
            ok, note = self._reserve_locked()
            if ok:
                self._homeless.append((sub, event))
        _say(note)
        if ok and not sub.warned:
            sub.warned = True
            _log(
                logging.WARNING,
                "async event handler %r was subscribed outside an event loop and got an event where "
                "none runs: it runs at the next `await bus.drain()`. Subscribe it inside the loop "
                "that should run it.",
                sub.handler,
            )

    def _flush(self, loop: _Loop) -> None:
        """Start the runs handed to *loop* (a callback on it)."""
        with self._lock:
            home = self._homes.get(loop)
            if home is None:  # pragma: no cover - a woken home is only removed once its loop is closed
                return
            mail, home.mail = home.mail, deque()
            home.woken = False
            self._tidy_locked(loop, home)
        self._start(loop, mail)

    def forget(self, subs: set[Sub]) -> None:
        """Forget the runs of *subs* (unsubscribed) that have not started.

        Restartable: each queue is replaced and its runs uncounted by plain
        stores (no interrupt lands in between), so running it again after
        an interrupt finishes the job.
        """
        with self._lock:
            kept = deque(r for r in self._homeless if r[0] not in subs)
            gone = len(self._homeless) - len(kept)
            self._homeless = kept
            self._count -= gone
            for home in list(self._homes.values()):
                kept = deque(r for r in home.mail if r[0] not in subs)
                gone = len(home.mail) - len(kept)
                home.mail = kept
                self._count -= gone

    async def drain(self) -> None:
        """Start what waits for the running loop and wait for its runs (see ``EventBus.drain``)."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                runs = list(self._homeless)
                self._homeless.clear()
                home = self._homes.get(loop)
                if home is not None:
                    runs += home.mail
                    home.mail = deque()
            self._start(loop, runs)
            with self._lock:
                home = self._homes.get(loop)
                tasks = list(home.tasks) if home is not None else []
            running = [t for t in tasks if not t.done()]
            if running:
                await asyncio.wait(running)
            # Settle finished runs here rather than relying on their done
            # callbacks: awaiting only finished futures may not yield to the
            # loop (Python 3.12+), so the callbacks might never get to run.
            for t in tasks:
                if t.done():
                    self._done(t)
            with self._lock:
                home = self._homes.get(loop)
                if not self._homeless and (home is None or (not home.tasks and not home.mail)):
                    return


_CLOSED = "the handler's event loop is closed"


def _say(note: str | None) -> None:
    if note is not None:
        _log(logging.WARNING, "%s", note)


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # a coroutine never awaited would warn
