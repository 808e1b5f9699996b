"""``Registry``: one pipeline per key, built from a template, reloadable as a whole.

``registry.get("payments")`` builds the key's pipeline once (thread-safe)
and returns the same object afterwards. ``@registry("payments")`` makes a
function follow the key: its wrapper runs through the key's current
pipeline, and :meth:`Registry.reload` points every such wrapper at the new
one (the wrapper's call path is swapped in place, so following costs a call
nothing). A reload builds everything first and swaps under the registry's
lock: all or nothing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeAlias, TypeVar, overload

from ._arity import sync_callable
from ._clock import SYSTEM_CLOCK, Clock
from ._decorate import follow, merge, rebinder, under
from ._errors import ConfigError
from ._events import ConfigReloaded, ConfigReloadFailed, EventBus
from ._introspect import qualname, unwrap_descriptor
from ._numbers import describe
from ._pipeline import Pipeline, Policy
from ._spec import PolicySpec, parse_pipeline, shown
from ._validate import check_bus, check_clock, check_name

__all__ = ["Registry", "Template"]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")

Template: TypeAlias = "Callable[[str], Policy] | list[Any] | Mapping[str, Any]"
"""What builds a key's pipeline: a callable ``(key) -> Policy``, a pipeline's
configuration (every key), or a mapping of keys to configurations (``"*"``:
every other key)."""

ANY_KEY = "*"


class _Source:
    """A template, checked: a callable, or parsed configurations by key."""

    __slots__ = ("configs", "factory", "raw")

    def __init__(self, raw: object) -> None:
        self.raw = raw
        self.factory: Callable[[str], Policy] | None = None
        self.configs: dict[str, list[PolicySpec]] = {}
        if isinstance(raw, (list, Mapping)):
            errors: list[str] = []
            items = raw.items() if isinstance(raw, Mapping) else [(ANY_KEY, raw)]
            for key, config in items:
                if not isinstance(key, str) or not key:
                    errors.append(f"{shown(key)}: keys must be non-empty strings")
                    continue
                prefix = "" if raw is config else key
                self.configs[key] = parse_pipeline(config, prefix, errors=errors)
            if errors:
                raise ConfigError(errors)
        elif callable(raw):
            if not sync_callable(raw, 1):
                raise TypeError(f"template must take the key: template(key) -> policy, got {raw!r}")
            self.factory = raw
        else:
            raise TypeError(
                "template must be a callable (key) -> policy, a pipeline's configuration (a list), "
                f"or a mapping of keys to configurations, got {describe(raw)}"
            )

    def specs(self, key: str) -> list[PolicySpec] | None:
        """The configuration that builds *key* (None for a callable template)."""
        if self.factory is not None:
            return None
        found = self.configs.get(key)
        if found is None:
            found = self.configs.get(ANY_KEY)
        if found is None:
            known = ", ".join(repr(k) for k in self.configs) or "none"
            raise KeyError(f"no pipeline is configured for {key!r} (keys: {known}; '*' configures any key)")
        return found


class _Entry:
    """A built key: its pipeline, and the configuration (and policies) it came from."""

    __slots__ = ("pipeline", "policies", "specs")

    def __init__(self, pipeline: Pipeline, specs: list[PolicySpec] | None, policies: list[Policy]) -> None:
        self.pipeline = pipeline
        self.specs = specs
        self.policies = policies


class _Follower:
    """A wrapper following a key, and how its pipeline is made from the key's."""

    __slots__ = ("inner", "key", "outer", "registry", "wrapper")

    def __init__(
        self, registry: Registry, key: str, inner: Pipeline | None, outer: tuple[Policy, ...]
    ) -> None:
        self.registry = registry
        self.key = key
        self.inner = inner
        self.outer = outer  # policies stacked above the registry's decorator, innermost first
        self.wrapper: weakref.ref[Any] | None = None

    def pipeline(self, base: Pipeline) -> Pipeline:
        """This wrapper's pipeline when the key's pipeline is *base*."""
        pipe = base if self.inner is None else merge(base, self.inner)
        for policy in self.outer:
            pipe = merge(policy, pipe)
        return pipe

    def alive(self) -> Any:
        """The wrapper, if it still exists."""
        return None if self.wrapper is None else self.wrapper()

    def stack(self, policy: Policy) -> Any:
        """A policy decorates the wrapper: a new follower with the policy outside the key's pipeline."""
        wrapper = self.alive()
        assert wrapper is not None
        return self.registry._follow(self.key, wrapper.__wrapped__, self.inner, (*self.outer, policy))


class _KeyDecorator:
    """What ``registry(key)`` returns: decorates a function to follow *key*."""

    __slots__ = ("key", "registry")

    def __init__(self, registry: Registry, key: str) -> None:
        self.registry = registry
        self.key = key

    def __repr__(self) -> str:
        return f"{self.registry!r}({self.key!r})"

    @overload
    def __call__(self, fn: classmethod[C, P, T]) -> classmethod[C, P, T]: ...
    @overload
    def __call__(self, fn: staticmethod[P, T]) -> staticmethod[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Any) -> Any:
        """Make *fn* run through the key's current pipeline (see :meth:`Registry.__call__`)."""
        return self._decorate(fn)

    def _decorate(self, fn: Any) -> Any:
        if isinstance(fn, (classmethod, staticmethod)) and under(fn.__func__)[1] is not None:
            # Above @classmethod above other policies: follow inside, as decorating folds.
            return type(fn)(self._decorate(fn.__func__))
        if getattr(fn, "_self_follow", None) is not None:
            raise TypeError(f"{qualname(unwrap_descriptor(fn))} already follows a registry key")
        return self.registry._follow(self.key, fn, None, ())


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {describe(key)}")
    if not key or key == ANY_KEY:
        raise ValueError(f"key must be a non-empty string other than '*', got {key!r}")
    return key


class Registry:
    """Pipelines by key (a host, a dependency), built from one template.

    Args:
        template: How a key's pipeline is built:

            - a callable ``(key) -> Policy`` (a pipeline or one policy);
            - a pipeline's configuration, a list of one-key mappings
              outermost first (``[{"timeout": 2}, {"retry": {"attempts": 3}}]``),
              used for every key;
            - a mapping of keys to configurations; ``"*"`` configures every
              key not listed (without it, other keys are unknown).

            A pipeline built for a key is named after it, and so is each
            policy a configuration builds (unless it sets ``name``):
            metrics and logs are labelled by the key.
        name: Reported in the registry's events.
        clock: Clock for the policies built from configuration.
        bus: Bus for the policies built from configuration, and for the
            registry's ``ConfigReloaded`` / ``ConfigReloadFailed`` events.

    Raises:
        ConfigError: A configuration is invalid (every problem, each with
            its place: ``payments[1].retry.attempts: must be >= 1, got 0``).
        TypeError: *template* is none of the above, or a parameter has the
            wrong type.
    """

    def __init__(
        self,
        template: Template,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.name = check_name(name)
        self._clock = None if clock is None else check_clock(clock)
        self._bus = None if bus is None else check_bus(bus)
        self.bus = check_bus(bus)
        self._lock = threading.RLock()
        self._source = _Source(template)
        self._entries: dict[str, _Entry] = {}
        self._followers: list[_Follower] = []

    def __repr__(self) -> str:
        return "Registry()" if self.name is None else f"Registry(name={self.name!r})"

    @property
    def template(self) -> Template:
        """The template in force (as given to the constructor or to :meth:`reload`)."""
        return self._source.raw  # type: ignore[return-value]

    def keys(self) -> tuple[str, ...]:
        """The keys whose pipeline has been built, in the order they were."""
        return tuple(self._entries)

    def get(self, key: str) -> Pipeline:
        """Return the key's pipeline, building it the first time (once, whatever the threads).

        If a callable template raises, its exception propagates and the key
        stays unbuilt: the next ``get`` tries again.

        Args:
            key: The key (a host, a dependency's name).

        Returns:
            The same :class:`Pipeline` on every call until a :meth:`reload`
            changes it.

        Raises:
            KeyError: The template is a mapping with neither *key* nor ``"*"``.
            TypeError: *key* is not a str, or a callable template returned
                something other than a policy.
            ValueError: *key* is empty or ``"*"``.
        """
        try:
            entry = self._entries.get(key)
        except TypeError:  # unhashable
            entry = None
        if entry is not None:
            return entry.pipeline
        _check_key(key)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._build(self._source, key, None)
                self._entries[key] = entry
        return entry.pipeline

    def __call__(self, key: str) -> _KeyDecorator:
        """Decorate a function so it runs through the key's *current* pipeline.

        After a :meth:`reload`, its later calls run through the new pipeline;
        calls in flight finish on the one they started on. The wrapper is
        the usual single wrapper (same signature, binding, ``pipeline_of``),
        and its calls cost what a plain decorated function's cost. Policies
        stacked above it stay outside the key's pipeline; policies below it
        stay inside.

        Args:
            key: The key.

        Returns:
            The decorator.

        Raises:
            KeyError: The key is not configured (see :meth:`get`).
            TypeError: *key* is not a str.
            ValueError: *key* is empty or ``"*"``.
        """
        _check_key(key)
        self.get(key)  # an unknown key fails here, when decorating
        return _KeyDecorator(self, key)

    def _follow(self, key: str, fn: Any, inner: Pipeline | None, outer: tuple[Policy, ...]) -> Any:
        if inner is None:
            # Policies below the registry's decorator stay inside the key's pipeline.
            fn, inner = under(fn)
        with self._lock:
            follower = _Follower(self, key, inner, outer)
            wrapper = follow(fn, follower.pipeline(self.get(key)), follower.stack)
            follower.wrapper = weakref.ref(wrapper)
            self._followers = [f for f in self._followers if f.alive() is not None]
            self._followers.append(follower)
        return wrapper

    def _build(self, source: _Source, key: str, old: _Entry | None) -> _Entry:
        """Build *key*'s entry from *source*, reusing what *old* built from an unchanged configuration."""
        specs = source.specs(key)
        if specs is None:
            assert source.factory is not None
            return _Entry(_named(source.factory(key), key), None, [])
        kept: dict[PolicySpec, list[Policy]] = {}
        if old is not None and old.specs is not None:
            for spec, policy in zip(old.specs, old.policies, strict=True):
                kept.setdefault(spec, []).append(policy)
        policies = []
        for spec in specs:
            reuse = kept.get(spec)
            policies.append(reuse.pop(0) if reuse else spec.build(key, self._clock, self._bus))
        if old is not None and old.specs is not None and policies == old.policies:
            return old
        pipe = Pipeline(*policies, name=key, clock=self._clock, bus=self._bus)
        return _Entry(pipe, specs, policies)

    def reload(self, template: Template) -> None:
        """Swap in a new template, all or nothing.

        Every key built so far is rebuilt first, from the new template, and
        every function following a key is checked against its new pipeline;
        only then, under the registry's lock, do the keys and the functions
        move to the new pipelines (their later calls run on them; calls in
        flight finish on the old ones). A policy whose configuration did not
        change is carried over as the same object, with its state: an
        unchanged breaker stays open, an unchanged bulkhead keeps its slots.
        A callable template rebuilds everything.

        If anything fails (an invalid configuration, a key in use that the
        new one no longer configures, a pipeline that cannot guard a sync
        function, the template raising), nothing changes:
        ``ConfigReloadFailed`` is emitted and :class:`ConfigError` raised.

        Args:
            template: As for the constructor.

        Raises:
            ConfigError: The template was rejected; the old one stays in force.
            TypeError: *template* is not a template at all.
        """
        reused = 0
        with self._lock:
            try:
                source, entries, commits = self._prepare(template)
            except (ConfigError, TypeError) as exc:
                self._failed(exc)
                raise
            for key, entry in entries.items():
                old = self._entries[key]
                reused += sum(1 for p in entry.policies if any(p is q for q in old.policies))
            changed = tuple(k for k, e in entries.items() if e is not self._entries[k])
            self._source = source
            self._entries = entries
            for commit in commits:
                commit()
        bus = self.bus
        if bus.wants(ConfigReloaded):
            clock = self._clock or SYSTEM_CLOCK
            bus.emit(
                ConfigReloaded(
                    policy="registry",
                    name=self.name,
                    operation=None,
                    time=clock.monotonic(),
                    keys=changed,
                    reused=reused,
                )
            )

    def _prepare(self, template: Template) -> tuple[_Source, dict[str, _Entry], list[Callable[[], None]]]:
        """Build everything a reload swaps in; raise ConfigError if anything is wrong."""
        source = _Source(template)
        entries: dict[str, _Entry] = {}
        errors: list[str] = []
        for key, old in self._entries.items():
            try:
                entries[key] = self._build(source, key, old)
            except ConfigError as exc:
                errors.extend(exc.errors)
            except KeyError:
                errors.append(f"{key}: in use, but the new configuration has no entry for it (nor '*')")
            except Exception as exc:  # the template's own error
                errors.append(f"{key}: the template raised {type(exc).__name__}: {exc}")
        commits: list[Callable[[], None]] = []
        if not errors:
            for follower in self._followers:
                wrapper = follower.alive()
                if wrapper is None:
                    continue
                try:
                    commits.append(rebinder(wrapper, follower.pipeline(entries[follower.key].pipeline)))
                except TypeError as exc:
                    errors.append(f"{follower.key}: cannot guard {qualname(wrapper.__wrapped__)}: {exc}")
        if errors:
            raise ConfigError(errors)
        return source, entries, commits

    def _failed(self, exc: Exception) -> None:
        bus = self.bus
        if bus.wants(ConfigReloadFailed):
            clock = self._clock or SYSTEM_CLOCK
            bus.emit(
                ConfigReloadFailed(
                    policy="registry",
                    name=self.name,
                    operation=None,
                    time=clock.monotonic(),
                    errors=exc.errors if isinstance(exc, ConfigError) else (str(exc),),
                    exception=exc,
                )
            )


def _named(obj: object, key: str) -> Pipeline:
    """What a callable template returned, as a pipeline named *key* (unless it has a name)."""
    if not isinstance(obj, Policy):
        raise TypeError(
            f"the template returned {describe(obj)} for {key!r}; it must return a policy or a pipeline"
        )
    if not isinstance(obj, Pipeline):
        return Pipeline(obj, name=key)
    if obj.name is not None:
        return obj
    return Pipeline(
        *obj.policies,
        name=key,
        clock=obj.clock if obj._explicit_clock else None,
        bus=obj.bus if obj._explicit_bus else None,
    )


# Public as resilient.X (imported there on first use): say so wherever it is found.
Registry.__module__ = "resilient"
