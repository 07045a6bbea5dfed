"""Redis clients: one that rides out restarts, one that answers health checks promptly."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def connect(url: str) -> redis.Redis:
    """A Redis client that rides out a server restart by retrying with backoff."""
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=15,
        socket_connect_timeout=5,
        socket_keepalive=True,
    )


def connect_quick(url: str) -> redis.Redis:
    """A client that fails fast instead of retrying: for health checks, which must answer promptly."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
