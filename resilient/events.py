"""Events emitted by policies, and the bus that delivers them.

Subscribe with :func:`resilient.subscribe` (or ``bus.subscribe``); a class
matches its subclasses, so ``subscribe(h, CircuitStateChanged)`` sees every
transition. With no subscriber for a type, emitting it allocates nothing.
"""

from ._events import (
    BackendDegraded,
    BackendRecovered,
    BackendStateLost,
    BulkheadRejected,
    CallCancelled,
    CallFailed,
    CallRejected,
    CallStarted,
    CallSucceeded,
    ChaosInjected,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitIsolated,
    CircuitOpened,
    CircuitRejected,
    CircuitStateChanged,
    ConfigReloaded,
    ConfigReloadFailed,
    Event,
    EventBus,
    FallbackUsed,
    GateClosed,
    GateClosing,
    GateRejected,
    Handler,
    HedgeStarted,
    RateLimited,
    RetriesExhausted,
    RetryScheduled,
    Subscription,
    TimeoutElapsed,
    default_bus,
    subscribe,
)

__all__ = [
    "BackendDegraded",
    "BackendRecovered",
    "BackendStateLost",
    "BulkheadRejected",
    "CallCancelled",
    "CallFailed",
    "CallRejected",
    "CallStarted",
    "CallSucceeded",
    "ChaosInjected",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitIsolated",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitStateChanged",
    "ConfigReloadFailed",
    "ConfigReloaded",
    "Event",
    "EventBus",
    "FallbackUsed",
    "GateClosed",
    "GateClosing",
    "GateRejected",
    "HedgeStarted",
    "Handler",
    "RateLimited",
    "RetriesExhausted",
    "RetryScheduled",
    "Subscription",
    "TimeoutElapsed",
    "default_bus",
    "subscribe",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
