"""``@dataclass(frozen=True, slots=True, kw_only=True)``, made cheap to import.

``dataclasses.dataclass`` compiles six methods per class with ``exec`` when
the class is defined: about half a millisecond a class, and the events alone
are seventeen classes, a third of what ``import resilient`` used to cost.
For exactly those options, :func:`dataclass` here builds the same class
(fields, slots, frozen attributes, ``__match_args__``, pickling,
``__dataclass_params__``) but compiles ``__init__``, ``__repr__``,
``__eq__`` and ``__hash__`` the first time the class uses one of them: by
applying ``dataclasses.dataclass`` to a twin class with the same fields and
taking its methods, so they are exactly the standard ones. Until then each
is a small stand-in (with the real signature) that compiles them and calls
the real one; a stand-in replaced meanwhile (say, by a test's monkeypatch)
keeps its replacement. Any other options go to ``dataclasses.dataclass``.

Modules import it so that type checkers and documentation tools see the
standard decorator::

    if not TYPE_CHECKING:
        from ._dataclass import dataclass
    if TYPE_CHECKING:
        from dataclasses import dataclass

It takes plain fields (with defaults or ``field(...)``) and a docstring;
anything more (``__post_init__``, ``InitVar``, ``ClassVar``,
``field(init=False)``) is a ``TypeError``: those classes can use
``dataclasses.dataclass`` itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["dataclass"]

_FAST = {"frozen": True, "slots": True, "kw_only": True}
_LAZY = ("__init__", "__repr__", "__eq__", "__hash__")
_lock = threading.Lock()
_compiled: dict[type, dict[str, Callable[..., Any]]] = {}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Params:
    """What ``__dataclass_params__`` says of every class made here."""


_PARAMS = _Params.__dataclass_params__  # type: ignore[attr-defined]


@dataclasses.dataclass(slots=True, kw_only=True)
class _Unfrozen:
    """The same parameters, unfrozen: what our bases show while a subclass is built."""


_UNFROZEN = _Unfrozen.__dataclass_params__  # type: ignore[attr-defined]


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    # As @dataclass(frozen=True)'s own: a field cannot be assigned.
    if name in type(self).__dataclass_fields__:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    if name in type(self).__dataclass_fields__:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


def _getstate(self: Any) -> list[Any]:
    # Pickling a frozen slotted class: its fields' values, set back below
    # without the frozen __setattr__ (as dataclasses does).
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)


def dataclass(cls: type | None = None, /, **options: Any) -> Any:
    """``dataclasses.dataclass``; for ``frozen=True, slots=True, kw_only=True``, compiled on first use.

    Args:
        cls: The class, when used without arguments.
        **options: ``dataclasses.dataclass``'s keyword arguments.

    Returns:
        The dataclass, or a decorator making one.
    """
    if cls is not None or options != _FAST:
        return dataclasses.dataclass(cls, **options)
    return _frozen


def _frozen(cls: type) -> type:
    """Make *cls* a frozen, slotted, keyword-only dataclass; compile its methods on first use."""
    if not cls.__doc__:
        raise TypeError(f"{cls.__qualname__} needs a docstring (or dataclasses.dataclass)")
    # dataclasses compiles a __setattr__/__delattr__ pair with exec for every
    # frozen class (over half of the cost): build the class unfrozen, with
    # our frozen bases seen as unfrozen meanwhile, then give it the shared
    # frozen methods below and the frozen parameters.
    ours = [b for b in cls.__mro__[1:] if b.__dict__.get("__dataclass_params__") is _PARAMS]
    for base in ours:
        base.__dataclass_params__ = _UNFROZEN  # type: ignore[attr-defined]
    try:
        built: Any = dataclasses.dataclass(slots=True, kw_only=True, init=False, repr=False, eq=False)(cls)
    finally:
        for base in ours:
            base.__dataclass_params__ = _PARAMS  # type: ignore[attr-defined]
    built.__setattr__ = _frozen_setattr
    built.__delattr__ = _frozen_delattr
    built.__getstate__ = _getstate
    built.__setstate__ = _setstate
    fields = dataclasses.fields(built)
    if (
        len(fields) != len(built.__dataclass_fields__)
        or not all(f.init for f in fields)
        or hasattr(built, "__post_init__")
    ):
        raise TypeError(f"{cls.__qualname__} has more than plain fields: use dataclasses.dataclass")
    built.__dataclass_params__ = _PARAMS
    for name in _LAZY:
        setattr(built, name, _stand_in(built, name, fields))
    return built  # type: ignore[no-any-return]


def _stand_in(owner: type, name: str, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., Any]:
    def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return _methods(owner)[name](self, *args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"{owner.__qualname__}.{name}"
    if name == "__init__":
        # What inspect.signature(cls) shows before the real __init__ exists.
        params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default,
                annotation=f.type,
            )
            for f in fields
        ]
        method.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    return method


def _methods(owner: type) -> dict[str, Callable[..., Any]]:
    """*owner*'s real methods, compiled on first use and put in place of its stand-ins."""
    found = _compiled.get(owner)
    if found is not None:
        return found
    with _lock:
        found = _compiled.get(owner)
        if found is None:
            found = _compile(owner)
            for name, fn in found.items():
                if getattr(owner.__dict__.get(name), "__code__", None) is _STAND_IN_CODE:
                    setattr(owner, name, fn)  # a replacement (a test's spy) keeps its place
            _compiled[owner] = found
    return found


def _compile(owner: type) -> dict[str, Callable[..., Any]]:
    """``@dataclass``'s methods for *owner*'s fields, made on a twin class."""
    namespace: dict[str, Any] = {
        "__annotations__": {},
        "__module__": owner.__module__,
        "__qualname__": owner.__qualname__,
    }
    for f in dataclasses.fields(owner):
        namespace["__annotations__"][f.name] = f.type
        namespace[f.name] = dataclasses.field(
            default=f.default,
            default_factory=f.default_factory,
            repr=f.repr,
            hash=f.hash,
            compare=f.compare,
            metadata=f.metadata,
            kw_only=True,
        )
    twin: Any = dataclasses.dataclass(frozen=True, kw_only=True)(type(owner.__name__, (), namespace))
    return {name: twin.__dict__[name] for name in _LAZY}


_STAND_IN_CODE = _stand_in(_Params, "__repr__", ()).__code__
