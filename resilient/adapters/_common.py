"""What every adapter shares: event names, flat fields, lazy imports, tracked policies.

The adapters render the same event the same way: one snake_case *kind* per
event class (``RetryScheduled`` -> ``"retry_scheduled"``) and one set of flat
fields built from the event's dataclass fields, so a log line, a structlog
entry and a span event of one event agree.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from resilient._context import CallContext, current_call, delivered_call
from resilient._events import (
    CallCancelled,
    CallFailed,
    CallStarted,
    CallSucceeded,
    Event,
    EventBus,
    Subscription,
    default_bus,
)
from resilient._numbers import describe
from resilient._state import CircuitState

__all__ = [
    "Tracked",
    "attach",
    "breaker_state",
    "call_attributes",
    "call_of",
    "event_fields",
    "event_kind",
    "exception_type",
    "import_optional",
    "short_repr",
    "subject",
]

# Fields every event has; adapters render them separately (``time`` is a
# monotonic reading, meaningless outside the process, so it is left out).
_BASE_FIELDS = frozenset({"policy", "name", "operation", "time"})
_REPR_LIMIT = 200

logger = logging.getLogger("resilient")

_kinds: dict[type, str] = {}
_field_names: dict[type, tuple[str, ...]] = {}


def import_optional(module: str, extra: str, adapter: str) -> ModuleType:
    """Import an optional dependency, or explain which extra installs it.

    Args:
        module: The module to import, e.g. ``"prometheus_client"``.
        extra: The ``resilient`` extra that installs it, e.g. ``"prometheus"``.
        adapter: The adapter class that needs it, for the message.

    Returns:
        The imported module.

    Raises:
        ImportError: The module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{adapter} needs the {module!r} package, which is not installed: "
            f"pip install 'resilient-policies[{extra}]'"
        ) from exc


def event_kind(cls: type) -> str:
    """Return the snake_case kind of an event class (``CircuitOpened`` -> ``"circuit_opened"``).

    Args:
        cls: An event class.

    Returns:
        The kind, cached per class.
    """
    kind = _kinds.get(cls)
    if kind is None:
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        _kinds[cls] = kind
    return kind


def exception_type(exc: BaseException) -> str:
    """Return the exception's class name, module-qualified unless it is a builtin.

    Args:
        exc: An exception.

    Returns:
        E.g. ``"ConnectionError"`` or ``"httpx.ConnectTimeout"``.
    """
    cls = type(exc)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def short_repr(value: object) -> str:
    """Return ``repr(value)`` cut to 200 characters (for user data in logs), even when ``repr`` fails."""
    return describe(value, typed=False, limit=_REPR_LIMIT)


def event_fields(event: Event) -> dict[str, Any]:
    """Return the event's own fields as flat, log-friendly values.

    The base fields (``policy``, ``name``, ``operation``, ``time``) are left
    out. An exception becomes ``exception`` (its repr) plus
    ``exception_type``; an enum becomes its value; a string longer than 200
    characters is cut, and any other non-scalar (an ``on_result`` result)
    becomes its repr, cut the same way. ``None`` values are kept.

    Args:
        event: Any event.

    Returns:
        A new dict, in the dataclass's field order.
    """
    cls = type(event)
    names = _field_names.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(event) if f.name not in _BASE_FIELDS)
        _field_names[cls] = names
    out: dict[str, Any] = {}
    for key in names:
        value = getattr(event, key)
        if isinstance(value, BaseException):
            out[key] = short_repr(value)
            out[f"{key}_type"] = exception_type(value)
        elif isinstance(value, enum.Enum):
            out[key] = value.value
        elif isinstance(value, str):
            out[key] = value if len(value) <= _REPR_LIMIT else value[: _REPR_LIMIT - 3] + "..."
        elif value is None or isinstance(value, (bool, int, float)):
            out[key] = value
        else:
            out[key] = short_repr(value)
    return out


def subject(event: Event) -> str:
    """Return what a message is about: the operation, else the policy's name, else its kind.

    Args:
        event: Any event.

    Returns:
        E.g. ``"fetch_user"``.
    """
    if event.operation is not None:
        return event.operation
    if event.name is not None:
        return event.name
    return f"<{event.policy}>"


def attach(
    handler: Callable[[Any], None], types: tuple[type[Event], ...], bus: EventBus | None
) -> Subscription:
    """Subscribe *handler* to *types* on *bus*, checking the bus first.

    Args:
        handler: The adapter's sync handler.
        types: The event classes it wants.
        bus: An :class:`EventBus`, or None for the default bus.

    Returns:
        The subscription.

    Raises:
        TypeError: *bus* is not an EventBus.
    """
    if bus is None:
        bus = default_bus
    elif not isinstance(bus, EventBus):
        raise TypeError(f"bus must be an EventBus or None, got {describe(bus)}")
    return bus.subscribe(handler, *types)


_LIFECYCLE = (CallStarted, CallSucceeded, CallFailed, CallCancelled)


def call_of(event: Event) -> CallContext | None:
    """Return the context of the pipeline call *event* happens in (a sync handler runs inline), or None.

    A call's own lifecycle events name it directly (no stack walk: they
    are on every observed call's path); any other event is placed with
    :func:`resilient.current_call`.

    Args:
        event: The event being handled.

    Returns:
        The running call's context, or None outside any call.
    """
    if isinstance(event, _LIFECYCLE):
        ctx = delivered_call()
        if ctx is not None:
            return ctx
    return current_call()


def call_attributes(event: Event) -> Mapping[str, Any] | None:
    """Return the attributes of the pipeline call *event* happens in, or None if it has none."""
    ctx = call_of(event)
    if ctx is None or not ctx.attributes:
        return None
    return ctx.attributes


class Tracked:
    """Policies read at scrape time (bulkheads' ``in_use``, breakers' state).

    Held weakly, keyed by name, so a tracked policy that goes away stops
    being reported and two policies never report under one label. Tracking
    a policy under a name that is already tracked replaces the earlier one:
    a rebuilt breaker takes over its predecessor's name whether or not the
    old object has been garbage-collected yet, so the outcome never depends
    on when the collector runs.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self._refs: dict[str, weakref.ref[Any]] = {}

    def add(self, policy: object, required: tuple[str, ...]) -> None:
        """Track *policy*, which must have a name and the *required* attributes.

        Args:
            policy: The policy object.
            required: Attribute names read at scrape time.

        Raises:
            TypeError: *policy* lacks an attribute.
            ValueError: *policy* has no name.
        """
        for attr in required:
            if not hasattr(policy, attr):
                raise TypeError(f"{self._what} must have a {attr!r} attribute, got {describe(policy)}")
        name = getattr(policy, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{self._what} needs a name to be tracked (it is the metric label), "
                f"e.g. name='db'; got {describe(policy)}"
            )
        with self._lock:
            self._refs[name] = weakref.ref(policy)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(name, policy)`` for every live tracked policy."""
        with self._lock:
            pairs = list(self._refs.items())
        dead = []
        for name, ref in pairs:
            policy = ref()
            if policy is None:
                dead.append(name)
                continue
            yield name, policy
        if dead:
            with self._lock:
                for name in dead:
                    maybe = self._refs.get(name)
                    if maybe is not None and maybe() is None:
                        del self._refs[name]


def breaker_state(breaker: Any) -> CircuitState | None:
    """Read a tracked breaker's state without side effects, or None if it cannot be read.

    Uses ``peek_state()`` (a pure read: an OPEN breaker past its recovery
    timeout reads as HALF_OPEN but is not moved and emits nothing); an
    object without it is read through its ``state`` attribute. A read that
    raises (a shared backend that cannot answer) is logged and skipped, so
    one breaker never fails a whole scrape.

    Args:
        breaker: A tracked circuit breaker.

    Returns:
        Its state, or None.
    """
    try:
        peek = getattr(breaker, "peek_state", None)
        value = peek() if callable(peek) else breaker.state
        if isinstance(value, CircuitState):
            return value
        return CircuitState(getattr(value, "value", value))
    except Exception:
        logger.warning("could not read the state of the tracked circuit breaker %r", breaker, exc_info=True)
        return None
