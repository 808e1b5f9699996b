"""resilient: composable resilience policies for async (and sync) Python.

Decorate with ``retry``, ``timeout``, ``circuit_breaker``, ``bulkhead``,
``fallback`` and ``hedge`` (``resilient.chaos`` injects faults); stacked
decorators fold into one pipeline; policies emit events on a bus that
logging and metrics adapters plug into.
"""

from . import backoff, chaos
from ._breaker import CircuitBreaker, circuit_breaker
from ._budget import RetryBudget
from ._bulkhead import Bulkhead, bulkhead
from ._clock import Clock, SystemClock
from ._config import set_testing
from ._context import CallContext, current_call, remaining, without_deadline
from ._decorate import pipeline_of
from ._errors import BulkheadFullError, CircuitOpenError, FailedResult, ResilientError, TimeoutExceededError
from ._events import EventBus, Subscription, subscribe
from ._fallback import Fallback, fallback
from ._hedge import Hedge, hedge
from ._outcome import Outcome, gather_outcomes, outcome
from ._pipeline import Pipeline, Policy, pipeline
from ._retry import Retry, retry
from ._state import CircuitState
from ._timeout import Timeout, timeout

__version__ = "0.1.0"

__all__ = [
    "Bulkhead",
    "BulkheadFullError",
    "CallContext",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "EventBus",
    "FailedResult",
    "Fallback",
    "Hedge",
    "Outcome",
    "Pipeline",
    "Policy",
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
    "hedge",
    "outcome",
    "pipeline",
    "pipeline_of",
    "remaining",
    "retry",
    "set_testing",
    "subscribe",
    "timeout",
    "without_deadline",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("resilient._"):
        _obj.__module__ = __name__
del _name, _obj
