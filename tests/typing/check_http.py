"""Static typing of ``resilient.http`` and retry's result options: ``mypy --strict resilient tests/typing``.

Each ``# type: ignore[code]`` marks a line that MUST be an error.
"""

from __future__ import annotations

from typing import assert_type

import httpx

from resilient import Retry, backoff, fallback, retry
from resilient.http import (
    RetryableHTTPError,
    RetryableStatus,
    parse_retry_after,
    raise_for_retryable,
    retryable_status,
)

assert_type(parse_retry_after("1"), float | None)
assert_type(parse_retry_after(b"1", cap=60, now=lambda: 0.0), float | None)
assert_type(retryable_status({429}), RetryableStatus)
assert_type(RetryableHTTPError(503).retry_after, float | None)
parse_retry_after(1)  # type: ignore[arg-type]


def checked(response: httpx.Response) -> httpx.Response:
    """raise_for_retryable hands back the response with its own type."""
    same = raise_for_retryable(response, statuses={429, 503})
    assert_type(same, httpx.Response)
    return same


def result_delay(attempt: int, exc: BaseException | None, result: object) -> float:
    """A result-aware backoff."""
    return 1.0


def plain_delay(attempt: int, exc: BaseException | None) -> float:
    """The historical form."""
    return 1.0


assert_type(retry(on_result=retryable_status(), backoff=result_delay, long_retry_after="cap"), Retry)
assert_type(retry(backoff=plain_delay, long_retry_after="give_up"), Retry)
assert_type(retry(backoff=lambda attempt, exc, result: 0.5), Retry)
assert_type(retry(backoff=backoff.FromCallable(result_delay)), Retry)
retry(long_retry_after="wait")  # type: ignore[arg-type]
fallback(None, on_result=retryable_status({500, 503}))
