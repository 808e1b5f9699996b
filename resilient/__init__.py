"""resilient: composable resilience policies for async (and sync) Python.

Decorate with ``retry``, ``timeout``, ``circuit_breaker``, ``bulkhead``,
``rate_limiter``, ``fallback`` and ``hedge`` (``resilient.chaos`` injects
faults); stacked decorators fold into one pipeline; policies emit events on
a bus that logging and metrics adapters plug into. ``gate`` shuts a service
down gracefully; ``Registry`` builds pipelines per key, from code or from
configuration, and reloads them.
"""

from typing import TYPE_CHECKING, Any

from . import backoff, chaos
from ._breaker import CircuitBreaker, circuit_breaker
from ._budget import RetryBudget
from ._bulkhead import Bulkhead, bulkhead
from ._clock import Clock, SystemClock
from ._config import set_testing
from ._context import CallContext, current_call, remaining, without_deadline
from ._decorate import pipeline_of
from ._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    FailedResult,
    GateClosedError,
    RateLimitedError,
    ResilientError,
    TimeoutExceededError,
)
from ._events import EventBus, Subscription, subscribe
from ._fallback import Fallback, fallback
from ._hedge import Hedge, hedge
from ._outcome import Outcome, gather_outcomes, outcome
from ._pipeline import Pipeline, Policy, pipeline
from ._rate_limiter import RateLimiter, rate_limiter
from ._retry import Retry, retry
from ._state import CircuitState
from ._timeout import Timeout, timeout

if TYPE_CHECKING:
    from ._gate import Gate, GateReport, gate
    from ._loaders import load_config, parse_config
    from ._registry import Registry
    from ._spec import pipeline_from_config

# Imported on first use: a service needs them at startup and shutdown, not on
# every `import resilient` (the import-time budget of benchmarks/compare.py).
_ON_FIRST_USE = {
    "Gate": "._gate",
    "GateReport": "._gate",
    "gate": "._gate",
    "Registry": "._registry",
    "load_config": "._loaders",
    "parse_config": "._loaders",
    "pipeline_from_config": "._spec",
}

__version__ = "0.1.0"

__all__ = [
    "Bulkhead",
    "BulkheadFullError",
    "CallContext",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "ConfigError",
    "EventBus",
    "FailedResult",
    "Fallback",
    "Gate",
    "GateClosedError",
    "GateReport",
    "Hedge",
    "Outcome",
    "Pipeline",
    "Policy",
    "Registry",
    "RateLimitedError",
    "RateLimiter",
    "ResilientError",
    "Retry",
    "RetryBudget",
    "Subscription",
    "SystemClock",
    "Timeout",
    "TimeoutExceededError",
    "__version__",
    "backoff",
    "bulkhead",
    "chaos",
    "circuit_breaker",
    "current_call",
    "fallback",
    "gather_outcomes",
    "gate",
    "load_config",
    "parse_config",
    "hedge",
    "outcome",
    "pipeline",
    "pipeline_from_config",
    "pipeline_of",
    "rate_limiter",
    "remaining",
    "retry",
    "set_testing",
    "subscribe",
    "timeout",
    "without_deadline",
]

for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and _obj.__module__.startswith("resilient._"):
        _obj.__module__ = __name__
del _name, _obj


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    obj = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return sorted({*globals(), *_ON_FIRST_USE})
