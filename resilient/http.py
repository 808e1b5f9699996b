"""HTTP ``Retry-After``: parse it, carry it on an exception, honour it in ``retry``.

A server that answers ``429 Too Many Requests`` or ``503 Service
Unavailable`` often says when to come back, in a ``Retry-After`` header:
seconds (``Retry-After: 120``) or an HTTP-date (``Retry-After: Wed, 21 Oct
2015 07:28:00 GMT``). This module reads it from any response object that
has ``status_code`` (httpx, requests) or ``status`` (aiohttp, urllib3,
``http.client``) and ``headers``, without importing any HTTP client:

- :func:`parse_retry_after` turns a header value into seconds, capped, or
  None for a missing or malformed value;
- :func:`retry_after_of` reads it from a response;
- :func:`raise_for_retryable` raises :class:`RetryableHTTPError` (with
  ``.status``, ``.response`` and ``.retry_after``) for a retryable status,
  so ``retry(on=RetryableHTTPError)`` waits at least what the server asked;
- :func:`retryable_status` builds an ``on_result`` predicate for ``retry``
  and ``fallback`` that also hands ``retry`` the response's hint.

An HTTP-date is converted to seconds against the wall clock
(``time.time()``), the one place in ``resilient`` where wall-clock time is
read: the server names a moment in calendar time, and only the calendar
clock can say how far off it is. Pass ``now=`` (a function returning epoch
seconds) to pin it in tests. Clock skew between client and server shifts
such hints; delta-seconds have no such problem.

::

    RetryableHTTPError(Exception)   .status  .response  .retry_after
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar, cast

from ._arity import sync_callable as _sync_callable
from ._numbers import describe as _describe
from ._numbers import plain_number as _plain_number

__all__ = [
    "DEFAULT_CAP",
    "RETRYABLE_STATUSES",
    "RetryableHTTPError",
    "RetryableStatus",
    "parse_retry_after",
    "raise_for_retryable",
    "retry_after_of",
    "retryable_status",
]

_R = TypeVar("_R")

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 503})
"""The statuses that mean "come back later": 429 Too Many Requests and 503 Service Unavailable."""

DEFAULT_CAP = 300.0
"""The longest hint returned by default, in seconds (five minutes).

Longer than any interactive caller waits, so ``retry`` still sees a long
hint as long (and gives up when it exceeds the backoff's ``max_delay``);
short enough that a broken or hostile header cannot park a worker for
hours when the backoff has no cap. Raise it for batch jobs.
"""

# RFC 9110 delay-seconds is 1*DIGIT; a decimal fraction is accepted too
# (some servers send one). No sign, exponent, underscore, "inf" or "nan":
# float() would take all of those.
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")
_HEADER = "Retry-After"


def _check_cap(cap: object) -> float:
    # Read through the base type (a subclass's comparisons and __float__ may lie).
    number = _plain_number(cap)
    if number is None:
        raise TypeError(f"cap must be a number of seconds, got {_describe(cap)}")
    try:
        seconds = float(number)
    except OverflowError:  # an int beyond any float
        raise ValueError("cap must be a finite number of seconds >= 0, got a huge integer") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cap must be a finite number of seconds >= 0, got {seconds!r}")
    return seconds + 0.0  # -0.0 -> 0.0: a hint is never negative zero


def _check_now(now: object) -> Callable[[], float] | None:
    if now is None:
        return None
    if not _sync_callable(now, 0):
        raise TypeError(f"now must be a function returning epoch seconds (time.time), got {_describe(now)}")
    return cast("Callable[[], float]", now)


def parse_retry_after(
    value: str | bytes | None, *, cap: float = DEFAULT_CAP, now: Callable[[], float] | None = None
) -> float | None:
    """Return the seconds a ``Retry-After`` header value asks to wait, or None.

    Delta-seconds (``"120"``, or ``"1.5"``) are taken as they are. An
    HTTP-date is converted against ``now()`` (default ``time.time()``, the
    wall clock): a date in the past means "retry now", ``0.0``. Hints longer
    than *cap* are cut to *cap*. A missing, empty, negative or malformed
    value (``"-1"``, ``"1e3"``, ``"soon"``, an impossible date) is ignored:
    None, as if there were no header.

    Args:
        value: The header's value (``str`` or ``bytes``), or None.
        cap: The longest hint returned, in seconds (>= 0).
        now: Returns the current wall-clock time in epoch seconds; only an
            HTTP-date reads it.

    Returns:
        Seconds in ``[0, cap]``, or None.

    Raises:
        TypeError: *cap* is not a number or *now* not callable.
        ValueError: *cap* is negative, NaN or infinite.
    """
    limit = cap if cap is DEFAULT_CAP else _check_cap(cap)
    if now is not None:
        _check_now(now)
    return _parse(value, limit, now)


def _parse(value: object, cap: float, now: Callable[[], float] | None) -> float | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY.match(text):
        seconds: float | None = float(text)  # digits only: inf for absurd lengths, never an error
    else:
        seconds = _seconds_until(text, now)
    if seconds is None:
        return None
    return min(max(0.0, seconds), cap)


def _seconds_until(text: str, now: Callable[[], float] | None) -> float | None:
    # email.utils is imported on first use: most servers send delta-seconds,
    # and it pulls in a dozen modules.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP-date is always UTC
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    try:
        target = when.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
    current = time.time() if now is None else now()
    seconds = target - float(current)
    return seconds if not math.isnan(seconds) else None


def _status(response: object) -> int | None:
    status = getattr(response, "status_code", None)  # httpx, requests
    if status is None:
        status = getattr(response, "status", None)  # aiohttp, urllib3, http.client
    if type(status) is int:
        return status
    if isinstance(status, int) and not isinstance(status, bool):  # an IntEnum (HTTPStatus)
        return int(status)
    return None


def _header(response: object) -> object:
    headers = getattr(response, "headers", None)
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get(_HEADER)
    if value is None:  # a plain dict is case-sensitive
        value = get(_HEADER.lower())
    return value


def retry_after_of(
    response: object, *, cap: float = DEFAULT_CAP, now: Callable[[], float] | None = None
) -> float | None:
    """Return the ``Retry-After`` hint of an HTTP response, in seconds, or None.

    Works with any object whose ``headers`` has a ``get`` method (httpx,
    aiohttp, requests, ``http.client``); see :func:`parse_retry_after` for
    how the value is read.

    Args:
        response: The response.
        cap: The longest hint returned, in seconds.
        now: Returns the wall-clock time in epoch seconds (for an HTTP-date).

    Returns:
        Seconds in ``[0, cap]``, or None without a usable header.

    Raises:
        TypeError: *cap* is not a number or *now* not callable.
        ValueError: *cap* is negative, NaN or infinite.
    """
    limit = cap if cap is DEFAULT_CAP else _check_cap(cap)
    if now is not None:
        _check_now(now)
    return _parse(_header(response), limit, now)


def _check_statuses(statuses: object) -> frozenset[int]:
    if isinstance(statuses, (str, bytes, int)) or not isinstance(statuses, Iterable):
        raise TypeError(f"statuses must be a collection of status codes, got {_describe(statuses)}")
    found: set[int] = set()
    for status in statuses:
        # Read through the base type: an int subclass's comparisons and hash may lie.
        code = _plain_number(status)
        if type(code) is not int:
            raise TypeError(f"statuses must hold int status codes, got {_describe(status)}")
        if not 100 <= code <= 599:
            raise ValueError(f"statuses must hold status codes in 100..599, got {_describe(status)}")
        found.add(code)
    if not found:
        raise ValueError("statuses must name at least one status code")
    return frozenset(found)


class RetryableHTTPError(Exception):
    """The server answered with a status worth retrying (429 or 503 by default).

    Raised by :func:`raise_for_retryable`. ``retry`` waits at least
    ``retry_after`` seconds before the next attempt (see ``retry``'s
    Retry-After rule). Not a :class:`resilient.ResilientError`: it reports
    the dependency's answer, so a circuit breaker counts it as a failure
    (this library's own errors with a ``retry_after`` are neutral there).

    Args:
        status: The HTTP status code.
        retry_after: Seconds the server asked to wait, or None.
        response: The response object, or None.

    Attributes:
        status: The HTTP status code.
        retry_after: Seconds the server asked to wait, or None.
        response: The response object, or None.
    """

    status: int
    retry_after: float | None
    response: Any

    def __init__(self, status: int, retry_after: float | None = None, response: Any = None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.response = response
        try:
            phrase = f" {HTTPStatus(status).phrase}"
        except ValueError:
            phrase = ""
        message = f"server answered {status}{phrase}"
        if retry_after is not None:
            message += f"; retry after {retry_after:g}s"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[RetryableHTTPError], tuple[int, float | None, Any]]:
        return (type(self), (self.status, self.retry_after, self.response))


def raise_for_retryable(
    response: _R,
    *,
    statuses: Iterable[int] = RETRYABLE_STATUSES,
    cap: float = DEFAULT_CAP,
    now: Callable[[], float] | None = None,
) -> _R:
    """Raise :class:`RetryableHTTPError` if *response* has a retryable status; else return it.

    Like httpx's ``raise_for_status()``, but only for the statuses a retry
    can fix, and with the server's ``Retry-After`` attached::

        response = raise_for_retryable(await client.get(url))

    Args:
        response: An HTTP response (``status_code`` or ``status``, and ``headers``).
        statuses: The status codes to raise for.
        cap: The longest ``retry_after`` reported, in seconds.
        now: Returns the wall-clock time in epoch seconds (for an HTTP-date).

    Returns:
        *response*, when its status is not retryable.

    Raises:
        RetryableHTTPError: The status is in *statuses*.
        TypeError: *response* has no integer status, or a parameter has the wrong type.
        ValueError: A parameter is out of range.
    """
    wanted = RETRYABLE_STATUSES if statuses is RETRYABLE_STATUSES else _check_statuses(statuses)
    limit = cap if cap is DEFAULT_CAP else _check_cap(cap)
    if now is not None:
        _check_now(now)
    status = _status(response)
    if status is None:
        raise TypeError(f"{_describe(response)} has no integer status_code or status: not an HTTP response")
    if status in wanted:
        raise RetryableHTTPError(status, _parse(_header(response), limit, now), response)
    return response


class RetryableStatus:
    """An ``on_result`` predicate: True for a response whose status is retryable.

    Built by :func:`retryable_status`. Besides answering ``retry``'s (and
    ``fallback``'s) question, it tells ``retry`` how long the server asked to
    wait through :meth:`retry_after`, which ``retry`` honours for a result
    exactly as an exception's ``retry_after``.

    Attributes:
        statuses: The status codes it matches.
        cap: The longest hint :meth:`retry_after` returns, in seconds.
    """

    __slots__ = ("_now", "cap", "statuses")

    def __init__(
        self,
        statuses: Iterable[int] = RETRYABLE_STATUSES,
        *,
        cap: float = DEFAULT_CAP,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.statuses = _check_statuses(statuses)
        self.cap = _check_cap(cap)
        self._now = _check_now(now)

    def __call__(self, response: object) -> bool:
        """Return True if *response*'s status is one of :attr:`statuses`.

        Args:
            response: An HTTP response.

        Returns:
            Whether to retry (or fall back).

        Raises:
            TypeError: *response* has no integer ``status_code`` or ``status``.
        """
        status = _status(response)
        if status is None:
            raise TypeError(
                f"{_describe(response)} has no integer status_code or status: not an HTTP response"
            )
        return status in self.statuses

    def retry_after(self, response: object) -> float | None:
        """Return the seconds *response*'s ``Retry-After`` asks to wait, or None.

        Args:
            response: An HTTP response.

        Returns:
            Seconds in ``[0, cap]``, or None.
        """
        return _parse(_header(response), self.cap, self._now)

    def __repr__(self) -> str:
        return f"retryable_status({sorted(self.statuses)!r}, cap={self.cap:g})"


def retryable_status(
    statuses: Iterable[int] = RETRYABLE_STATUSES,
    *,
    cap: float = DEFAULT_CAP,
    now: Callable[[], float] | None = None,
) -> RetryableStatus:
    """Return an ``on_result`` predicate matching responses with a retryable status.

    ``retry(on_result=retryable_status())`` retries a 429 or 503 answer and
    waits at least its ``Retry-After`` (a result retry honours the hint as an
    exception's ``retry_after`` is); ``fallback(default,
    on_result=retryable_status({500, 502, 503, 504}))`` answers such
    responses with the default.

    Args:
        statuses: The status codes that match (default 429 and 503).
        cap: The longest hint passed to ``retry``, in seconds.
        now: Returns the wall-clock time in epoch seconds (for an HTTP-date).

    Returns:
        The predicate.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: *statuses* is empty or holds a number outside 100..599,
            or *cap* is negative.
    """
    return RetryableStatus(statuses, cap=cap, now=now)
