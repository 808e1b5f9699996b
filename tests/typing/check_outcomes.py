"""Static typing of outcomes: run ``mypy --strict resilient tests/typing``.

``gather_outcomes(a, b)`` is a tuple whose positions keep their types;
``Outcome[T].unwrap()`` is a ``T``; ``.value`` may be None. Each
``# type: ignore[code]`` marks a line that MUST be an error.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Never, assert_type

from resilient import Outcome, gather_outcomes, outcome


async def number() -> int:
    """An int."""
    return 1


async def text() -> str:
    """A str."""
    return "a"


async def nothing() -> None:
    """None."""


async def uses_outcome() -> None:
    """outcome() keeps the awaited type."""
    got = await outcome(number())
    assert_type(got, Outcome[int])
    assert_type(got.unwrap(), int)
    assert_type(got.value, int | None)
    assert_type(got.exception, Exception | None)
    assert_type(got.ok, bool)
    as_int: int = got.value  # type: ignore[assignment]
    print(as_int)
    await outcome(number)  # type: ignore[arg-type]


async def uses_gather() -> None:
    """Each position keeps its own type; many of one type give a homogeneous tuple."""
    a, b, c = await gather_outcomes(number(), text(), nothing())
    assert_type(a, Outcome[int])
    assert_type(b, Outcome[str])
    assert_type(c, Outcome[None])
    assert_type(await gather_outcomes(), tuple[()])
    six = await gather_outcomes(number(), number(), number(), number(), number(), text())
    assert_type(six[5], Outcome[str])
    coros: list[Coroutine[Any, Any, int]] = [number() for _ in range(10)]
    many = await gather_outcomes(*coros)
    assert_type(many, tuple[Outcome[int], ...])
    seven = await gather_outcomes(number(), number(), number(), number(), number(), number(), number())
    assert_type(seven, tuple[Outcome[int], ...])
    x, y = await gather_outcomes(number(), text())
    wrong: str = x.unwrap()  # type: ignore[assignment]
    print(y, wrong)
    await gather_outcomes(1)  # type: ignore[call-overload]


def builds() -> None:
    """Outcomes built by hand: a failure fits any outcome type."""
    ok = Outcome(3)
    assert_type(ok, Outcome[int])
    failed = Outcome(exception=ValueError("x"))
    assert_type(failed, Outcome[Never])
    as_int: Outcome[int] = failed
    as_str: Outcome[str] = ok  # type: ignore[assignment]
    print(as_int, as_str)
    Outcome(exception=KeyboardInterrupt())  # type: ignore[call-overload]
