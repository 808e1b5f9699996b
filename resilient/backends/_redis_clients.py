"""Pair a sync and an async Redis client for one :class:`RedisBackend`.

A breaker guards async functions (through ``redis.asyncio``) and sync ones
(through ``redis``), and its ``state``/``isolate()``/``reset()`` are sync.
Users usually have one client: the other is built from its connection
settings. The sync one is always built with socket timeouts equal to the
backend's budget and no retries, because a blocking call has no other way to
be bounded.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.asyncio.connection
import redis.connection
import redis.retry
from redis.backoff import NoBackoff

from resilient._numbers import describe

__all__ = ["async_twin", "is_async_client", "is_sync_client", "pair", "sync_twin"]

# Settings that mean the same to both client flavours; the rest (parsers,
# event handlers, retry objects) are flavour-specific.
_PORTABLE = ("host", "port", "db", "username", "password", "path", "client_name")
_CONNECTIONS = ("Connection", "SSLConnection", "UnixDomainSocketConnection")


def is_async_client(client: object) -> bool:
    """Return True for a ``redis.asyncio`` client (plain or cluster)."""
    return isinstance(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster))


def is_sync_client(client: object) -> bool:
    """Return True for a blocking ``redis`` client (plain or cluster)."""
    return isinstance(client, (redis.Redis, redis.RedisCluster))


def pair(
    client: Any,
    sync_client: Any,
    *,
    owner: str = "RedisBackend",
    sync_use: str = "sync functions and .state/.isolate()/.reset()",
) -> tuple[Any, Any]:
    """Check the clients a backend was given, at construction.

    Both flavours must be available: given, or buildable from the other's
    settings. Sentinel and Cluster clients cannot be copied, so with one of
    them the other flavour must be passed too; saying so here beats failing
    on the first call from the other kind of code.

    Args:
        client: The ``client`` argument (either flavour).
        sync_client: The ``sync_client`` argument, or None.
        owner: The backend class, for the error messages.
        sync_use: What the blocking client serves, for the error messages.

    Returns:
        The asyncio client (None: build it from the sync one on first use)
        and the client the blocking one is built from (or used as is).

    Raises:
        TypeError: A client is not a redis client, or a flavour can be
            neither used nor built.
    """
    if sync_client is not None and not is_sync_client(sync_client):
        raise TypeError(f"sync_client must be a blocking redis.Redis, got {describe(sync_client)}")
    if is_async_client(client):
        if sync_client is None and _settings(client) is None:
            raise TypeError(
                f"{owner} cannot build a blocking client from {type(client).__name__} (Sentinel "
                f"and Cluster clients cannot be copied) for {sync_use}: pass the blocking twin as "
                "well, sync_client=redis.RedisCluster(...) or redis.sentinel.Sentinel(...).master_for(...)"
            )
        return client, client if sync_client is None else sync_client
    if is_sync_client(client):
        if _settings(client) is None:
            raise TypeError(
                f"{owner} cannot build an asyncio client from {type(client).__name__} (Sentinel "
                "and Cluster clients cannot be copied) for async functions: pass the asyncio one "
                "as client= and this one as sync_client="
            )
        return None, client if sync_client is None else sync_client
    raise TypeError(f"client must be a redis.asyncio.Redis or redis.Redis, got {describe(client)}")


def _settings(client: Any) -> tuple[str, dict[str, Any]] | None:
    """Return the connection class name and portable settings, if they can be read."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or type(pool).__name__ not in ("ConnectionPool", "BlockingConnectionPool"):
        return None  # cluster, sentinel or a custom pool: not reproducible here
    cls_name = pool.connection_class.__name__
    if cls_name not in _CONNECTIONS:
        return None
    kwargs: dict[str, Any] = pool.connection_kwargs
    out = {k: kwargs[k] for k in _PORTABLE if k in kwargs}
    out.update({k: v for k, v in kwargs.items() if k.startswith("ssl_")})
    return cls_name, out


def sync_twin(client: Any, timeout: float) -> Any:
    """Return a blocking client for *client*'s server with *timeout* socket budgets.

    Args:
        client: A ``redis.Redis`` or ``redis.asyncio.Redis``.
        timeout: Seconds for connecting and for each reply.

    Returns:
        A new ``redis.Redis`` without retries, or *client* itself when it is
        a sync client whose settings cannot be copied (its own
        ``socket_timeout`` is then the budget).

    Raises:
        TypeError: *client* is async and its settings cannot be copied.
    """
    found = _settings(client)
    if found is None:
        if is_sync_client(client):
            return client
        raise TypeError(
            "RedisBackend cannot derive a sync client from this async client; "
            "pass sync_client=redis.Redis(..., socket_timeout=...) as well"
        )
    cls_name, settings = found
    no_retry = redis.retry.Retry(NoBackoff(), 0)
    pool = redis.ConnectionPool(
        connection_class=getattr(redis.connection, cls_name),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=no_retry,
        **settings,
    )
    return redis.Redis(connection_pool=pool, retry=no_retry)


def async_twin(client: Any) -> Any:
    """Return a ``redis.asyncio`` client for the sync *client*'s server.

    Args:
        client: A ``redis.Redis``.

    Returns:
        A new ``redis.asyncio.Redis`` (the backend bounds each call with
        ``asyncio.timeout``).

    Raises:
        TypeError: The settings of *client* cannot be copied.
    """
    found = _settings(client)
    if found is None:
        raise TypeError(
            "RedisBackend cannot derive an async client from this client; "
            "pass a redis.asyncio client as the first argument and this one as sync_client="
        )
    cls_name, settings = found
    pool = redis.asyncio.ConnectionPool(
        connection_class=getattr(redis.asyncio.connection, cls_name), **settings
    )
    return redis.asyncio.Redis(connection_pool=pool)
