"""What every part of the store shares: the client, the key namespace, the Lua scripts."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import redis
from redis.commands.core import Script

from worker.models import UpdatePolicy

NEAR_MODES = ("mark", "drop", "off")


@cache
def lua_source(name: str) -> str:
    """The text of ``worker/store/lua/{name}.lua`` (package data: it ships in the wheel)."""
    return files("worker.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def compact(key: str) -> bytes:
    """A hex digest key as its bytes (half the memory as a set member); any other key as UTF-8."""
    try:
        return bytes.fromhex(key)
    except ValueError:
        return key.encode("utf-8")


def text(value: Any) -> str:
    """A Redis reply value as ``str``."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class StoreBase:
    """The client and settings the key-family mixins of :class:`worker.store.Store` share."""

    def __init__(self, client: redis.Redis, *, stream: str = "articles", prefix: str = "feedstream",
                 claim_ttl: int = 90 * 24 * 3600, stream_maxlen: int = 100_000,
                 near_window: int = 30 * 24 * 3600, near_mode: str = "mark",
                 updates: UpdatePolicy | None = None) -> None:
        if near_mode not in NEAR_MODES:
            raise ValueError(f"near_mode must be one of {NEAR_MODES}, not {near_mode!r}")
        self.redis = client
        self.near_window = near_window
        self.near_mode = near_mode
        self.stream = stream
        self.prefix = prefix
        self.claim_ttl = claim_ttl
        self.stream_maxlen = stream_maxlen
        self.updates = updates or UpdatePolicy()
        self._scripts: dict[str, Script] = {}

    def _script(self, name: str) -> Script:
        """The script of ``lua/{name}.lua``, registered with this client on first use."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(lua_source(name))
        return script

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def due_key(self) -> str:
        return self._key("due")

    @property
    def counters_key(self) -> str:
        return self._key("counters")

    def feed_key(self, name: str) -> str:
        return self._key("feed", name)
