"""Per-host politeness: ``{p}:host:{host}:not_before`` (Retry-After), ``:inflight`` (request slots),
``:wake`` (tokens that wake a waiter when a slot frees), ``:robots`` (the cached robots.txt)."""

from __future__ import annotations

from worker.store.base import StoreBase, text

# How long a wake-up token outlives its release when nobody is waiting for it.
WAKE_TOKEN_TTL = 30


class HostStore(StoreBase):
    def _host_key(self, host: str, what: str) -> str:
        return self._key("host", host, what)

    def defer_host(self, host: str, until: float, now: float) -> bool:
        """Nobody fetches from ``host`` before ``until``; keeps a later time already set."""
        ttl_ms = max(int((until - now) * 1000), 1) + 1000
        return bool(self._script("defer_host")(keys=[self._host_key(host, "not_before")],
                                               args=[repr(until), ttl_ms]))

    def host_not_before(self, host: str) -> float | None:
        value = self.redis.get(self._host_key(host, "not_before"))
        return float(value) if value else None

    def acquire_host_slot(self, host: str, token: str, limit: int, lease: float, now: float) -> bool | float:
        """Take one of ``limit`` request slots for ``host``, held until released or ``lease`` passes.

        True when taken, False when all are in use, or the host's "not before" epoch
        when it asked everyone to wait until later than ``now`` (no slot is taken then).
        """
        reply = text(self._script("acquire_slot")(
            keys=[self._host_key(host, "inflight"), self._host_key(host, "not_before")],
            args=[token, limit, repr(now), repr(lease)]))
        if reply in ("1", "0"):
            return reply == "1"
        return float(reply)

    def release_host_slot(self, host: str, token: str, limit: int = 1) -> None:
        """Give the slot back and wake one request waiting for the host (:meth:`wait_host_slot`)."""
        self._script("release_slot")(keys=[self._host_key(host, "inflight"), self._host_key(host, "wake")],
                                     args=[token, max(limit, 1), WAKE_TOKEN_TTL])

    def wait_host_slot(self, host: str, timeout: float) -> bool:
        """Block until a slot of ``host`` is released (True) or ``timeout`` seconds pass (False).

        A wake-up is a hint to try :meth:`acquire_host_slot` again, not a slot: another
        request may take it first. It blocks one connection of the client's pool.
        """
        return self.redis.blpop([self._host_key(host, "wake")], timeout=max(round(timeout, 3), 0.01)) is not None

    def host_inflight(self, host: str, now: float) -> int:
        """Unexpired slots held for ``host``."""
        return int(self.redis.zcount(self._host_key(host, "inflight"), f"({now!r}", "+inf"))

    def cached_robots(self, host: str) -> bytes | None:
        """The host's cached robots.txt (b"" means allow all), or None when not cached."""
        value = self.redis.get(self._host_key(host, "robots"))
        return bytes(value) if value is not None else None

    def cache_robots(self, host: str, body: bytes, ttl: int) -> None:
        self.redis.set(self._host_key(host, "robots"), body, ex=max(int(ttl), 1))
