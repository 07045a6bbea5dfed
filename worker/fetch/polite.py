"""Fetching politely: every request of every worker goes through :class:`PoliteFetcher`.

It wraps the one :class:`~worker.fetch.client.HttpClient` with what is shared between
all workers on all machines, kept in Redis by :class:`~worker.store.Store`:

- a host's "not before" time, set from a 429/503 Retry-After: requests to that
  host raise :class:`HostDeferred` (callers defer, they do not fail) until then;
- at most ``host_concurrency`` requests in flight per host (a leased semaphore);
- robots.txt for article pages, fetched through the same client and cached per
  host with a TTL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from worker.errors import BlockedAddress, FetchError, HostDeferred, NotModified, RobotsDisallowed
from worker.fetch.client import HttpClient
from worker.fetch.robots import MAX_ROBOTS_BYTES, agent_token, parse_robots, robots_url, rules_allow
from worker.models import Fetched
from worker.pipeline.schedule import MAX_HINT
from worker.store import Store
from worker.timefmt import iso_from_epoch

# A request waiting for a host's slot is woken when one is released (Store.wait_host_slot);
# it looks again at least this often anyway, for a slot whose holder died lets its lease lapse
# without a release.
SLOT_RECHECK = 1.0
# How long an article page waits for a free slot on a busy host before it is deferred (held back
# and queued again) instead: a worker does not sit behind one slow or crowded host while the
# queue holds other hosts' pages.
PAGE_SLOT_WAIT = 5.0
# A robots.txt that could not be read (5xx, timeout) allows all, as Scrapy does,
# but is asked for again soon rather than after the full TTL.
ROBOTS_RETRY_TTL = 600
# How long a process reuses a host's parsed robots.txt before reading Redis's copy
# again: a batch's pages would otherwise each cost a round trip and a parse.
ROBOTS_MEMO_SECONDS = 60.0


def host_of(url: str) -> str:
    """The politeness key of ``url``: lower-case host and port, as in its netloc."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


class PoliteFetcher:
    """``get`` like HttpClient's, within per-host limits shared through Redis."""

    def __init__(self, http: HttpClient, store: Store, *, host_concurrency: int = 2,
                 robots: bool = True, robots_ttl: int = 86400, slot_wait: float | None = None,
                 page_slot_wait: float | None = None) -> None:
        self.http = http
        self.store = store
        self.host_concurrency = host_concurrency
        self.robots = robots
        self.robots_ttl = robots_ttl
        self.slot_wait = http.settings.deadline if slot_wait is None else slot_wait
        self.page_slot_wait = min(self.slot_wait, PAGE_SLOT_WAIT) if page_slot_wait is None else page_slot_wait
        # A slot outlives its request only if the worker died mid-request.
        self.lease = http.settings.deadline + 10
        self.agent = agent_token(http.settings.user_agent)
        self._robots_locks: dict[str, threading.Lock] = {}
        self._robots_memo: dict[str, tuple[float, RobotFileParser | None]] = {}  # host -> (read at, rules)
        self._locks_guard = threading.Lock()

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
            accept: str | None = None, page: bool = False, headers: Mapping[str, str] | None = None) -> Fetched:
        """Fetch ``url``; pages are checked against robots.txt first (RobotsDisallowed).

        Raises HostDeferred when the host is under a Retry-After or stays busy.
        ``headers``: the source's own request headers (never sent for robots.txt, which hosts share).
        """
        host = host_of(url)
        wait = self.page_slot_wait if page else self.slot_wait
        if page and self.robots and not self._robots_allow(url, host, wait):
            raise RobotsDisallowed(f"robots.txt of {host} disallows {url}", url=url)
        return self._request(url, host, wait, etag=etag, last_modified=last_modified, accept=accept, headers=headers)

    def _request(self, url: str, host: str, wait: float, **kwargs: Any) -> Fetched:
        token = uuid.uuid4().hex
        waited_until = time.monotonic() + wait
        while True:
            # one step: refused while the host's Retry-After lies ahead, else a slot if free
            taken = self.store.acquire_host_slot(host, token, self.host_concurrency, self.lease, time.time())
            if taken is True:
                break
            if taken is not False:
                raise HostDeferred(f"{host} asked us to wait until {_clock(taken)} (Retry-After)", url=url,
                                   until=taken)
            left = waited_until - time.monotonic()
            if left <= 0:
                raise HostDeferred(f"{host} already has {self.host_concurrency} requests in flight", url=url,
                                   until=time.time() + self.lease)
            self.store.wait_host_slot(host, min(left, SLOT_RECHECK))
        try:
            return self.http.get(url, **kwargs)
        except NotModified:
            raise
        except FetchError as exc:
            if exc.status in (429, 503) and exc.retry_after is not None:
                now = time.time()
                self.store.defer_host(host, now + min(exc.retry_after, MAX_HINT), now)
            raise
        finally:
            self.store.release_host_slot(host, token, self.host_concurrency)

    def _robots_lock(self, host: str) -> threading.Lock:
        with self._locks_guard:
            return self._robots_locks.setdefault(host, threading.Lock())

    def _robots_allow(self, url: str, host: str, wait: float) -> bool:
        memo = self._robots_memo.get(host)
        if memo is None or time.monotonic() - memo[0] > ROBOTS_MEMO_SECONDS:
            # Pages are prefetched in threads: let one of them read (or fetch) a host's robots.txt.
            with self._robots_lock(host):
                memo = self._robots_memo.get(host)
                if memo is None or time.monotonic() - memo[0] > ROBOTS_MEMO_SECONDS:
                    body = self.store.cached_robots(host)
                    if body is None:
                        body = self._fetch_robots(url, host, wait)
                    memo = (time.monotonic(), parse_robots(body))
                    self._robots_memo[host] = memo
        return rules_allow(memo[1], url, self.agent)

    def _fetch_robots(self, url: str, host: str, wait: float) -> bytes:
        ttl = self.robots_ttl
        try:
            body = self._request(robots_url(url), host, wait, accept="text/plain").body[:MAX_ROBOTS_BYTES]
        except (HostDeferred, BlockedAddress):
            raise  # the page itself would be refused for the same reason
        except FetchError as exc:
            # 4xx: no robots.txt, everything allowed (RFC 9309). Unreachable: allow, ask again soon.
            body = b""
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                ttl = ROBOTS_RETRY_TTL
        self.store.cache_robots(host, body, ttl)
        return body


def _clock(epoch: float) -> str:
    return iso_from_epoch(epoch)
