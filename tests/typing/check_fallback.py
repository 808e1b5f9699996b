"""Static typing of ``fallback``: run ``mypy --strict resilient tests/typing``.

A fallback answers with its default (or its handler's result) instead of
the function's, so the decorated function returns "the function's type or the
default's". When the default fits the declared return type, the decorated
function keeps that type exactly; when it does not (``@fallback(42)`` on
``-> str``), its type says so, and code that relies on ``str`` is an error.
Each ``# type: ignore[code]`` marks a line that MUST be an error
(``warn_unused_ignores``, part of ``--strict``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from resilient import Fallback, fallback, retry

# --- the factory infers the default's type --------------------------------------------


def cached_name(exc: Exception, user_id: int) -> str:
    """A sync handler."""
    return f"user-{user_id}"


async def cached_name_async(exc: Exception, user_id: int) -> str:
    """An async handler."""
    return f"user-{user_id}"


def any_handler(exc: Exception, *args: object, **kwargs: object) -> int:
    """A handler for anything, answering an int."""
    return 0


assert_type(fallback("cached"), Fallback[str])
assert_type(fallback(None), Fallback[None])
assert_type(fallback(cached_name), Fallback[str])
assert_type(fallback(cached_name_async), Fallback[str])
assert_type(fallback(any_handler, on=KeyError), Fallback[int])


# --- a default that fits keeps the exact type -------------------------------------------


@fallback("cached")
async def name(user_id: int) -> str:
    """Async, str default."""
    return str(user_id)


@fallback(None)
async def maybe_name(user_id: int) -> str | None:
    """Async, None default on an optional result."""
    return str(user_id)


@fallback(cached_name)
async def name_from_handler(user_id: int) -> str:
    """Async, sync handler."""
    return str(user_id)


@fallback(cached_name_async)
@retry(attempts=2)
async def name_from_async_handler(user_id: int) -> str:
    """Async, async handler, stacked."""
    return str(user_id)


@fallback(0)
def parse(text: str) -> int:
    """Sync, int default."""
    return int(text)


@fallback(0)
def parse_optional(text: str) -> int | None:
    """Sync, int default on an optional result."""
    return int(text) if text else None


async def uses_fitting_defaults() -> None:
    """The decorated functions keep their return types and parameters."""
    assert_type(await name(1), str)
    assert_type(await maybe_name(1), str | None)
    assert_type(await name_from_handler(1), str)
    assert_type(await name_from_async_handler(1), str)
    assert_type(parse("1"), int)
    assert_type(parse_optional("1"), int | None)
    keeps: Callable[[int], Coroutine[Any, Any, str]] = name
    assert keeps is name
    await name("1")  # type: ignore[arg-type]
    parse(1)  # type: ignore[arg-type]


# --- a default that does not fit shows in the type, and using it as the declared type fails ---


@fallback(42)
async def wrong_default(user_id: int) -> str:
    """Async, int default on a str function: may return 42."""
    return str(user_id)


@fallback(any_handler)
async def wrong_handler(user_id: int) -> str:
    """Async, int handler on a str function."""
    return str(user_id)


@fallback("zero")
def wrong_sync_default(text: str) -> int:
    """Sync, str default on an int function."""
    return int(text)


async def uses_wrong_defaults() -> None:
    """Code that trusts the declared type is rejected: the default can come back instead."""
    assert_type(await wrong_default(1), str | int)
    assert_type(await wrong_handler(1), str | int)
    assert_type(wrong_sync_default("1"), int | str)
    text: str = await wrong_default(1)  # type: ignore[assignment]
    other: str = await wrong_handler(1)  # type: ignore[assignment]
    number: int = wrong_sync_default("1")  # type: ignore[assignment]
    as_str: Callable[[int], Coroutine[Any, Any, str]] = wrong_default  # type: ignore[assignment]
    print(text, other, number, as_str)


# --- call(), methods -----------------------------------------------------------------------


def add(a: int, b: int) -> int:
    """Sync function for call()."""
    return a + b


async def add_async(a: int, b: int) -> int:
    """Async function for call()."""
    return a + b


async def uses_call() -> None:
    """call() types its result the same way."""
    assert_type(fallback(0).call(add, 1, 2), int)
    assert_type(await fallback(0).call(add_async, 1, 2), int)
    assert_type(fallback("none").call(add, 1, 2), int | str)
    assert_type(await fallback(None).call(add_async, 1, 2), int | None)
    fallback(0).call(add, 1, "2")  # type: ignore[call-overload]


class Repo:
    """Methods, classmethods and staticmethods keep their binding."""

    @fallback("unknown")
    async def get(self, key: int) -> str:
        """A method."""
        return str(key)

    @fallback(None)
    @classmethod
    async def build(cls, url: str) -> Repo | None:
        """Decorated above @classmethod."""
        return cls()

    @fallback(0)
    @staticmethod
    def version(major: int) -> int:
        """Decorated above @staticmethod."""
        return major


async def uses_methods(repo: Repo) -> None:
    """Bound methods drop self/cls and keep the result type."""
    assert_type(await repo.get(1), str)
    assert_type(await Repo.build("u"), Repo | None)
    assert_type(Repo.version(1), int)
    await repo.get("1")  # type: ignore[arg-type]


# --- on_result keeps the typing ---------------------------------------------------------


def is_empty(result: object) -> bool:
    """An on_result predicate."""
    return result == ""


def from_failure(exc: Exception, user_id: int) -> str:
    """A handler that also answers replaced results (exc is then a FailedResult)."""
    return f"user-{user_id}"


assert_type(fallback("cached", on_result=is_empty), Fallback[str])
assert_type(fallback(from_failure, on=(), on_result=is_empty), Fallback[str])


@fallback("anonymous", on_result=is_empty)
async def display_name(user_id: int) -> str:
    """Async, value default, result check."""
    return ""


@fallback(from_failure, on_result=is_empty)
def display_name_sync(user_id: int) -> str:
    """Sync, handler, result check."""
    return ""


@fallback(0, on_result=is_empty)
async def wrong_on_result_default(user_id: int) -> str:
    """An int default for a str function: still visible with on_result."""
    return ""


async def uses_on_result() -> None:
    """on_result changes nothing in the types: fitting defaults keep them, others widen them."""
    assert_type(await display_name(1), str)
    assert_type(display_name_sync(1), str)
    assert_type(await wrong_on_result_default(1), str | int)
    await display_name("1")  # type: ignore[arg-type]
    fallback("x", on_result=3)  # type: ignore[call-overload]
