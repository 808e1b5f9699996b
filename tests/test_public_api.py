"""The public surface: every public module's dir() agrees with an honest __all__."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import types
from typing import Any

import pytest

PUBLIC_MODULES = [
    "resilient",
    "resilient.events",
    "resilient.backoff",
    "resilient.chaos",
    "resilient.testing",
    "resilient.http",
]

# What the contract (API.md) promises in each module; modules may add more.
REQUIRED = {
    "resilient": {
        "retry",
        "timeout",
        "circuit_breaker",
        "bulkhead",
        "rate_limiter",
        "fallback",
        "pipeline",
        "pipeline_of",
        "current_call",
        "remaining",
        "subscribe",
        "set_testing",
        "EventBus",
        "CircuitState",
        "CallContext",
        "Subscription",
        "ResilientError",
        "CircuitOpenError",
        "BulkheadFullError",
        "RateLimitedError",
        "TimeoutExceededError",
        "Retry",
        "Timeout",
        "CircuitBreaker",
        "Bulkhead",
        "RateLimiter",
        "Fallback",
        "Pipeline",
    },
    "resilient.events": {
        "EventBus",
        "default_bus",
        "RetryScheduled",
        "RetriesExhausted",
        "TimeoutElapsed",
        "CircuitStateChanged",
        "CircuitOpened",
        "CircuitHalfOpened",
        "CircuitClosed",
        "CircuitIsolated",
        "CallRejected",
        "CircuitRejected",
        "BulkheadRejected",
        "RateLimited",
        "FallbackUsed",
        "CallSucceeded",
        "CallFailed",
    },
    "resilient.backoff": {"exponential"},
    "resilient.chaos": {"fault", "latency", "result"},
    "resilient.testing": {"FakeClock", "capture_events", "set_testing"},
    "resilient.http": {"parse_retry_after", "RetryableHTTPError", "raise_for_retryable", "retryable_status"},
}


def module(name: str) -> types.ModuleType:
    """Import a public module."""
    return importlib.import_module(name)


def defined_by_resilient(obj: object) -> bool:
    """True for objects this package defines (classes, functions, instances of its classes)."""
    if isinstance(obj, types.ModuleType):
        return False
    owner = getattr(obj, "__module__", None)
    if not isinstance(owner, str):
        owner = type(obj).__module__
    return owner == "resilient" or owner.startswith("resilient.")


@pytest.fixture(params=PUBLIC_MODULES)
def public(request: pytest.FixtureRequest) -> types.ModuleType:
    """Each public module."""
    return module(str(request.param))


def test_all_is_a_list_of_unique_strings(public: types.ModuleType) -> None:
    """__all__ is a list of unique strings."""
    names = public.__all__
    assert all(isinstance(n, str) for n in names)
    assert len(names) == len(set(names))


def test_every_name_in_all_exists(public: types.ModuleType) -> None:
    """Every name in __all__ is an attribute of the module and shows in dir()."""
    missing = [n for n in public.__all__ if not hasattr(public, n) or n not in dir(public)]
    assert missing == []


@pytest.mark.parametrize(
    "name",
    PUBLIC_MODULES,
)
def test_every_public_name_in_dir_is_in_all(name: str) -> None:
    """Every public name in dir() that resilient defines is listed in __all__ (submodules aside)."""
    public = module(name)
    unlisted = [
        n
        for n in dir(public)
        if not n.startswith("_") and n not in public.__all__ and defined_by_resilient(getattr(public, n))
    ]
    assert unlisted == []


@pytest.mark.parametrize("name", ["resilient.events", "resilient.testing"])
def test_re_export_modules_show_only_their_api(name: str) -> None:
    """The pure re-export modules show nothing but __all__ (and no stray imports) in dir()."""
    mod = module(name)
    # isidentifier(): pytest's assertion rewriting (resilient ships a pytest
    # plugin, so pytest rewrites the package) adds "@py_builtins" and "@pytest_ar".
    # Its own submodules (resilient.testing.pytest_plugin) show once imported.
    shown = sorted(
        n
        for n in dir(mod)
        if not n.startswith("_")
        and n.isidentifier()
        and not getattr(getattr(mod, n), "__name__", "").startswith(f"{name}.")
    )
    assert shown == sorted(mod.__all__)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_contract_names_present(name: str) -> None:
    """Each public module exports the names the contract promises."""
    assert REQUIRED[name] - set(module(name).__all__) == set()


def test_no_private_names_in_all(public: types.ModuleType) -> None:
    """__all__ lists no private names (only __version__ is a dunder)."""
    assert [n for n in public.__all__ if n.startswith("_") and n != "__version__"] == []


def public_objects(kind: str) -> list[tuple[str, Any]]:
    """(module.name, object) for every class (or function) in a public __all__."""
    check = inspect.isclass if kind == "class" else inspect.isfunction
    found: list[tuple[str, Any]] = []
    for name in PUBLIC_MODULES:
        mod = module(name)
        objs = [(f"{name}.{attr}", getattr(mod, attr)) for attr in mod.__all__]
        found.extend(pair for pair in objs if check(pair[1]))
    return found


def ident(value: object) -> str:
    """Test ids: the dotted path, nothing for the object."""
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("path", "cls"), public_objects("class"), ids=ident)
def test_public_class_module_is_public(path: str, cls: type) -> None:
    """A public class's __module__ is a public module where it can be imported from."""
    assert not cls.__module__.split(".")[-1].startswith("_")
    assert getattr(importlib.import_module(cls.__module__), cls.__name__) is cls


@pytest.mark.parametrize(
    ("path", "obj"),
    public_objects("class") + public_objects("function"),
    ids=ident,
)
def test_public_objects_documented(path: str, obj: Any) -> None:
    """Every public class and function has a docstring."""
    assert (obj.__doc__ or "").strip()


def test_same_objects_across_modules() -> None:
    """Names exported by several public modules are the same objects."""
    import resilient
    import resilient.events
    import resilient.testing

    assert resilient.EventBus is resilient.events.EventBus
    assert resilient.Subscription is resilient.events.Subscription
    assert resilient.subscribe is resilient.events.subscribe
    assert resilient.set_testing is resilient.testing.set_testing


def test_version_string() -> None:
    """__version__ is a non-empty string."""
    import resilient

    assert isinstance(resilient.__version__, str)
    assert resilient.__version__


def test_import_does_not_import_optional_dependencies() -> None:
    """Importing resilient (and its public modules) imports no optional dependency."""
    optional = ["prometheus_client", "structlog", "opentelemetry", "redis", "httpx", "aiohttp"]
    code = (
        "import sys, resilient, resilient.events, resilient.backoff, resilient.testing, resilient.http\n"
        f"print([m for m in {optional!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_leaves_asyncio_and_package_metadata_unloaded() -> None:
    """`import resilient` loads neither asyncio nor importlib.metadata: they cost most of its import time."""
    code = (
        "import sys, resilient, resilient.events, resilient.backoff, resilient.testing\n"
        "print(sorted(m for m in ('asyncio', 'importlib.metadata') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
