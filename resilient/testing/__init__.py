"""Test aids: a virtual clock, event capture and the test-mode switch.

Tests of code that uses ``resilient`` should never wait for real:

- :class:`FakeClock` — pass ``clock=FakeClock()`` to any policy; its
  ``sleep`` advances virtual time at once and fires due timers (so a
  ``timeout`` expires in virtual time).
- :func:`capture_events` — record what the default bus emits.
- :func:`set_testing` — skip every backoff wait globally.
- :func:`use_clock` — give one clock to every policy built without one.
- :func:`reset_policies` — clear breaker, bulkhead and budget state between tests.
- ``resilient.testing.pytest_plugin`` — pytest fixtures for all of the above.
"""

from resilient import _tracking
from resilient._clock_kinds import use_clock
from resilient._config import set_testing
from resilient._events import capture_events
from resilient._fakeclock import FakeClock


def reset_policies() -> None:
    """Reset the in-process state of every breaker, bulkhead and retry budget built so far.

    Between tests, state kept by module-level policies in the code under test
    must not leak from one test into the next: every circuit breaker with an
    in-process backend is closed with empty statistics (``breaker.reset()``),
    every bulkhead turns away the calls waiting in its queue
    (``bulkhead.reset()``; running calls keep their slots), and every
    ``RetryBudget`` is full again. Policies are tracked weakly, so none is
    kept alive by this. A breaker whose state is shared (Redis) keeps it:
    that state belongs to every process using it.
    """
    _tracking.reset_all()


__all__ = ["FakeClock", "capture_events", "reset_policies", "set_testing", "use_clock"]

FakeClock.__module__ = __name__
use_clock.__module__ = __name__
