"""Many hosts at once: per-host caps through the whole service, slots that wake their waiters,
work interleaved across hosts, and bad hosts that hold back only their own pages.

Real Redis, real worker processes (`python -m worker ...` as the Procfile runs them), real HTTP on
loopback. Every wait is a guard against hanging, never an assertion about speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import redis
from rq.timeouts import JobTimeoutException

from tests.pipeline_helpers import articles, write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.fetch import host_of
from worker.models import Entry
from worker.ops.workgroup import WatchdogDeathPenalty
from worker.pipeline.queues import POLL_QUEUE, enqueue_polls, host_batches
from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _env(redis_url: str, feeds_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT), FEEDSTREAM_FEEDS=str(feeds_path),
               FEEDSTREAM_ALLOW_PRIVATE="1", **settings)
    return env


@contextlib.contextmanager
def workers(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`feedstream worker` in its own session, killed (with anything it started) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker", "worker"], cwd=ROOT, env=env,
                                start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serve_feed(site: Site, name: str, numbers: range) -> tuple[str, set[str]]:
    items = [(s, site.add(f"/{name}/{s.slug}/", telecoms_page(s))) for s in map(story, numbers)]
    return site.add(f"/{name}.xml", rss2(name, items), "application/rss+xml"), {link for _, link in items}


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- interleaving ----------------------------------------------------------------------------------

def test_extract_batches_hold_one_host_each_and_hosts_take_turns() -> None:
    def entries(host: str, count: int) -> list[Entry]:
        return [Entry(url=f"http://{host}/{n}", guid=f"{host}{n}", title="t", feed=host) for n in range(count)]

    batches = host_batches([*entries("big.example", 10), *entries("a.example", 3), *entries("b.example", 1)], 4)
    hosts = [{host_of(entry.url) for entry in batch} for batch in batches]
    assert all(len(h) == 1 for h in hosts)
    assert [h.pop() for h in hosts] == ["big.example", "a.example", "b.example", "big.example", "big.example"]
    assert [len(batch) for batch in batches] == [4, 3, 1, 4, 2]
    # An aggregator's feed, one page on each of many hosts, is batched on its own: not a job per page.
    spread = [Entry(url=f"http://site{n}.example/a", guid=str(n), title="t", feed="agg") for n in range(10)]
    assert [len(batch) for batch in host_batches([*spread, *entries("big.example", 4)], 4)] == [4, 4, 4, 2]


# -- job timeouts in thread workers -------------------------------------------------------------------

def test_a_thread_workers_job_timeout_raises_in_its_thread_and_an_ended_job_is_left_alone() -> None:
    def busy(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            time.sleep(0.01)

    started = time.monotonic()
    with pytest.raises(JobTimeoutException), WatchdogDeathPenalty(0.3, JobTimeoutException, job_id="slow"):
        busy(10)
    assert time.monotonic() - started < 5
    with WatchdogDeathPenalty(0.2, JobTimeoutException, job_id="quick"):
        pass
    busy(0.5)  # no exception once the job has ended


# -- slots wake their waiters ----------------------------------------------------------------------

def test_a_released_slot_wakes_a_waiter_and_no_wake_up_is_lost(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    assert store.acquire_host_slot("h", "a", 1, lease=30, now=time.time()) is True
    assert store.acquire_host_slot("h", "b", 1, lease=30, now=time.time()) is False
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(store.wait_host_slot("h", timeout=20)))
    waiter.start()
    time.sleep(0.2)  # the waiter is blocked in BLPOP now (if not, the token waits for it: same outcome)
    store.release_host_slot("h", "a", limit=1)
    waiter.join()
    assert woken == [True]  # woken by the release, not by the 20 s timeout
    assert store.acquire_host_slot("h", "b", 1, lease=30, now=time.time()) is True
    # Released with nobody waiting: the next waiter still wakes at once, instead of sleeping blind.
    store.release_host_slot("h", "b", limit=1)
    assert store.wait_host_slot("h", timeout=20) is True
    assert store.wait_host_slot("h", timeout=0.1) is False  # one token per release, and no more
    # A lapsed lease gives nothing back, and wakes nobody.
    assert store.acquire_host_slot("h", "c", 1, lease=1, now=1000.0) is True
    store.release_host_slot("h", "stranger", limit=1)
    assert store.wait_host_slot("h", timeout=0.1) is False


# -- the cap holds through the whole service ------------------------------------------------------

def test_no_host_sees_more_requests_at_once_than_its_cap(redis_client: redis.Redis, redis_url: str,
                                                         tmp_path: Path) -> None:
    site = Site(latency=0.3).start()  # answers slowly: requests would pile up if nothing held them back
    try:
        feeds, links = {}, set()
        for f in range(4):  # several feeds on one host, enough pages for every worker thread at once
            feeds[f"f{f}"], pages = serve_feed(site, f"f{f}", range(400 + 10 * f, 406 + 10 * f))
            links |= pages
        env = _env(redis_url, write_feeds(tmp_path / "feeds.toml", feeds), FEEDSTREAM_WORKERS="2",
                   FEEDSTREAM_WORKER_THREADS="4", FEEDSTREAM_HOST_CONCURRENCY="2")
        result = subprocess.run([sys.executable, "-m", "worker", "run", "--burst"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert {doc["url"] for doc in articles(redis_client)} == links
        assert site.peak_inflight == 2  # the cap, reached (8 worker threads wanted more) and never passed
    finally:
        site.stop()


# -- bad hosts hold back only their own pages ------------------------------------------------------

DEADLINE = 4.0  # FEEDSTREAM_FETCH_DEADLINE for the run: the slow and trickling hosts are cut off at it


def _slow(request: BaseHTTPRequestHandler) -> None:
    time.sleep(20)
    with contextlib.suppress(OSError):
        request.send_response(200)
        request.send_header("Content-Length", "0")
        request.end_headers()


def _trickle(request: BaseHTTPRequestHandler) -> None:
    with contextlib.suppress(OSError):
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", "100")
        request.end_headers()
        for _ in range(100):
            request.wfile.write(b" ")
            request.wfile.flush()
            time.sleep(0.5)


def test_slow_trickling_and_429_hosts_delay_only_their_own_pages(redis_client: redis.Redis, redis_url: str,
                                                                 tmp_path: Path) -> None:
    fast = [Site().start() for _ in range(3)]
    bad = {"slow": Site().start(), "trickle": Site().start(), "busy": Site().start()}
    try:
        feeds: dict[str, str] = {}
        # The bad hosts' feeds come first: their pages are queued ahead of the fast hosts'.
        for n, (name, site) in enumerate(bad.items()):
            items = [(s, site.url(f"/{name}/{s.slug}/")) for s in map(story, range(500 + 10 * n, 502 + 10 * n))]
            for s, _ in items:
                if name == "slow":
                    site.handle(f"/{name}/{s.slug}/", _slow)
                elif name == "trickle":
                    site.handle(f"/{name}/{s.slug}/", _trickle)
                else:
                    site.add(f"/{name}/{s.slug}/", "slow down", status=429, headers={"Retry-After": "300"})
            feeds[name] = site.add(f"/{name}.xml", rss2(name, items), "application/rss+xml")
        fast_links: set[str] = set()
        for n, site in enumerate(fast):
            feeds[f"fast{n}"], links = serve_feed(site, f"fast{n}", range(600 + 10 * n, 604 + 10 * n))
            fast_links |= links
        feeds_path = write_feeds(tmp_path / "feeds.toml", feeds)
        env = _env(redis_url, feeds_path, FEEDSTREAM_WORKERS="1", FEEDSTREAM_WORKER_THREADS="4",
                   FEEDSTREAM_FETCH_DEADLINE=str(DEADLINE))
        enqueue_polls_for(redis_client, list(feeds))
        with workers(env, tmp_path / "worker.log"):
            wait_for(lambda: bad["slow"].hits(f"/slow/{story(500).slug}/") or bad["slow"].hits(
                f"/slow/{story(501).slug}/"), 60, "the slow host to be asked for a page")
            slow_asked = min(r.at for r in bad["slow"].requests if r.path.startswith("/slow/"))
            wait_for(lambda: fast_links <= {doc["url"] for doc in articles(redis_client)}, 60,
                     "the fast hosts' pages")
            published = {fields[b"url"].decode(): int(entry_id.decode().split("-")[0]) / 1000
                         for entry_id, fields in redis_client.xrange("articles")}
        last_fast = max(published[link] for link in fast_links)
        assert last_fast < slow_asked + DEADLINE, (last_fast - slow_asked)
        assert not set(published) - fast_links  # the bad hosts' pages are not published yet: retried later
    finally:
        for site in [*fast, *bad.values()]:
            site.stop()


def enqueue_polls_for(client: redis.Redis, names: list[str]) -> None:
    from rq import Queue

    Store(client).sync_feeds(names, time.time())
    enqueue_polls(Queue(POLL_QUEUE, connection=client), names)


# -- warm shutdown of a process of worker threads --------------------------------------------------

def test_sigterm_to_worker_threads_finishes_every_job_in_hand_and_leaves_the_rest_queued(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    from rq import Queue
    from rq.registry import StartedJobRegistry

    from tests.test_shutdown import page_hits, slow_site
    from worker.pipeline.queues import EXTRACT_QUEUE, enqueue_poll

    feeds, links = slow_site(site, feeds=3, per_feed=8)  # 3 extract jobs of 8 slow pages each
    env = _env(redis_url, write_feeds(feeds_file, feeds), FEEDSTREAM_WORKERS="1", FEEDSTREAM_WORKER_THREADS="2")
    for name in feeds:
        enqueue_poll(Queue(POLL_QUEUE, connection=redis_client), name)
    worker = subprocess.Popen([sys.executable, "-m", "worker", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: page_hits(site) >= 2 or worker.poll() is not None, 60, "the first pages to be asked for")
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output

    # Each thread's job in hand ran to its end (whole jobs of 8), none was left half-done, the rest is queued.
    assert StartedJobRegistry(EXTRACT_QUEUE, connection=redis_client).count == 0, output
    published = len(articles(redis_client))
    assert published in (8, 16), output
    assert Queue(EXTRACT_QUEUE, connection=redis_client).count == 3 - published // 8

    restart = subprocess.run([sys.executable, "-m", "worker", "worker", "--burst"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert restart.returncode == 0, restart.stderr
    assert sorted(doc["url"] for doc in articles(redis_client)) == sorted(links)  # every article, each once
