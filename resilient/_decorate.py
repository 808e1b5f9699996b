"""Decorating: folding stacked policies into one wrapper, and finding its pipeline.

The wrapper classes live in :mod:`resilient._wrapper`, imported by the
first decoration: they build on wrapt, which is costly to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._introspect import kind_of, unwrap_descriptor
from ._numbers import describe
from ._pipeline import Pipeline, Policy, is_pipeline

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["decorate", "follow", "merge", "pipeline_of", "rebinder", "under"]

_classes: ModuleType | None = None


def _wrappers() -> Any:
    """The wrapper module, imported on first use."""
    global _classes
    if _classes is None:
        from . import _wrapper as module

        _classes = module
    return _classes


def _merge(outer: Policy, inner: Pipeline) -> Pipeline:
    """The pipeline of *outer* stacked on a function already guarded by *inner*."""
    policies = (*outer.policies, *inner.policies)
    template = outer if is_pipeline(outer) else inner
    return Pipeline(
        *policies,
        name=template.name if template.name is not None else (inner.name if template is outer else None),
        clock=(
            template.clock if template._explicit_clock else (inner.clock if inner._explicit_clock else None)
        ),
        bus=template.bus if template._explicit_bus else (inner.bus if inner._explicit_bus else None),
        attributes=template.attributes if template.attributes is not None else inner.attributes,
    )


def decorate(policy: Policy, fn: Any) -> Any:
    """Wrap *fn* with *policy*, folding into an existing ``resilient`` wrapper."""
    w = _classes or _wrappers()
    if isinstance(fn, (classmethod, staticmethod)) and isinstance(fn.__func__, w.Wrapper):
        # @policy above @classmethod above another resilient decorator: fold inside.
        return type(fn)(decorate(policy, fn.__func__))
    if isinstance(fn, w.Wrapper):
        stack = getattr(fn, "_self_follow", None)
        if stack is not None:
            # A wrapper following a registry key: the registry folds the policy
            # in, and keeps doing so when the key's pipeline changes.
            return stack(policy)
        inner: Pipeline = fn._self_pipeline
        merged = _merge(policy, inner)
        is_async: bool = fn._self_is_async
        if not is_async:
            merged.check_sync(fn.__wrapped__)
        return w.wrap(fn.__wrapped__, merged, is_async)
    is_async = kind_of(fn)
    pipe = policy if is_pipeline(policy) else Pipeline(policy)
    if not is_async:
        pipe.check_sync(unwrap_descriptor(fn))
    return w.wrap(fn, pipe, is_async)


def under(fn: Any) -> tuple[Any, Pipeline | None]:
    """Split a decorated function into what its wrapper wraps and its pipeline.

    Returns:
        ``(wrapped, pipeline)`` for a ``resilient`` wrapper; ``(fn, None)`` otherwise.
    """
    w = _classes
    if w is not None and isinstance(fn, w.Wrapper):
        return fn.__wrapped__, fn._self_pipeline
    return fn, None


def follow(target: Any, pipeline: Pipeline, stack: Callable[[Policy], Any]) -> Any:
    """Wrap *target* in a wrapper running *pipeline*, which :func:`rebinder` can move later.

    Its runners are built now (not on its first call), so that a later
    move never races a first call building runners for the old pipeline.

    Args:
        target: A function, method, classmethod or staticmethod (not a wrapper).
        pipeline: The pipeline its calls run through, for now.
        stack: Called with a policy that decorates the returned wrapper;
            what it returns is the decorated result.

    Returns:
        The wrapper.

    Raises:
        TypeError: *target* cannot be decorated, or *pipeline* cannot guard it.
    """
    w = _classes or _wrappers()
    is_async = kind_of(target)
    if not is_async:
        pipeline.check_sync(unwrap_descriptor(target))
    wrapper = w.wrap(target, pipeline, is_async)
    w.rebind(wrapper, pipeline)()
    wrapper._self_follow = stack
    return wrapper


def merge(outer: Policy, inner: Pipeline) -> Pipeline:
    """The pipeline of *outer* stacked on a function already guarded by *inner* (as decorating does)."""
    return _merge(outer, inner)


def rebinder(wrapper: Any, pipeline: Pipeline) -> Callable[[], None]:
    """Prepare moving *wrapper* (made by :func:`follow`) to *pipeline*; return what moves it.

    Everything that can fail (the pipeline cannot guard a sync function, a
    layer refuses it) fails here; the returned function only assigns.
    Calls already running finish on the pipeline they started on.

    Returns:
        The function that moves the wrapper.

    Raises:
        TypeError: *pipeline* cannot guard the wrapped function.
    """
    w = _classes or _wrappers()
    if not wrapper._self_is_async:
        pipeline.check_sync(unwrap_descriptor(wrapper.__wrapped__))
    return cast(Callable[[], None], w.rebind(wrapper, pipeline))


def pipeline_of(fn: object) -> Pipeline:
    """Return the :class:`Pipeline` guarding a decorated function.

    Works on the decorated function, a method looked up on a class or an
    instance, and classmethod/staticmethod objects.

    Args:
        fn: A function decorated with ``resilient`` policies.

    Returns:
        Its pipeline; ``.policies`` lists the policies outermost first.

    Raises:
        TypeError: *fn* is not guarded by ``resilient``.
    """
    w = _classes
    seen = 0
    obj = fn
    while w is not None and seen < 8:  # no wrapper exists before the first decoration
        seen += 1
        if isinstance(obj, w.BoundWrapper):
            obj = obj._self_parent  # the decorated function's wrapper
        if isinstance(obj, w.Wrapper):
            found = obj._self_pipeline
            return cast(Pipeline, found)
        nxt = getattr(obj, "__func__", None)
        if nxt is None:
            break
        obj = nxt
    raise TypeError(f"{describe(fn, typed=False)} is not decorated with a resilient policy")
