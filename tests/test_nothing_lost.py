"""Nothing lost when Redis or RQ lets an entry down: the outbox and its sweeper, Redis refusing writes,
and killed workers' jobs recovered without RQ counting its own bookkeeping as failures.

Real Redis servers started here, real RQ workers (in-process or as subprocesses), real HTTP on loopback.
Every wait is a guard against hanging (it fails with what is missing), except the one bound the issue
sets: an abandoned job completes within 60 s of its worker's kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from tests.pipeline_helpers import make_context, write_feeds
from tests.site import Site
from tests.test_faults import REPO, Workers, _env, _publish_site, _stream_urls, server  # noqa: F401 (fixture)
from worker.ops.embedded import EmbeddedRedis, _free_port
from worker.ops.rqworker import QUEUES, FeedstreamWorker, pending_work
from worker.pipeline import poll
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll


def _wait(condition, guard: float, what) -> None:  # type: ignore[no-untyped-def]
    give_up = time.monotonic() + guard
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"not done after {guard:.0f} s: {what()}")
        time.sleep(0.2)


def test_entries_of_jobs_lost_behind_the_services_back_are_published_by_the_sweeper(
        server: EmbeddedRedis, tmp_path: Path) -> None:  # noqa: F811
    sites = [Site().start() for _ in range(2)]
    try:
        feed_urls, pages = _publish_site(sites, feeds=1, per_feed=16, delay=0.0)
        context = make_context(server.url, write_feeds(tmp_path / "feeds.toml", feed_urls), outbox_sweep_after=1.0)
        client = context.store.redis
        poll.poll_feed(context, "feed0")  # 16 new entries: two extract jobs of 8, recorded in the outbox
        limbo, deleted = Queue(EXTRACT_QUEUE, connection=client).get_job_ids()
        # As an OOM-refused start transaction leaves a job: popped from its queue, its hash still "queued".
        client.lrem(Queue(EXTRACT_QUEUE, connection=client).key, 0, limbo)
        # And a job gone altogether (deleted by an operator, or expired).
        Job.fetch(deleted, connection=client).delete()
        assert client.zcard("feedstream:outbox") == 16 and not Queue(EXTRACT_QUEUE, connection=client).count
        time.sleep(1.1)  # past the entries' check time
        # A real worker: its maintenance pass (at start, then every 15 s) runs the sweep; burst: it stops when idle.
        worker = FeedstreamWorker([Queue(name, connection=client) for name in QUEUES], connection=client)
        worker.work(burst=True, logging_level="WARNING")
        seen = _stream_urls(client)
        counters = context.store.counters()
    finally:
        for site in sites:
            site.stop()
    assert set(seen) == pages and all(n == 1 for n in seen.values()), seen
    assert counters["jobs_revived"] == 1 and counters["entries_requeued"] == 8, counters
    assert client.zcard("feedstream:outbox") == 0 and not client.hlen("feedstream:outbox:entry")
    assert not FailedJobRegistry(EXTRACT_QUEUE, connection=client).count


def _worker_logs(tmp: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in tmp.glob("worker-*.log"))


def test_jobs_of_killed_workers_complete_within_a_minute_with_no_failure_or_spent_retry(
        server: EmbeddedRedis, tmp_path: Path) -> None:  # noqa: F811
    # One host per page: a killed worker's per-host slots (leased for deadline + 10 s) never fill a host.
    sites = [Site().start() for _ in range(16)]
    workers = Workers({}, tmp_path)
    gate = threading.Event()
    try:
        feed_urls, pages = _publish_site(sites, feeds=1, per_feed=16, delay=0.0, gate=gate)
        workers.env = _env(server.url, write_feeds(tmp_path / "feeds.toml", feed_urls))
        client = redis.Redis.from_url(server.url)
        for _ in range(3):
            workers.start("simple")
        enqueue_poll(Queue(POLL_QUEUE, connection=client), "feed0")
        started = StartedJobRegistry(EXTRACT_QUEUE, connection=client)
        _wait(lambda: len(started.get_job_ids(cleanup=False)) == 2, 60, lambda: "two extract jobs running")
        busy = {w.pid: w.get_current_job_id() for w in Worker.all(connection=client) if w.get_current_job_id()}
        abandoned = {job_id for job_id in busy.values() if job_id in started.get_job_ids(cleanup=False)}
        assert len(abandoned) == 2, busy
        killed_at = time.time()
        for pid, job_id in busy.items():
            if job_id in abandoned:
                workers.kill_worker(pid)  # SIGKILL its process group, start a fresh worker in its place
        gate.set()
        retries_left: dict[str, set[int]] = {job_id: set() for job_id in abandoned}
        statuses: dict[str, set[str]] = {job_id: set() for job_id in abandoned}
        done_at: dict[str, float] = {}
        while len(done_at) < len(abandoned):
            for job_id in abandoned - set(done_at):
                try:
                    job = Job.fetch(job_id, connection=client)
                    status = job.get_status()
                except (NoSuchJobError, InvalidJobOperation):  # result_ttl=0: its hash goes when it succeeds
                    done_at[job_id] = time.time()
                    continue
                retries_left[job_id].add(job.retries_left or 0)
                statuses[job_id].add(str(getattr(status, "value", status)))
            if time.time() - killed_at > 90:
                pytest.fail(f"abandoned jobs not done 90 s after the kill: {set(abandoned) - set(done_at)}, "
                            f"statuses {statuses}")
            time.sleep(0.1)
        _wait(lambda: pages <= set(_stream_urls(client)), 60, lambda: pages - set(_stream_urls(client)))
        seen = _stream_urls(client)
        failed_counts = {w.name: w.failed_job_count for w in Worker.all(connection=client)}
    finally:
        gate.set()
        workers.stop()
        for site in sites:
            site.stop()
    took = {job_id: round(at - killed_at, 1) for job_id, at in done_at.items()}
    assert all(seconds <= 60 for seconds in took.values()), took
    assert all(n == 1 for n in seen.values()) and set(seen) == pages
    # RQ's own records: no failure, and only the abandonment's one retry spent (max 4 -> 3), none on
    # bookkeeping: never scheduled for a delayed retry, never failed.
    assert not FailedJobRegistry(EXTRACT_QUEUE, connection=client).get_job_ids()
    assert all(count == 0 for count in failed_counts.values()), failed_counts
    assert all(left <= {3, 4} for left in retries_left.values()), retries_left
    assert all(not ({"failed", "scheduled"} & s) for s in statuses.values()), statuses
    logs = _worker_logs(tmp_path)
    assert "Traceback" not in logs and "not found in Redis" not in logs, logs[-3000:]
    print(f"\nabandoned jobs completed {sorted(took.values())} s after their workers were killed")


def _feedstream(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "worker", *args], cwd=REPO, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def _healthz(port: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_redis_out_of_memory_mid_burst_loses_and_doubles_nothing(server: EmbeddedRedis,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    sites = [Site().start() for _ in range(4)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    client = redis.Redis.from_url(server.url)
    try:
        feed_urls, pages = _publish_site(sites, feeds=4, per_feed=15, delay=0.15)
        env = {**_env(server.url, write_feeds(tmp_path / "feeds.toml", feed_urls)),
               "FEEDSTREAM_OUTBOX_SWEEP_AFTER": "5"}
        port = _free_port()
        procs["scheduler"] = _feedstream(["scheduler"], env, tmp_path / "scheduler.log")
        procs["workers"] = _feedstream(["worker", "--processes", "2"], env, tmp_path / "workers.log")
        procs["metrics"] = _feedstream(["metrics", "--port", str(port)], env, tmp_path / "metrics.log")
        _wait(lambda: client.xlen("articles") >= 8, 90, lambda: f"{client.xlen('articles')} published")
        # maxmemory below what is used, noeviction: every write that may grow memory is refused
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        during_oom = client.xlen("articles")
        time.sleep(8)  # jobs in flight hit it: publishes, RQ's start/end transactions, heartbeats, ticks
        status = subprocess.run([sys.executable, "-m", "worker", "status"], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=60)
        code, health = _healthz(port)
        alive_during = {name: proc.poll() is None for name, proc in procs.items()}
        stalled = client.xlen("articles")
        client.config_set("maxmemory", 0)
        guard = time.monotonic() + 150
        while True:
            seen = _stream_urls(client)
            busy, scheduled = pending_work(client)
            outbox = client.zcard("feedstream:outbox")
            if pages <= set(seen) and not busy and not outbox:
                break
            if time.monotonic() > guard:
                pytest.fail(f"not done: {len(pages - set(seen))} missing, busy={busy}, scheduled={scheduled}, "
                            f"outbox={outbox}")
            time.sleep(0.3)
        alive_after = {name: proc.poll() is None for name, proc in procs.items()}
    finally:
        with contextlib.suppress(redis.RedisError):
            client.config_set("maxmemory", 0)
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for site in sites:
            site.stop()
    logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in procs}
    assert stalled == during_oom, "something was published while Redis refused writes"
    assert len(pages) == 60 and set(seen) == pages
    doubled = {url: n for url, n in Counter(seen).items() if n != 1}
    assert not doubled, f"published more than once: {doubled}"
    assert all(alive_during.values()) and all(alive_after.values()), (alive_during, alive_after, logs)
    assert "REDIS IS REFUSING WRITES: out of memory" in status.stdout, status.stdout + status.stderr
    assert code == 503 and "refusing writes: out of memory" in health["checks"]["redis_writes"]["error"], health
    assert "Redis refuses: out of memory" in logs["scheduler"] and "Traceback" not in logs["scheduler"]
    # no RQ worker (nor RQ's scheduler process) quit and was replaced by the pool: they rode it out
    assert "Redis refuses: out of memory" in logs["workers"], logs["workers"][-3000:]
    assert "Traceback" not in logs["workers"] and "quitting" not in logs["workers"], logs["workers"][-5000:]
    assert logs["scheduler"].count("Redis refuses: out of memory") == 1, logs["scheduler"]
    print(f"\n{len(seen)} articles, each once; {stalled} published before Redis refused writes; worker log: "
          f"{logs['workers'].count('Redis refuses')} refusal warning(s)")
