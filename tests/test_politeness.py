"""Per-feed status handling, host politeness and robots.txt, through the real pipeline.

Real Redis, real RQ workers, real HTTP on loopback (tests.site); nothing mocked.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.fetch import HttpClient, HttpSettings, PoliteFetcher, host_of
from worker.jobs import poll_feed
from worker.ops.scheduler import run_forever
from worker.pipeline.context import install_context
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE
from worker.store import Store


def serve_stories(site: Site, numbers: range, prefix: str = "/news") -> list[tuple[Any, str]]:
    items = []
    for n in numbers:
        s = story(n)
        items.append((s, site.add(f"{prefix}/{s.slug}/", telecoms_page(s))))
    return items


def redirect_to(site: Site, path: str, location: str, status: int) -> str:
    return site.add(path, b"", status=status, headers={"Location": location})


# -- 301/308: adopted once the move has held ------------------------------------------------

@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_is_adopted_after_three_polls(site: Site, redis_client: redis.Redis, redis_url: str,
                                                         feeds_file: Path, status: int) -> None:
    items = serve_stories(site, range(200, 202))
    # With an ETag, polls 2 and 3 end in 304s: the move must be counted on those too.
    new = site.add("/new.xml", rss2("F", items), "application/rss+xml", headers={"ETag": '"n1"'})
    old = redirect_to(site, "/old.xml", new, status)
    temp_target = site.add("/temp-target.xml", rss2("T", []), "application/rss+xml")
    temp = redirect_to(site, "/temp.xml", temp_target, 302)
    context = make_context(redis_url, write_feeds(feeds_file, {"moved": old, "temp": temp}))

    for poll in (1, 2):
        run_burst(context)
        state = context.store.feed_status("moved")
        assert state["moved_to"] == new and state["moved_polls"] == str(poll)
        assert "adopted_url" not in state
    assert context.store.feed_status("moved")["last_status"] == "304"
    run_burst(context)
    state = context.store.feed_status("moved")
    assert state["adopted_url"] == new and state["adopted_from"] == old and state["last_status"] == "304"
    assert "moved_to" not in state
    old_hits = len(site.hits("/old.xml"))
    assert old_hits == 3

    run_burst(context)
    assert len(site.hits("/old.xml")) == old_hits  # polled at its new home now
    assert context.store.feed_status("moved")["url"] == new
    assert len(articles(redis_client)) == 2
    # A temporary redirect is followed but never recorded as a move.
    assert not {"moved_to", "adopted_url"} & set(context.store.feed_status("temp"))


def test_a_move_that_does_not_hold_is_forgotten(site: Site, redis_client: redis.Redis, redis_url: str,
                                                feeds_file: Path) -> None:
    feed_body = rss2("F", [])
    new = site.add("/new.xml", feed_body, "application/rss+xml")
    old = redirect_to(site, "/old.xml", new, 301)
    context = make_context(redis_url, write_feeds(feeds_file, {"f": old}))
    run_burst(context)
    run_burst(context)
    assert context.store.feed_status("f")["moved_polls"] == "2"
    site.add("/old.xml", feed_body, "application/rss+xml")  # the publisher undid the move
    run_burst(context)
    assert not {"moved_to", "moved_polls", "adopted_url"} & set(context.store.feed_status("f"))


# -- 410: retired --------------------------------------------------------------------------

def test_410_retires_the_feed_and_other_feeds_go_on(site: Site, redis_client: redis.Redis, redis_url: str,
                                                    feeds_file: Path) -> None:
    items = serve_stories(site, range(210, 212))
    feeds = {"gone": site.add("/gone.xml", "gone", status=410),
             "good": site.add("/feed.xml", rss2("F", items), "application/rss+xml")}
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    context.store.sync_feeds(list(feeds), time.time())
    run_burst(context)

    state = context.store.feed_status("gone")
    assert state["retired"].startswith("gone: fetch: HTTP 410 Gone")
    assert state["last_error"].startswith("fetch: HTTP 410")
    assert context.store.due_times()["gone"] == math.inf
    assert context.store.claim_due(time.time() + 10 * 365 * 86400, 60) == ["good"]
    run_burst(context)  # even when asked directly, a retired feed is not fetched again
    assert len(site.hits("/gone.xml")) == 1
    assert FailedJobRegistry(POLL_QUEUE, connection=redis_client).count == 0
    assert len(articles(redis_client)) == 2


# -- 429/503 Retry-After: the whole host waits ------------------------------------------------

@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "date"])
def test_retry_after_pushes_the_poll_and_defers_the_whole_host(site: Site, redis_client: redis.Redis,
                                                               redis_url: str, feeds_file: Path,
                                                               status: int, form: str) -> None:
    now = time.time()
    value = "120" if form == "seconds" else email.utils.formatdate(now + 120, usegmt=True)
    feeds = {"busy": site.add("/busy.xml", "slow down", status=status, headers={"Retry-After": value}),
             "sibling": site.add("/sibling.xml", rss2("S", []), "application/rss+xml")}
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    context.store.sync_feeds(list(feeds), now)
    run_burst(context)  # "busy" is polled first and sets the host's not-before

    busy = context.store.feed_status("busy")
    assert busy["consecutive_errors"] == "1" and busy["last_error"].startswith(f"fetch: HTTP {status}")
    due = context.store.due_times()
    assert due["busy"] >= now + 115
    assert context.store.host_not_before(host_of(site.base)) >= now + 115
    # The sibling on the same host was deferred, not failed, and never requested.
    sibling = context.store.feed_status("sibling")
    assert "Retry-After" in sibling["deferred"]
    assert sibling.get("consecutive_errors", "0") == "0" and "last_error" not in sibling
    assert due["sibling"] >= now + 115
    assert site.hits("/sibling.xml") == []


def test_pages_of_a_deferred_host_are_held_back_not_lost(site: Site, redis_client: redis.Redis, redis_url: str,
                                                         feeds_file: Path) -> None:
    items = serve_stories(site, range(220, 223))
    feed = site.add("/feed.xml", rss2("F", items), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}))
    install_context(context)
    assert poll_feed("f")["new"] == 3
    now = time.time()
    context.store.defer_host(host_of(site.base), now + 90, now)
    worker = SimpleWorker([Queue(EXTRACT_QUEUE, connection=redis_client)], connection=redis_client)
    worker.work(burst=True, logging_level="WARNING")

    assert articles(redis_client) == []
    assert all(site.hits(f"/news/{s.slug}/") == [] for s, _ in items)
    registry = ScheduledJobRegistry(EXTRACT_QUEUE, connection=redis_client)
    [job_id] = registry.get_job_ids()
    assert registry.get_scheduled_time(job_id).timestamp() >= now + 89
    held = context.extract_queue.fetch_job(job_id)
    assert sorted(e["url"] for e in held.args[0]) == sorted(link for _, link in items)


def test_host_not_before_only_moves_later(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    assert store.defer_host("h", 1e12 + 100, 1e12 - 10) is True
    assert store.defer_host("h", 1e12 + 50, 1e12 - 10) is False
    assert store.host_not_before("h") == 1e12 + 100


# -- other failures: exponential backoff with jitter, reset by a success ---------------------

def test_failures_back_off_exponentially_and_a_success_resets(site: Site, redis_client: redis.Redis,
                                                              redis_url: str, feeds_file: Path) -> None:
    feed = site.add("/feed.xml", "oops", status=500)
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}), min_interval=300, max_backoff=900)
    context.store.sync_feeds(["f"], time.time())
    install_context(context)
    delays = []
    for _ in range(4):
        started = time.time()
        poll_feed("f")
        delays.append(context.store.due_times()["f"] - started)
    state = context.store.feed_status("f")
    assert state["consecutive_errors"] == "4"
    assert state["last_error"] == f"fetch: HTTP 500 Internal Server Error from {feed}"
    for delay, base in zip(delays, (300, 600, 900, 900), strict=True):  # doubling, capped at max_backoff
        assert 0.8 * base - 1 <= delay <= 1.2 * base + 1, delays

    site.add("/feed.xml", rss2("F", []), "application/rss+xml")
    poll_feed("f")
    state = context.store.feed_status("f")
    assert state["consecutive_errors"] == "0" and "last_error" not in state
    assert state["last_status"] == "200"


# -- adaptive schedule -------------------------------------------------------------------------

def test_next_poll_follows_the_publishing_rhythm_and_the_feeds_hints(site: Site, redis_client: redis.Redis,
                                                                     redis_url: str, feeds_file: Path) -> None:
    now = time.time()

    def dated(n: int, age: float) -> tuple[Any, str]:
        s = story(n)
        s.published = email.utils.formatdate(now - age, usegmt=True)
        return s, site.url(f"/p/{n}")

    busy = [dated(300 + i, i * 3600) for i in range(28)]  # 28 a week: every 6 h
    quiet = [dated(400, 30 * 86400)]  # nothing this week
    feeds = {
        "busy": site.add("/busy.xml", rss2("B", busy), "application/rss+xml"),
        "quiet": site.add("/quiet.xml", rss2("Q", quiet), "application/rss+xml"),
        "capped": site.add("/capped.xml", rss2("C", quiet), "application/rss+xml"),
        "cached": site.add("/cached.xml", rss2("K", busy), "application/rss+xml",
                           headers={"Cache-Control": "public, max-age=43200"}),
        "ttl": site.add("/ttl.xml", rss2("T", busy).replace("<language>", "<ttl>720</ttl><language>"),
                        "application/rss+xml"),
    }
    feeds_file.write_text("\n".join(
        f'[[feeds]]\nname = "{name}"\nurl = "{url}"\nfull_text = false\n'
        + ('max_interval = 7200\n' if name == "capped" else "") for name, url in feeds.items()))
    context = make_context(redis_url, feeds_file, min_interval=300, max_interval=86400)
    install_context(context)
    intervals = {}
    for name in feeds:
        poll_feed(name)
        intervals[name] = int(context.store.feed_status(name)["interval"])
    assert intervals == {"busy": 6 * 3600, "quiet": 86400, "capped": 7200, "cached": 43200, "ttl": 43200}


def test_two_schedulers_at_once_poll_each_feed_once(site: Site, redis_client: redis.Redis, redis_url: str,
                                                    feeds_file: Path) -> None:
    names = [f"f{i}" for i in range(8)]
    feeds = {name: site.add(f"/{name}.xml", rss2(name, []), "application/rss+xml") for name in names}
    context = make_context(redis_url, write_feeds(feeds_file, feeds, full_text=False))
    stop = threading.Event()

    def scheduler() -> None:
        client = redis.Redis.from_url(redis_url)
        run_forever(Store(client), Queue(POLL_QUEUE, connection=client), stop)

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    worker = SimpleWorker([context.poll_queue], connection=redis_client)
    end = time.monotonic() + 4
    while time.monotonic() < end:  # both schedulers tick several times while polls run and finish
        worker.work(burst=True, logging_level="WARNING")
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    worker.work(burst=True, logging_level="WARNING")
    assert {name: len(site.hits(f"/{name}.xml")) for name in names} == dict.fromkeys(names, 1)


# -- host concurrency ----------------------------------------------------------------------------

def test_at_most_n_requests_in_flight_per_host_across_workers(site: Site, redis_client: redis.Redis,
                                                              redis_url: str, feeds_file: Path) -> None:
    lock = threading.Lock()
    inflight = {"now": 0, "peak": 0}

    def slow(request: Any) -> None:
        with lock:
            inflight["now"] += 1
            inflight["peak"] = max(inflight["peak"], inflight["now"])
        time.sleep(0.3)
        with lock:
            inflight["now"] -= 1
        request.send_response(200)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"ok")

    url = site.handle("/slow", slow)
    context = make_context(redis_url, write_feeds(feeds_file, {"f": url}))
    results: list[str] = []

    def one_worker() -> None:  # each its own Redis connection and HTTP client, like separate machines
        with HttpClient(HttpSettings(allow_private=True, deadline=5)) as http:
            fetcher = PoliteFetcher(http, Store(redis.Redis.from_url(redis_url)), host_concurrency=2, slot_wait=30)
            results.append(fetcher.get(url).body.decode())

    threads = [threading.Thread(target=one_worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 6
    assert inflight["peak"] == 2
    assert context.store.host_inflight(host_of(url), time.time()) == 0


def test_a_dead_workers_slot_lapses_with_its_lease(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    assert store.acquire_host_slot("h", "dead", 1, lease=30, now=1000.0)
    assert not store.acquire_host_slot("h", "alive", 1, lease=30, now=1020.0)
    assert store.acquire_host_slot("h", "alive", 1, lease=30, now=1031.0)
    store.release_host_slot("h", "alive")
    assert store.host_inflight("h", 1031.0) == 0


# -- robots.txt ------------------------------------------------------------------------------------

@pytest.mark.parametrize("robots", [True, False])
def test_robots_txt_is_honoured_for_pages_and_cached(site: Site, redis_client: redis.Redis, redis_url: str,
                                                     feeds_file: Path, robots: bool) -> None:
    allowed = serve_stories(site, range(230, 232), prefix="/news")
    private = serve_stories(site, range(232, 233), prefix="/private")
    site.add("/robots.txt", "User-agent: *\nDisallow: /nothing/\n\nUser-agent: feedstream\nDisallow: /private/\n",
             "text/plain")
    feeds = {"a": site.add("/private/feed.xml", rss2("A", allowed[:1] + private), "application/rss+xml"),
             "b": site.add("/b.xml", rss2("B", allowed[1:]), "application/rss+xml")}
    context = make_context(redis_url, write_feeds(feeds_file, feeds), robots=robots)
    run_burst(context)

    docs = {doc["url"]: doc for doc in articles(redis_client)}
    assert len(docs) == 3
    for _, link in allowed:
        assert docs[link]["extraction"] in ("precision", "recall")
    [(s, link)] = private
    if robots:
        assert docs[link]["extraction"] == "feed"
        assert docs[link]["fallback_reason"] == f"fetch: robots.txt of {host_of(link)} disallows {link}"
        assert docs[link]["text"] == s.body_text
        assert site.hits(f"/private/{s.slug}/") == []
        assert len(site.hits("/robots.txt")) == 1  # one fetch, then the Redis cache
        assert len(site.hits("/private/feed.xml")) == 1  # feeds are not pages: robots.txt does not apply
    else:
        assert docs[link]["extraction"] in ("precision", "recall")
        assert site.hits("/robots.txt") == []


def test_a_retired_feed_comes_back_when_its_url_is_changed(site: Site, redis_client: redis.Redis, redis_url: str,
                                                           feeds_file: Path) -> None:
    gone = site.add("/gone.xml", "gone", status=410)
    context = make_context(redis_url, write_feeds(feeds_file, {"f": gone}))
    context.store.sync_feeds(["f"], time.time())
    run_burst(context)
    assert context.store.revive({"f": gone}, time.time()) == []  # same URL: stays retired
    fresh = site.add("/fresh.xml", rss2("F", []), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"f": fresh}))  # applying the file revives it
    assert math.isfinite(context.store.due_times()["f"])
    assert context.store.revive({"f": fresh}, time.time()) == []  # (so the scheduler's check has nothing left)
    assert context.store.claim_due(time.time() + 1, 60) == ["f"]
    run_burst(context)
    state = context.store.feed_status("f")
    assert "retired" not in state and state["last_status"] == "200"
    assert math.isfinite(context.store.due_times()["f"])


def test_a_page_answering_429_holds_back_the_rest_of_its_host(site: Site, redis_client: redis.Redis,
                                                               redis_url: str, feeds_file: Path) -> None:
    items = serve_stories(site, range(240, 243))
    for s, _ in items:  # whichever page is asked first says: wait five minutes
        site.add(f"/news/{s.slug}/", "slow down", status=429, headers={"Retry-After": "300"})
    feed = site.add("/feed.xml", rss2("F", items), "application/rss+xml")
    # One request per host at a time: no other page of the host is in flight when the 429 arrives.
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}), host_concurrency=1)
    now = time.time()
    run_burst(context)

    assert context.store.host_not_before(host_of(site.base)) >= now + 295
    # Pages are prefetched in threads, but with one request per host in flight the
    # others wait for the slot and then see the host's Retry-After: only one is asked.
    assert sum(len(site.hits(f"/news/{s.slug}/")) for s, _ in items) == 1
    assert articles(redis_client) == []  # nothing lost to a fallback either: all of it waits
    registry = ScheduledJobRegistry(EXTRACT_QUEUE, connection=redis_client)
    times = sorted(registry.get_scheduled_time(job_id).timestamp() for job_id in registry.get_job_ids())
    assert times and times[-1] >= now + 295
