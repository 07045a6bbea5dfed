"""What every part of the store shares: the client, the key namespace, the Lua scripts."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import redis
from redis.commands.core import Script

from worker.models import UpdatePolicy

NEAR_MODES = ("mark", "drop", "off")
BOILERPLATE_TTL = 30 * 24 * 3600  # how long a feed remembers a paragraph it published


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
                 updates: UpdatePolicy | None = None, publish_client: redis.Redis | None = None,
                 boilerplate_ttl: int = BOILERPLATE_TTL) -> None:
        if near_mode not in NEAR_MODES:
            raise ValueError(f"near_mode must be one of {NEAR_MODES}, not {near_mode!r}")
        self.redis = client  # queues and feed state (RQ, the schedule, poll state, hosts)
        # publishing state (claims, near-duplicate index, boilerplate, the stream and its feeds-out
        # indexes): the same server unless FEEDSTREAM_PUBLISH_REDIS_URL names another
        self.publishing = publish_client if publish_client is not None else client
        self.boilerplate_ttl = boilerplate_ttl
        self.near_window = near_window
        self.near_mode = near_mode
        self.stream = stream
        self.prefix = prefix
        self.claim_ttl = claim_ttl
        self.stream_maxlen = stream_maxlen
        self.updates = updates or UpdatePolicy()
        self._scripts: dict[str, Script] = {}

    @property
    def split(self) -> bool:
        """True when publishing state lives on a Redis of its own."""
        return self.publishing is not self.redis

    def _script(self, name: str, publishing: bool = False) -> Script:
        """The script of ``lua/{name}.lua``, registered on first use with the client whose keys it touches."""
        key = f"{name}@publishing" if publishing else name
        script = self._scripts.get(key)
        if script is None:
            client = self.publishing if publishing else self.redis
            script = self._scripts[key] = client.register_script(lua_source(name))
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

    def out_index_key(self, kind: str, value: str = "") -> str:
        """The feeds-out index of all articles (``all``), a feed's (``feed``) or a tag's (``tag``)."""
        return self._key("out", "all") if kind == "all" else self._key("out", kind, value)

    @property
    def out_since_key(self) -> str:
        return self._key("out", "since")
