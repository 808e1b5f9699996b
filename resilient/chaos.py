"""Fault injection: make a dependency fail, slow down or answer wrongly, on purpose.

Three policies (kind ``"chaos"``), for async and sync functions::

    from resilient import chaos

    flaky = chaos.fault(ConnectionError, rate=0.1, enabled=lambda: settings.chaos)
    slow = chaos.latency(0.5, rate=0.05)
    stale = chaos.result({"status": "cached"}, rate=0.01)

Put them innermost, where the dependency is, so the policies outside them
(``retry``, ``circuit_breaker``, ``timeout``, ``fallback``) react to what
they inject. Each call first reads *enabled* (a bool, or a zero-arg callable
read on every call, so chaos can be switched from configuration or the
environment at run time), then draws against *rate*. An injection emits
``ChaosInjected``. Disabled chaos costs a function call and a test per call;
``enabled=False`` costs nothing at all.
"""

from ._chaos import ChaosPolicy, RandomSource
from ._chaos_kinds import Fault, Latency, Result, fault, latency, result

__all__ = ["ChaosPolicy", "Fault", "Latency", "RandomSource", "Result", "fault", "latency", "result"]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
