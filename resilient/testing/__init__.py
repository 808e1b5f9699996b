"""Test aids: a virtual clock, event capture and the test-mode switch.

Tests of code that uses ``resilient`` should never wait for real:

- :class:`FakeClock` — pass ``clock=FakeClock()`` to any policy; its
  ``sleep`` advances virtual time at once and fires due timers (so a
  ``timeout`` expires in virtual time).
- :func:`capture_events` — record what the default bus emits.
- :func:`set_testing` — skip every backoff wait globally.
"""

from resilient._clock import use_clock
from resilient._config import set_testing
from resilient._events import capture_events
from resilient._fakeclock import FakeClock

__all__ = ["FakeClock", "capture_events", "set_testing", "use_clock"]

FakeClock.__module__ = __name__
use_clock.__module__ = __name__
