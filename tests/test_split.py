"""Split mode: queues and feed state on one Redis, publishing state on another (FEEDSTREAM_PUBLISH_REDIS_URL),
run as a user runs it: two real Redis servers, `feedstream run --burst`, `tail` and `status`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.pipeline_helpers import articles, write_feeds
from tests.site import Site
from tests.test_cli import base_env, build_site, feedstream
from worker.ops.embedded import EmbeddedRedis

# what only the publishing side may hold, and what only the queues' side may hold
PUBLISHING = ("articles", "feedstream:claims:*", "feedstream:nd:*", "feedstream:boiler*", "feedstream:out:*")
QUEUES = ("rq:*", "feedstream:feed:*", "feedstream:seen:*", "feedstream:due")


@pytest.fixture
def publishing(tmp_path: Path) -> Iterator[redis.Redis]:
    server = EmbeddedRedis(tmp_path / "publishing")
    server.start()
    client = redis.Redis.from_url(server.url)
    client.url = server.url  # type: ignore[attr-defined]
    yield client
    client.close()
    server.stop()


def _has(client: redis.Redis, pattern: str) -> bool:
    return next(iter(client.scan_iter(match=pattern, count=1000)), None) is not None


def test_a_burst_in_split_mode_publishes_every_article_once_and_keeps_each_side_to_its_own(
        site: Site, redis_client: redis.Redis, redis_url: str, publishing: redis.Redis, feeds_file: Path) -> None:
    feeds, bodies = build_site(site)
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_PUBLISH_REDIS_URL=publishing.url,  # type: ignore[attr-defined]
                   FEEDSTREAM_FEEDS=str(write_feeds(feeds_file, feeds)))
    first = feedstream("run", "--burst", env=env)
    assert first.returncode == 0, first.stderr
    # the summary adds the publishing side's counts (published) to the queues' side's (entries)
    assert f"20 new entries, {len(bodies)} article(s) published" in first.stdout
    docs = articles(publishing)
    assert Counter(d["url"] for d in docs) == Counter(dict.fromkeys(bodies, 1))
    second = feedstream("run", "--burst", env=env)
    assert second.returncode == 0 and "0 article(s) published" in second.stdout
    assert len(articles(publishing)) == len(bodies)

    # every entry settled, though the outbox (with the queues) is not beside the publish script's claims
    assert redis_client.zcard("feedstream:outbox") == 0 and not publishing.exists("feedstream:outbox")
    for pattern in PUBLISHING:
        assert _has(publishing, pattern) and not _has(redis_client, pattern), pattern
    for pattern in QUEUES:
        assert _has(redis_client, pattern) and not _has(publishing, pattern), pattern
    tail = feedstream("tail", "--from-start", env=env)
    assert tail.returncode == 0 and all(url in tail.stdout for url in bodies)
    status = feedstream("status", env=env)
    assert status.returncode == 0 and f"stream 'articles': {len(bodies)} entries" in status.stdout


def test_an_unreachable_publishing_redis_exits_2_with_one_line(redis_url: str, feeds_file: Path) -> None:
    write_feeds(feeds_file, {"a": "http://127.0.0.1:9/feed.xml"})
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_PUBLISH_REDIS_URL="redis://127.0.0.1:9/0",
                   FEEDSTREAM_FEEDS=str(feeds_file))
    result = feedstream("run", "--burst", env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("feedstream: cannot reach the publishing Redis at redis://127.0.0.1:9/0")
