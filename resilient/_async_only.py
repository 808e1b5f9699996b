"""``AsyncOnlyPolicy``: the base of the policies that guard coroutine functions only (timeout, hedge)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar, overload

from ._pipeline import Policy

__all__ = ["AsyncOnlyPolicy"]

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")


class AsyncOnlyPolicy(Policy):
    """A policy that cannot guard a sync function: refused when decorated, and for type checkers.

    Subclasses still implement :meth:`wrap_sync` (to raise); they may
    override :meth:`check_sync` to explain the refusal in their own words.
    """

    supports_sync: ClassVar[bool] = False

    if TYPE_CHECKING:
        # Narrower static signatures than Policy's: only coroutine functions,
        # so `@timeout(1)` or `@hedge()` on a sync function is a type error as
        # well as a TypeError at decoration time. The runtime methods are Policy's.
        @overload  # type: ignore[override]
        def __call__(
            self, fn: classmethod[C, P, Coroutine[Any, Any, T]]
        ) -> classmethod[C, P, Coroutine[Any, Any, T]]: ...
        @overload
        def __call__(
            self, fn: staticmethod[P, Coroutine[Any, Any, T]]
        ) -> staticmethod[P, Coroutine[Any, Any, T]]: ...
        @overload
        def __call__(
            self, fn: Callable[P, Coroutine[Any, Any, T]]
        ) -> Callable[P, Coroutine[Any, Any, T]]: ...
        def __call__(self, fn: Any) -> Any: ...

        def call(  # type: ignore[override]
            self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, T]: ...
