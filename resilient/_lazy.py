"""Modules imported on first use, so that ``import resilient`` stays cheap.

asyncio takes longer to import than the rest of the package together, and
only async calls (and the clocks' async methods) need it: a sync program
never loads it, and an async one has it loaded before its first call. A
module that uses it writes::

    if TYPE_CHECKING:
        import asyncio
    else:
        asyncio = LazyModule("asyncio", globals())

and uses ``asyncio.X`` as usual, only inside functions. Modules that log
(only when something fails) write ``logger = LazyLogger("resilient")``:
``logging`` is imported by the first message.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LazyLogger", "LazyModule"]


class LazyModule:
    """Stands for a module in a namespace until an attribute of it is first read.

    The first read imports the module and puts it in its place in the
    namespace, so every later use there is a plain global lookup of the
    real module.

    Args:
        name: The module's name (also its name in *namespace*).
        namespace: The ``globals()`` of the module using it.
    """

    __slots__ = ("_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        self._name = name
        self._namespace = namespace

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        self._namespace[self._name] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


class LazyLogger:
    """``logging.getLogger(name)``, looked up (and ``logging`` imported) when a message is logged.

    Args:
        name: The logger's name.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy logger {self._name!r}>"
