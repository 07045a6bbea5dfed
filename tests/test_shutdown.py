"""SIGTERM to the Procfile processes: the work in hand finishes (RQ's warm shutdown), the rest stays
queued, and after a restart every article is on the stream exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import redis
from rq import Queue
from rq.registry import StartedJobRegistry

from tests.pipeline_helpers import articles, write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll

ROOT = Path(__file__).resolve().parent.parent
PAGE_DELAY = 0.3  # seconds per page: an 8-page extract job takes ~2.4 s, time enough to signal mid-job


def slow_site(site: Site, feeds: int, per_feed: int) -> tuple[dict[str, str], set[str]]:
    """Feeds whose article pages answer slowly. Returns (feed name -> url, article urls)."""
    urls: dict[str, str] = {}
    links: set[str] = set()
    for f in range(feeds):
        items = []
        for i in range(per_feed):
            s = story(f * 100 + i)
            page = telecoms_page(s).encode()

            def handler(request: BaseHTTPRequestHandler, page: bytes = page) -> None:
                time.sleep(PAGE_DELAY)
                request.send_response(200)
                request.send_header("Content-Type", "text/html; charset=utf-8")
                request.send_header("Content-Length", str(len(page)))
                request.end_headers()
                request.wfile.write(page)

            link = site.handle(f"/f{f}/{s.slug}/", handler)
            links.add(link)
            items.append((s, link))
        urls[f"f{f}"] = site.add(f"/f{f}.xml", rss2(f"F{f}", items), "application/rss+xml")
    return urls, links


def page_hits(site: Site) -> int:
    with site._lock:
        return sum(1 for r in site.requests if not r.path.endswith(".xml"))


def _env(redis_url: str, feeds_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT), FEEDSTREAM_FEEDS=str(feeds_path),
               FEEDSTREAM_ALLOW_PRIVATE="1", FEEDSTREAM_WORKERS="1",
               # one job in hand per worker process, so these tests know which job SIGTERM finds running
               # (a process of several worker threads: tests/test_throughput.py)
               FEEDSTREAM_WORKER_THREADS="1")
    return env


def wait_for_pages(site: Site, proc: subprocess.Popen[str], at_least: int) -> None:
    """Readiness, not timing: until the worker is inside an extract job (it has asked for pages)."""
    for _ in range(1200):
        if page_hits(site) >= at_least:
            return
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    raise AssertionError("the worker never started fetching pages")


def test_sigterm_to_a_worker_mid_burst_finishes_the_job_in_hand_and_a_restart_loses_and_doubles_nothing(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    feeds, links = slow_site(site, feeds=3, per_feed=8)  # 3 extract jobs of 8 pages each
    env = _env(redis_url, write_feeds(feeds_file, feeds))
    poll_queue = Queue(POLL_QUEUE, connection=redis_client)
    for name in feeds:
        enqueue_poll(poll_queue, name)

    worker = subprocess.Popen([sys.executable, "-m", "worker", "worker", "--processes", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_pages(site, worker, at_least=2)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output

    # Warm shutdown: the job in hand ran to its end (all 8 of its articles), nothing was left half-done
    # in the started registry, and the jobs not yet begun are still queued.
    assert StartedJobRegistry(EXTRACT_QUEUE, connection=redis_client).count == 0
    assert len(articles(redis_client)) == 8, output
    assert Queue(EXTRACT_QUEUE, connection=redis_client).count == 2

    restart = subprocess.run([sys.executable, "-m", "worker", "worker", "--burst", "--processes", "1"], env=env,
                             capture_output=True, text=True, timeout=180)
    assert restart.returncode == 0, restart.stderr
    urls = [doc["url"] for doc in articles(redis_client)]
    assert sorted(urls) == sorted(links)  # every article, each once


def test_sigterm_to_the_scheduler_stops_it_cleanly(redis_client: redis.Redis, redis_url: str,
                                                   feeds_file: Path) -> None:
    feeds_file.write_text('[[feeds]]\nname = "f"\nurl = "http://127.0.0.1:9/feed"\ninterval = 3600\n')
    scheduler = subprocess.Popen([sys.executable, "-m", "worker", "scheduler"], env=_env(redis_url, feeds_file),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(600):  # readiness: its first tick queues the due feed's poll
        if Queue(POLL_QUEUE, connection=redis_client).count:
            break
        assert scheduler.poll() is None, scheduler.communicate()[0]
        time.sleep(0.05)
    scheduler.send_signal(signal.SIGTERM)
    output, _ = scheduler.communicate(timeout=60)
    assert scheduler.returncode == 0, output
    assert Queue(POLL_QUEUE, connection=redis_client).count == 1  # its one poll, queued once


def test_sigterm_to_run_mid_run_loses_and_doubles_nothing(site: Site, tmp_path: Path, redis_client: redis.Redis,
                                                          redis_url: str, feeds_file: Path) -> None:
    feeds, links = slow_site(site, feeds=2, per_feed=8)
    env = _env(redis_url, write_feeds(feeds_file, feeds))
    env["FEEDSTREAM_METRICS_PORT"] = "0"
    run = subprocess.Popen([sys.executable, "-m", "worker", "run", "--no-dashboard"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_pages(site, run, at_least=2)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=180)
    assert run.returncode == 0, output
    assert StartedJobRegistry(EXTRACT_QUEUE, connection=redis_client).count == 0, output
    published = len(articles(redis_client))
    assert 0 < published < len(links)

    # The rest is still queued; a burst run finishes it (the feeds themselves have nothing new).
    finish = subprocess.run([sys.executable, "-m", "worker", "run", "--burst"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=180)
    assert finish.returncode == 0, finish.stderr
    urls = [doc["url"] for doc in articles(redis_client)]
    assert sorted(urls) == sorted(links)
