"""Per-host politeness: ``{p}:host:{host}:not_before`` (Retry-After), ``:inflight`` (request slots),
``:robots`` (the cached robots.txt)."""

from __future__ import annotations

from worker.store.base import StoreBase, text


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

    def release_host_slot(self, host: str, token: str) -> None:
        self.redis.zrem(self._host_key(host, "inflight"), token)

    def host_inflight(self, host: str, now: float) -> int:
        """Unexpired slots held for ``host``."""
        return int(self.redis.zcount(self._host_key(host, "inflight"), f"({now!r}", "+inf"))

    def cached_robots(self, host: str) -> bytes | None:
        """The host's cached robots.txt (b"" means allow all), or None when not cached."""
        value = self.redis.get(self._host_key(host, "robots"))
        return bytes(value) if value is not None else None

    def cache_robots(self, host: str, body: bytes, ttl: int) -> None:
        self.redis.set(self._host_key(host, "robots"), body, ex=max(int(ttl), 1))
