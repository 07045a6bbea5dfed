"""`feedstream metrics`: /metrics and /healthz over real HTTP, from a real burst's Redis counters."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.site import Site
from tests.test_downstream import burst_of_every_kind
from worker.ops.embedded import EmbeddedRedis
from worker.sources.manage import AdminOptions, SourceAdmin
from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    return env


@contextlib.contextmanager
def process(*args: str, redis_url: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "worker", *args], env=env or _env(redis_url),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@contextlib.contextmanager
def metrics_server(redis_url: str) -> Iterator[str]:
    port = _free_port()
    with process("metrics", "--port", str(port), redis_url=redis_url) as proc:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):  # readiness: wait until it listens (or died)
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        yield base


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_report_a_bursts_polls_statuses_articles_duplicates_fallbacks_queues_and_delay(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    burst_of_every_kind(site, redis_url, feeds_file)
    with metrics_server(redis_url) as base:
        status, text = get(base + "/metrics")
    assert status == 200
    found = samples(text)
    assert found[("feedstream_redis_up", ())] == 1
    assert found[("feedstream_polls_total", (("outcome", "ok"),))] == 3
    assert found[("feedstream_http_responses_total", (("kind", "feed"), ("status", "200")))] == 3
    assert found[("feedstream_http_responses_total", (("kind", "page"), ("status", "200")))] == 7
    assert found[("feedstream_http_responses_total", (("kind", "page"), ("status", "404")))] == 1
    assert found[("feedstream_articles_published_total", ())] == 7
    assert found[("feedstream_duplicates_total", (("kind", "exact"),))] == 1
    assert found[("feedstream_extraction_fallbacks_total", ())] == 1
    for queue in ("poll", "extract"):
        assert found[("feedstream_queue_jobs", (("queue", queue), ("state", "queued")))] == 0
    assert ("feedstream_workers", ()) in found
    assert found[("feedstream_stream_length", ())] == 7
    # sitegen's stories are dated in the past: every published article has a delay observation.
    assert found[("feedstream_publish_delay_seconds_count", ())] == 7
    assert found[("feedstream_publish_delay_seconds_bucket", (("le", "+Inf"),))] == 7
    assert found[("feedstream_publish_delay_seconds_sum", ())] > 0


def test_metrics_show_queued_jobs_and_consumer_group_backlog(redis_client: redis.Redis, redis_url: str) -> None:
    from rq import Queue

    from worker.pipeline.queues import POLL_QUEUE, enqueue_poll
    enqueue_poll(Queue(POLL_QUEUE, connection=redis_client), "some-feed")
    redis_client.xadd("articles", {"article": "{}"})
    redis_client.xgroup_create("articles", "readers", id="0")
    redis_client.xreadgroup("readers", "r1", {"articles": ">"})
    with metrics_server(redis_url) as base:
        found = samples(get(base + "/metrics")[1])
        # sources added and paused while it runs show on the next scrape
        admin = SourceAdmin(Store(redis_client), None, AdminOptions())
        for name in ("a", "b"):
            admin.create({"name": name, "url": f"https://{name}.example/feed"}, check=False)
        admin.pause("b")
        later = samples(get(base + "/metrics")[1])
    assert found[("feedstream_queue_jobs", (("queue", "poll"), ("state", "queued")))] == 1
    assert found[("feedstream_consumer_group_pending", (("group", "readers"),))] == 1
    assert later[("feedstream_sources", (("kind", "feed"), ("managed_by", "api"), ("state", "active")))] == 1
    assert later[("feedstream_sources", (("kind", "feed"), ("managed_by", "api"), ("state", "paused")))] == 1


def test_healthz_is_ok_while_the_scheduler_ticks_and_503_when_its_heartbeat_is_stale(
        redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    feeds_file.write_text('[[feeds]]\nname = "f"\nurl = "http://127.0.0.1:9/feed"\ninterval = 3600\n')
    with metrics_server(redis_url) as base:
        status, body = get(base + "/healthz")
        assert status == 503 and json.loads(body)["checks"]["scheduler"]["error"] == "scheduler: no heartbeat yet"

        env = {**_env(redis_url), "FEEDSTREAM_FEEDS": str(feeds_file)}
        with process("scheduler", redis_url=redis_url, env=env):
            for _ in range(300):  # readiness: until the scheduler's first tick
                status, body = get(base + "/healthz")
                if status == 200:
                    break
                time.sleep(0.1)
            assert status == 200, body
            assert json.loads(body)["checks"]["redis"]["ok"] is True

        # The scheduler stopped long ago, as far as the heartbeat says.
        Store(redis_client).beat("scheduler", time.time() - 600)
        status, body = get(base + "/healthz")
        assert status == 503
        assert json.loads(body)["checks"]["scheduler"]["error"].startswith("scheduler: last tick 6")
        assert get(base + "/nothing")[0] == 404


def test_healthz_is_503_and_metrics_say_redis_down_when_redis_is_unreachable(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        Store(redis.Redis.from_url(url)).beat("scheduler", time.time())
        with metrics_server(url) as base:
            assert get(base + "/healthz")[0] == 200
            server.stop()
            status, body = get(base + "/healthz")
            assert status == 503
            check = json.loads(body)["checks"]["redis"]
            assert check["ok"] is False and check["error"].startswith("redis: unreachable")
            status, text = get(base + "/metrics")
            assert status == 200 and samples(text)[("feedstream_redis_up", ())] == 0
    finally:
        server.stop()


@pytest.mark.parametrize("argv", [["metrics", "--port", "notaport"]])
def test_metrics_rejects_a_bad_port(argv: list[str], redis_url: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "worker", *argv], env=_env(redis_url), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "invalid int value" in proc.stderr


def test_delay_histogram_buckets_are_cumulative_and_bounds_inclusive(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    for seconds in (-5, 0, 60, 61, 10**9):  # a future-dated article counts as no delay
        store.observe_delay(seconds)
    buckets, total = store.delay_histogram()
    as_dict = dict(buckets)
    assert as_dict["60"] == 3 and as_dict["300"] == 4 and as_dict["604800"] == 4 and as_dict["+Inf"] == 5
    assert buckets[-1][0] == "+Inf" and [c for _, c in buckets] == sorted(c for _, c in buckets)
    assert total == 60 + 61 + 10**9


def test_http_counts_by_kind_and_status(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    for kind, status in (("feed", 200), ("feed", 200), ("page", 404), ("page", "error")):
        store.count_http(kind, status)
    assert store.http_counts() == {("feed", "200"): 2, ("page", "404"): 1, ("page", "error"): 1}
