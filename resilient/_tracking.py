"""Weak tracking of the policies that keep state, so tests can reset them all.

Circuit breakers and bulkheads register here when they are built; the set
holds weak references only, so a policy nobody else references is freed
as usual. :func:`resilient.testing.reset_policies` walks it.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

__all__ = ["Resettable", "reset_all", "track", "tracked"]


class Resettable(Protocol):
    """A policy whose in-process state a test may clear."""

    def _reset_for_tests(self) -> None: ...


_lock = threading.Lock()
_tracked: weakref.WeakSet[Any] = weakref.WeakSet()


def track(policy: Resettable) -> None:
    """Remember *policy* (weakly) so that :func:`reset_all` reaches it."""
    with _lock:
        _tracked.add(policy)


def tracked() -> list[Resettable]:
    """Return the tracked policies still alive, in no particular order."""
    with _lock:
        return list(_tracked)


def reset_all() -> None:
    """Reset every tracked policy still alive."""
    for policy in tracked():
        policy._reset_for_tests()
