"""Consumer-group health: a group that falls behind a small MAXLEN shows its lag and the entries trimmed
before it read them, in `feedstream status`, `status --json`, /metrics and /healthz (real Redis, real
processes, real HTTP)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline_helpers import write_feeds
from tests.test_cli import feedstream
from tests.test_metrics import _env, _free_port, get, process
from tests.test_store import make_article
from worker.store import Store

MAXLEN = 50
ARTICLES = 202


def test_a_group_behind_a_small_maxlen_shows_its_lag_and_lost_entries(redis_client: redis.Redis, redis_url: str,
                                                                      tmp_path: Path) -> None:
    store = Store(redis_client, stream_maxlen=MAXLEN)
    # "idle" is created before anything is published and never reads; "partial" reads (and acks) 20;
    # "current" reads everything, after the publishing.
    for n in range(20):
        store.publish(make_article(n), url_keys=[f"u{n}"], text_key=None)
    for group in ("idle", "partial", "current"):
        redis_client.xgroup_create("articles", group, id="0")
    read = redis_client.xreadgroup("partial", "p1", {"articles": ">"}, count=20)
    redis_client.xack("articles", "partial", *[entry_id for entry_id, _ in read[0][1][:15]])
    for n in range(20, ARTICLES):
        store.publish(make_article(n), url_keys=[f"u{n}"], text_key=None)
    length = redis_client.xlen("articles")
    assert MAXLEN <= length < ARTICLES  # trimmed (approximately: whole nodes of 100 entries)
    while redis_client.xreadgroup("current", "c1", {"articles": ">"}, count=100):
        pass
    # "late" starts at the stream's first entry: nothing lost yet, but its lag is past 80% of MAXLEN
    first_id = redis_client.xrange("articles", count=1)[0][0]
    redis_client.xgroup_create("articles", "late", id=first_id)

    env = {**_env(redis_url), "FEEDSTREAM_STREAM_MAXLEN": str(MAXLEN),
           "FEEDSTREAM_FEEDS": str(write_feeds(tmp_path / "feeds.toml", {"f": "http://127.0.0.1:9/rss"}))}
    report = json.loads(feedstream("status", "--json", env=env).stdout)
    groups = {g["name"]: g for g in report["stream"]["groups"]}
    trimmed = ARTICLES - length
    assert groups["idle"]["lag"] == length and groups["idle"]["lag_exact"]
    assert groups["idle"]["trimmed"] == trimmed and groups["idle"]["trimmed_exact"]  # read nothing: exact
    assert groups["partial"]["pending"] == 5 and groups["partial"]["lag"] == length
    # it read 20 of the trimmed entries; Redis 6.2 cannot say which, so the count is an estimate in range
    assert 1 <= groups["partial"]["trimmed"] <= trimmed
    assert groups["current"]["lag"] == 0 and groups["current"]["trimmed"] == 0
    assert groups["late"]["lag"] == length - 1 and groups["late"]["trimmed"] == 0
    assert report["stream"] == {**report["stream"], "length": length, "maxlen": MAXLEN}

    table = feedstream("status", env=env).stdout
    assert "idle (0 consumer(s), 0 unacked)" in table and "partial (1 consumer(s), 5 unacked)" in table
    assert f"  idle: {length} not yet delivered (lag), {trimmed} trimmed before it read them: LOST" in table
    assert f"  partial: {length} not yet delivered (lag), ~" in table  # an estimate, and said to be
    assert "  current: 0 not yet delivered (lag), 0 trimmed before it read them\n" in table
    assert f"  late: {length - 1} not yet delivered (lag), 0 trimmed" in table and "about to lose entries" in table

    port = _free_port()
    with process("metrics", "--port", str(port), redis_url=redis_url, env=env) as proc:
        for _ in range(200):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert proc.poll() is None
            time.sleep(0.1)
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        values = {(s.name, s.labels.get("group")): s.value
                  for family in text_string_to_metric_families(body) for s in family.samples}
        assert values[("feedstream_consumer_group_lag", "idle")] == length
        assert values[("feedstream_consumer_group_trimmed", "idle")] == trimmed
        assert values[("feedstream_consumer_group_trimmed", "current")] == 0
        assert values[("feedstream_consumer_group_lag", "late")] == length - 1
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        health = json.loads(body)
        warnings = health["checks"]["consumer_groups"]["warnings"]
        assert any(w.startswith(f"consumer group idle: {trimmed} entries trimmed") for w in warnings), warnings
        assert any(w.startswith("consumer group late: lag") for w in warnings), warnings
        assert not any("current" in w for w in warnings)
