"""Pipelines from configuration: a dict, JSON or TOML whose keys are the factories' names.

A pipeline is a list of one-key mappings, outermost first::

    [{"timeout": 2},
     {"retry": {"attempts": 3, "on": ["ConnectionError", "httpx.TransportError"],
                "backoff": {"exponential": {"initial": 0.1}}}},
     {"circuit_breaker": {"failure_threshold": 5}}]

Each key names a factory (``timeout``, ``retry``, ``circuit_breaker``,
``bulkhead``, ``fallback``, ``hedge``, ``rate_limiter``); its value holds the
factory's keyword arguments (or, for ``timeout``, ``bulkhead``, ``fallback`` and
``rate_limiter``, a bare value for their first argument). Durations are
numbers of seconds; exception types (and predicates) are dotted import
paths; a fallback's default is the JSON value itself. Every problem is
reported with its place in the configuration (``[1].retry.attempts: must be
>= 1, got 0``), all of them at once, in one :class:`~resilient.ConfigError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from . import backoff as _backoff
from ._breaker import circuit_breaker
from ._budget import RetryBudget
from ._bulkhead import bulkhead
from ._clock import Clock
from ._errors import ConfigError
from ._events import EventBus
from ._fallback import fallback
from ._hedge import hedge
from ._pipeline import Pipeline, Policy
from ._rate_limiter import rate_limiter
from ._retry import retry
from ._timeout import timeout

__all__ = ["FACTORIES", "PolicySpec", "parse_pipeline", "pipeline_from_config", "shown"]


class _Invalid(Exception):
    """One problem, at a path inside the configuration."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class _Problems(Exception):
    """Several problems in one entry."""

    def __init__(self, problems: list[_Invalid]) -> None:
        super().__init__(problems)
        self.problems = problems


def shown(value: object) -> str:
    """``repr(value)`` for a message, even when ``repr`` fails (a 5,000-digit int) or runs long."""
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


# --- values that JSON cannot hold: import paths, strategies, budgets ---------------------


def _resolve(name: object, path: str) -> Any:
    """The object a dotted path names: ``"httpx.TransportError"``, or a builtin's bare name."""
    if not isinstance(name, str) or not name.strip():
        raise _Invalid(
            path, f"must be a dotted import path (e.g. 'builtins.ConnectionError'), got {shown(name)}"
        )
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        raise _Invalid(path, f"{shown(name)} is not a dotted import path")
    if len(parts) == 1:
        parts = ["builtins", *parts]
    module: Any = None
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                continue  # that prefix is not a module: try a shorter one
            raise _Invalid(path, f"importing {module_name!r} failed: {exc}") from None
        except Exception as exc:  # the module itself is broken
            raise _Invalid(path, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
        obj = module
        for attr in parts[i:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise _Invalid(
                    path, f"{'.'.join(parts[:i])!r} has no attribute {attr!r} ({shown(name)})"
                ) from None
        return obj
    raise _Invalid(path, f"cannot import {parts[0]!r} ({shown(name)})")


def _exception_type(name: object, path: str) -> type[BaseException]:
    found = _resolve(name, path)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise _Invalid(path, f"{shown(name)} is not an exception class")
    return found


def _exceptions(value: object, path: str, ctx: _Build) -> Any:
    """``on=``/``ignore=``: a dotted exception class or predicate, or a list of exception classes."""
    if isinstance(value, str):
        found = _resolve(value, path)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
        if callable(found):
            return found  # a predicate (exc) -> bool
        raise _Invalid(path, f"{shown(value)} is neither an exception class nor a predicate")
    if isinstance(value, list):
        return tuple(_exception_type(v, f"{path}[{i}]") for i, v in enumerate(value))
    raise _Invalid(
        path, f"must be a dotted exception class (or predicate) or a list of them, got {shown(value)}"
    )


def _predicate(value: object, path: str, ctx: _Build) -> Any:
    """``on_result=``: a dotted path to a callable."""
    if value is None:
        return None
    found = _resolve(value, path)
    if not callable(found):
        raise _Invalid(path, f"{shown(value)} is not callable")
    return found


_STRATEGIES: dict[str, Callable[..., _backoff.Backoff]] = {
    "constant": _backoff.constant,
    "linear": _backoff.linear,
    "exponential": _backoff.exponential,
    "decorrelated": _backoff.decorrelated,
}


def _strategy(value: object, path: str, ctx: _Build) -> Any:
    """``backoff=``: seconds, null (the default), or ``{"exponential": {...}}`` and the like."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if not (isinstance(value, Mapping) and len(value) == 1):
        raise _Invalid(
            path,
            "must be seconds, null, or one of "
            + ", ".join(f'{{"{k}": {{...}}}}' for k in _STRATEGIES)
            + f", got {shown(value)}",
        )
    (kind, args), *_ = value.items()
    factory = _STRATEGIES.get(kind)
    if factory is None:
        raise _Invalid(path, f"unknown backoff {shown(kind)}; expected one of {', '.join(_STRATEGIES)}")
    where = f"{path}.{kind}"
    if kind == "constant" and not isinstance(args, Mapping):
        args = {"delay": args}
    if not isinstance(args, Mapping):
        raise _Invalid(where, f"must be a table of {kind}()'s arguments, got {shown(args)}")
    return _call(factory, (), dict(args), where, excluded={"rng"})


def _budget(value: object, path: str, ctx: _Build) -> Any:
    """``budget=``: a table of ``RetryBudget`` arguments (a new budget per pipeline)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Invalid(path, f"must be a table of RetryBudget arguments, got {shown(value)}")
    return _call(RetryBudget, (), {**value}, path, excluded={"clock"}, extra={"clock": ctx.clock})


Converter = Callable[[object, str, "_Build"], Any]


class _Factory:
    """How a configuration key becomes a policy."""

    __slots__ = ("converters", "factory", "positional")

    def __init__(
        self, factory: Callable[..., Policy], positional: str | None, converters: dict[str, Converter]
    ) -> None:
        self.factory = factory
        self.positional = positional
        self.converters = converters


FACTORIES: dict[str, _Factory] = {
    "timeout": _Factory(timeout, "seconds", {}),
    "retry": _Factory(
        retry, None, {"on": _exceptions, "on_result": _predicate, "backoff": _strategy, "budget": _budget}
    ),
    "circuit_breaker": _Factory(circuit_breaker, None, {"on": _exceptions, "ignore": _exceptions}),
    "bulkhead": _Factory(bulkhead, "max_concurrent", {}),
    "fallback": _Factory(fallback, "default", {"on": _exceptions}),
    "hedge": _Factory(hedge, None, {"on": _exceptions, "on_result": _predicate, "budget": _budget}),
    "rate_limiter": _Factory(rate_limiter, "rate", {}),
}
"""The factories a configuration may name, by key."""

# Set by the registry (clock=, bus=) or not at all: never from a file.
_RESERVED = {"clock": "pass clock= to Registry or pipeline_from_config", "bus": "pass bus= likewise"}
_NOT_CONFIGURABLE = {
    "backend": "build this pipeline in code (a callable template) to share a breaker's or a limiter's state"
}


def _call(
    factory: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    path: str,
    *,
    excluded: Collection[str] = (),
    extra: dict[str, Any] | None = None,
) -> Any:
    """Call *factory*, turning unknown keys and its TypeError/ValueError into path-located problems."""
    params = [p for p in _parameters(factory) if p not in excluded]
    for key in kwargs:
        if key not in params:
            raise _Invalid(f"{path}.{key}", f"unknown argument; expected one of {', '.join(params)}")
    try:
        return factory(*args, **kwargs, **(extra or {}))
    except (TypeError, ValueError) as exc:
        raise _located(path, exc, params) from None


_signatures: dict[Callable[..., Any], tuple[str, ...]] = {}


def _parameters(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The names of *factory*'s parameters (``inspect`` is imported by the first configuration)."""
    found = _signatures.get(factory)
    if found is None:
        import inspect

        found = _signatures[factory] = tuple(inspect.signature(factory).parameters)
    return found


def _located(path: str, exc: Exception, params: list[str]) -> _Invalid:
    """*exc* from a factory, at the argument its message names (every message starts with it)."""
    message = str(exc)
    for param in sorted(params, key=len, reverse=True):
        if message.startswith(param + " "):
            return _Invalid(f"{path}.{param}", message[len(param) + 1 :])
        if message.startswith(param + "="):
            return _Invalid(f"{path}.{param}", message)
    return _Invalid(path, message)


class _Build:
    """What a build needs besides the specification: the name, clock and bus."""

    __slots__ = ("bus", "clock", "name")

    def __init__(self, name: str | None, clock: Clock | None, bus: EventBus | None) -> None:
        self.name = name
        self.clock = clock
        self.bus = bus


def _same(a: object, b: object) -> bool:
    """Whether two configuration values build the same policy: same types, same values, all the way down.

    ``1``, ``1.0`` and ``True`` are equal to Python but build fallbacks that
    answer different things; a list and a tuple likewise. Iterative: a value
    from code may be nested deeper than the recursion limit.

    Returns:
        True if they are the same configuration.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        if type(x) is not type(y):
            return False
        if isinstance(x, Mapping):
            assert isinstance(y, Mapping)
            if len(x) != len(y) or any(k not in y for k in x):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif isinstance(x, (list, tuple)):
            assert isinstance(y, (list, tuple))
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        else:
            try:
                if not bool(x == y):
                    return False
            except Exception:  # an object that cannot say: treat it as changed
                return False
    return True


class PolicySpec:
    """One entry of a pipeline's configuration: a factory and its (JSON) arguments.

    Two specs are equal when they would build the same policy; the registry
    reuses a policy (and its state) whose spec did not change.
    """

    __slots__ = ("kind", "kwargs", "path")

    def __init__(self, kind: str, kwargs: dict[str, Any], path: str) -> None:
        self.kind = kind
        self.kwargs = kwargs
        self.path = path

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicySpec):
            return NotImplemented
        return self.kind == other.kind and _same(self.kwargs, other.kwargs)

    def __hash__(self) -> int:
        # The argument names only: equal specs have the same ones, and the
        # values may be nested too deeply for any recursive hash.
        return hash((self.kind, frozenset(self.kwargs)))

    def __repr__(self) -> str:
        return f"PolicySpec({self.kind!r}, {self.kwargs!r})"

    def build(
        self, name: str | None = None, clock: Clock | None = None, bus: EventBus | None = None
    ) -> Policy:
        """Build the policy; *name* applies unless the configuration names it.

        Returns:
            The policy.

        Raises:
            ConfigError: An argument is invalid (the message names its path).
        """
        try:
            return self._build(_Build(name, clock, bus))
        except _Invalid as problem:
            raise ConfigError(str(problem)) from None
        except _Problems as problems:
            raise ConfigError([str(p) for p in problems.problems]) from None

    def _build(self, ctx: _Build) -> Policy:
        spec = FACTORIES[self.kind]
        kwargs: dict[str, Any] = {}
        problems: list[_Invalid] = []
        for key, value in self.kwargs.items():
            converter = spec.converters.get(key)
            try:
                kwargs[key] = value if converter is None else converter(value, f"{self.path}.{key}", ctx)
            except _Invalid as problem:
                problems.append(problem)
        if problems:
            raise _Problems(problems)
        kwargs.setdefault("name", ctx.name)
        args: tuple[Any, ...] = ()
        if spec.positional is not None and spec.positional in kwargs:
            args = (kwargs.pop(spec.positional),)
        extra = {"clock": ctx.clock, "bus": ctx.bus}
        policy: Policy = _call(
            spec.factory, args, kwargs, self.path, excluded={*_RESERVED, *_NOT_CONFIGURABLE}, extra=extra
        )
        return policy


def _entry(item: object, path: str) -> PolicySpec:
    if not (isinstance(item, Mapping) and len(item) == 1):
        raise _Invalid(
            path,
            f"must be a table with one key, the policy (one of {', '.join(FACTORIES)}), got {shown(item)}",
        )
    (kind, value), *_ = item.items()
    spec = FACTORIES.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise _Invalid(path, f"unknown policy {shown(kind)}; expected one of {', '.join(FACTORIES)}")
    where = f"{path}.{kind}"
    if isinstance(value, Mapping):
        kwargs = dict(value)
    elif spec.positional is not None:
        kwargs = {spec.positional: value}
    else:
        raise _Invalid(where, f"must be a table of {kind}()'s arguments, got {shown(value)}")
    if spec.positional is not None and spec.positional not in kwargs:
        raise _Invalid(f"{where}.{spec.positional}", "is required")
    for key in kwargs:
        if not isinstance(key, str):
            raise _Invalid(where, f"argument names must be strings, got {shown(key)}")
        if key in _RESERVED:
            raise _Invalid(f"{where}.{key}", f"cannot be configured here; {_RESERVED[key]}")
        if key in _NOT_CONFIGURABLE:
            raise _Invalid(f"{where}.{key}", f"cannot be configured from a file; {_NOT_CONFIGURABLE[key]}")
    return PolicySpec(kind, kwargs, where)


def parse_pipeline(value: object, path: str = "", *, errors: list[str] | None = None) -> list[PolicySpec]:
    """Check a pipeline's configuration and return its entries, outermost first.

    Every entry is built once, so that a bad argument is found now.

    Args:
        value: A list of one-key mappings.
        path: Prefix of the paths in error messages (a registry key).
        errors: Collect the problems here instead of raising.

    Returns:
        The entries.

    Raises:
        ConfigError: Something is invalid (all problems at once), unless
            *errors* collects them.
    """
    found: list[str] = [] if errors is None else errors
    specs: list[PolicySpec] = []
    if not isinstance(value, list):
        where = path or "(pipeline)"
        found.append(f"{where}: must be a list of policies, outermost first, got {shown(value)}")
    else:
        for i, item in enumerate(value):
            try:
                spec = _entry(item, f"{path}[{i}]")
                spec._build(_Build(None, None, None))
            except _Invalid as problem:
                found.append(str(problem))
                continue
            except _Problems as problems:
                found.extend(str(p) for p in problems.problems)
                continue
            specs.append(spec)
    if errors is None and found:
        raise ConfigError(found)
    return specs


def pipeline_from_config(
    config: object, *, name: str | None = None, clock: Clock | None = None, bus: EventBus | None = None
) -> Pipeline:
    """Build a :class:`Pipeline` from its configuration (a list of one-key mappings, outermost first).

    ``[{"timeout": 2}, {"retry": {"attempts": 3}}]`` builds
    ``pipeline(timeout(2), retry(attempts=3))``. See ``docs/registry.md``
    for the schema.

    Args:
        config: The list (a literal, or data from :func:`~resilient.load_config`
            or :func:`~resilient.parse_config`).
        name: The pipeline's name, also given to each policy the
            configuration does not name (metrics are labelled by it).
        clock: Clock for every policy (default: the system clock).
        bus: Bus for every policy and the pipeline (default: ``default_bus``).

    Returns:
        The pipeline.

    Raises:
        ConfigError: The configuration is invalid; each message names its
            place (``[1].retry.attempts: must be >= 1, got 0``).
    """
    specs = parse_pipeline(config)
    return Pipeline(*(s.build(name, clock, bus) for s in specs), name=name, clock=clock, bus=bus)
