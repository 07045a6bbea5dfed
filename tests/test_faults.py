"""Exactly once under faults: real Redis servers started here, real RQ workers as subprocesses, real HTTP.

- workers and work horses SIGKILLed at random moments, and restarted, during a run of 310 articles;
- Redis restarted (AOF on) in the middle of a run;
- a job abandoned by a killed worker is recovered well within a minute (the expiry RQ gives its
  StartedJobRegistry entry is checked, and the job is seen to finish on another worker).

Every wait below is a guard against hanging (it fails the test with what is missing), never an assertion
about speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from tests.pipeline_helpers import write_feeds
from tests.site import Site
from tests.sitegen import rss2, telecoms_page, wire_story
from worker.ops.embedded import EmbeddedRedis, _free_port
from worker.ops.rqworker import HEARTBEAT_TTL, pending_work
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll

REPO = Path(__file__).resolve().parents[1]


def _slow_page(body: bytes, delay: float, gate: threading.Event | None = None) -> Callable:
    """A page that takes ``delay`` seconds (or until ``gate`` opens) to answer, so kills land mid-job."""
    def handler(request) -> None:  # type: ignore[no-untyped-def]
        if gate is not None:
            gate.wait(120)
        time.sleep(delay)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the fetching worker was killed
            request.send_response(200)
            request.send_header("Content-Type", "text/html; charset=utf-8")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
    return handler


def _publish_site(sites: list[Site], feeds: int, per_feed: int, delay: float,
                  gate: threading.Event | None = None) -> tuple[dict[str, str], set[str]]:
    """Serve ``feeds`` feeds of ``per_feed`` distinct stories each; returns (feed name -> url, page urls).

    Feed ``f`` and its pages live on ``sites[f % len(sites)]`` (with one feed, its pages are spread over
    the sites): each site is another host to the per-host politeness limit, as publishers are."""
    urls: dict[str, str] = {}
    pages: set[str] = set()
    for f in range(feeds):
        items = []
        site = sites[f % len(sites)]
        for i in range(per_feed):
            s = wire_story(1000 + f * per_feed + i)
            host = site if feeds > 1 else sites[i % len(sites)]
            link = host.handle(f"/f{f}/{s.slug}", _slow_page(telecoms_page(s).encode(), delay, gate))
            items.append((s, link))
            pages.add(link)
        urls[f"feed{f}"] = site.add(f"/f{f}/rss.xml", rss2(f"Feed {f}", items, with_content=False),
                                    "application/rss+xml")
    return urls, pages


class Workers:
    """Worker subprocesses, each in its own session so a kill takes the worker and its RQ scheduler child."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.procs: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self.horses: set[int] = set()
        self._n = 0

    def start(self, kind: str) -> int:
        self._n += 1
        log = open(self.tmp / f"worker-{self._n}-{kind}.log", "wb")  # noqa: SIM115 (kept for the process)
        proc = subprocess.Popen([sys.executable, "-m", "tests.fault_worker", kind], cwd=REPO, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[proc.pid] = (kind, proc)
        return proc.pid

    def kill_worker(self, pid: int) -> str:
        kind, proc = self.procs.pop(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        proc.wait()
        self.start(kind)
        return kind

    def horse_of(self, pid: int) -> int | None:
        """The work horse a forking worker is running now (its child outside its process group)."""
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        for child in map(int, children):
            with contextlib.suppress(OSError):
                if os.getpgid(child) != pid:  # RQ spawns horses in their own process group
                    self.horses.add(child)
                    return child
        return None

    def stop(self) -> None:
        for pid, (_kind, proc) in list(self.procs.items()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            proc.wait()
        for horse in self.horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(horse, signal.SIGKILL)
        self.procs.clear()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (AOF on), which it may restart."""
    embedded = EmbeddedRedis(tmp_path / "redis", port=_free_port())
    embedded.start()
    yield embedded
    embedded.stop()


def _env(url: str, feeds_path: Path) -> dict[str, str]:
    # A kill between RQ's pop of a job and its start-of-job transaction leaves the job in no queue and no
    # registry: only the outbox sweeper brings it back ("revive"), FEEDSTREAM_OUTBOX_SWEEP_AFTER after its
    # entries were queued. 300 s by default, longer than these tests wait; 10 s here, so that when a kill
    # lands in that window (rarely: a few milliseconds per job) the net is what the test sees working.
    return {**os.environ, "REDIS_URL": url, "FEEDSTREAM_FEEDS": str(feeds_path), "FEEDSTREAM_ALLOW_PRIVATE": "1",
            "FEEDSTREAM_FETCH_DEADLINE": "10", "FEEDSTREAM_OUTBOX_SWEEP_AFTER": "10", "PYTHONPATH": str(REPO)}


def _stream_urls(client: redis.Redis) -> Counter[str]:
    return Counter(json.loads(fields[b"article"])["url"] for _id, fields in client.xrange("articles"))


def _failed(client: redis.Redis) -> list[str]:
    return [job for name in (POLL_QUEUE, EXTRACT_QUEUE)
            for job in FailedJobRegistry(name, connection=client).get_job_ids()]


def _run_until_done(client: redis.Redis, feed_names: list[str], pages: set[str], step: Callable[[], None],
                    guard: float, stream_client: redis.Redis | None = None) -> Counter[str]:
    """Poll every feed every 2 s (as the scheduler would after a lost poll) and call ``step`` until every
    page is on the stream (on ``stream_client``, by default ``client``) and no job is queued, running or
    scheduled; fail after ``guard`` seconds."""
    queue = Queue(POLL_QUEUE, connection=client)
    give_up = time.monotonic() + guard
    last_poll = 0.0
    while True:
        if time.monotonic() - last_poll > 2:
            for name in feed_names:
                enqueue_poll(queue, name)
            last_poll = time.monotonic()
        step()
        seen = _stream_urls(stream_client or client)
        busy, scheduled = pending_work(client)
        if pages <= set(seen) and not busy and scheduled is None:
            return seen
        if time.monotonic() > give_up:
            pytest.fail(f"not done after {guard:.0f} s: {len(pages - set(seen))} missing, busy={busy}, "
                        f"scheduled={scheduled}, failed jobs={_failed(client)}")


def test_sigkilled_workers_and_horses_publish_every_article_exactly_once(
        server: EmbeddedRedis, tmp_path: Path) -> None:
    sites = [Site().start() for _ in range(10)]
    workers = Workers({}, tmp_path)
    try:
        feed_urls, pages = _publish_site(sites, feeds=10, per_feed=31, delay=0.08)
        feeds_path = write_feeds(tmp_path / "feeds.toml", feed_urls)
        workers.env = _env(server.url, feeds_path)
        client = redis.Redis.from_url(server.url)
        for kind in ("simple", "simple", "fork"):
            workers.start(kind)
        rng = random.Random(4)
        kills: Counter[str] = Counter()
        busy_kills = 0
        next_kill = time.monotonic() + 1.0

        def step() -> None:
            nonlocal next_kill, busy_kills
            if sum(kills.values()) >= 24 or time.monotonic() < next_kill:
                time.sleep(0.1)
                return
            next_kill = time.monotonic() + rng.uniform(0.2, 0.8)
            busy = {w.pid for w in Worker.all(connection=client) if w.get_state() == "busy"}
            fork_pid = next(pid for pid, (kind, _p) in workers.procs.items() if kind == "fork")
            horse = workers.horse_of(fork_pid) if rng.random() < 0.4 else None
            if horse is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(horse, signal.SIGKILL)
                    kills["horse"] += 1
                    busy_kills += 1
                return
            simple = [pid for pid, (kind, _p) in workers.procs.items() if kind == "simple"]
            # At a random moment, a worker that is running a job if there is one: idle kills prove little.
            pid = rng.choice([pid for pid in simple if pid in busy] or simple)
            busy_kills += pid in busy
            kills[workers.kill_worker(pid)] += 1

        seen = _run_until_done(client, list(feed_urls), pages, step, guard=150)
    finally:
        workers.stop()
        for site in sites:
            site.stop()

    assert sum(kills.values()) >= 20, kills
    assert kills["horse"] >= 1 and kills["simple"] >= 10, kills
    assert busy_kills >= 10, f"only {busy_kills} kills hit a running job"
    assert len(pages) == 310
    doubled = {url: n for url, n in seen.items() if n != 1}
    assert not doubled, f"published more than once: {doubled}"
    assert set(seen) == pages
    print(f"\nkills: {dict(kills)}, {busy_kills} of them mid-job; {len(seen)} articles, each once")


@pytest.mark.parametrize("split", [False, True], ids=["one-redis", "split-publishing-restarted"])
def test_redis_restart_mid_run_loses_and_doubles_nothing(server: EmbeddedRedis, tmp_path: Path,
                                                         split: bool) -> None:
    sites = [Site().start() for _ in range(4)]
    workers = Workers({}, tmp_path)
    # split: queues and feed state on `server`, publishing state on a second Redis, which is the one restarted
    publishing = EmbeddedRedis(tmp_path / "publishing", port=_free_port()) if split else server
    try:
        publishing.start()
        feed_urls, pages = _publish_site(sites, feeds=4, per_feed=20, delay=0.05)
        feeds_path = write_feeds(tmp_path / "feeds.toml", feed_urls)
        workers.env = {**_env(server.url, feeds_path),
                       **({"FEEDSTREAM_PUBLISH_REDIS_URL": publishing.url} if split else {})}
        client = redis.Redis.from_url(server.url)
        stream_client = redis.Redis.from_url(publishing.url)
        workers.start("simple")
        workers.start("simple")
        restarted = False

        def step() -> None:
            nonlocal restarted
            time.sleep(0.1)
            if not restarted and stream_client.xlen("articles") >= 20:
                # A restart as an operator or supervisor does it: SHUTDOWN (AOF flushed), start again on
                # the same port and data directory. Workers are mid-run and must reconnect by themselves.
                publishing.stop()
                time.sleep(1.0)
                publishing.start()
                restarted = True

        seen = _run_until_done(client, list(feed_urls), pages, step, guard=120, stream_client=stream_client)
        assert restarted
        assert all(proc.poll() is None for _kind, proc in workers.procs.values()), "a worker died"
        if split:  # nothing of the publishing side landed on the queues' Redis
            assert not client.exists("articles") and not list(client.scan_iter(match="feedstream:claims:*"))
    finally:
        workers.stop()
        for site in sites:
            site.stop()
        if split:
            publishing.stop()
    doubled = {url: n for url, n in seen.items() if n != 1}
    assert not doubled, f"published more than once: {doubled}"
    assert set(seen) == pages


def test_job_of_a_killed_worker_is_recovered_within_a_minute(server: EmbeddedRedis, tmp_path: Path) -> None:
    # The feed's three pages are on three hosts. With all of them on one host, the killed worker's
    # per-host slots (worker/polite.py, leased for deadline + 10 s) make the new worker hold the batch
    # back, and a held batch waits for RQ's scheduler, whose lock the killed worker held: see README.
    sites = [Site().start() for _ in range(3)]
    workers = Workers({}, tmp_path)
    gate = threading.Event()
    try:
        feed_urls, pages = _publish_site(sites, feeds=1, per_feed=3, delay=0.0, gate=gate)
        workers.env = _env(server.url, write_feeds(tmp_path / "feeds.toml", feed_urls))
        client = redis.Redis.from_url(server.url)
        pid = workers.start("simple")
        enqueue_poll(Queue(POLL_QUEUE, connection=client), "feed0")
        started = StartedJobRegistry(EXTRACT_QUEUE, connection=client)
        give_up = time.monotonic() + 60
        while not started.get_job_ids():  # the extract job is running, held up by its pages
            assert time.monotonic() < give_up, "extract job never started"
            time.sleep(0.1)
        killed_at = time.time()
        os.killpg(pid, signal.SIGKILL)
        workers.procs.pop(pid)[1].wait()
        # RQ will treat the job as abandoned once its registry entry expires: HEARTBEAT_TTL after the last
        # heartbeat, not the job timeout + 60 s that a SimpleWorker would give it.
        [(_member, expires)] = client.zrange(started.key, 0, -1, withscores=True)
        assert expires - killed_at <= HEARTBEAT_TTL + 1
        gate.set()
        workers.start("simple")
        seen = _run_until_done(client, [], pages, lambda: time.sleep(0.2), guard=120)
        recovered_in = time.time() - killed_at
    finally:
        gate.set()
        workers.stop()
        for site in sites:
            site.stop()
    assert set(seen) == pages and all(n == 1 for n in seen.values())
    print(f"\nabandoned job recovered and published {recovered_in:.1f} s after its worker was killed")
