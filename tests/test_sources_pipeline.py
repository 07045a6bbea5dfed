"""Jobs follow the sources in Redis: paused ones keep their state, removed ones stop, new ones are polled."""

from __future__ import annotations

from pathlib import Path

import redis
from rq import Queue, SimpleWorker

from tests.pipeline_helpers import articles, make_context
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll
from worker.sources.manage import AdminOptions, SourceAdmin


def work(client: redis.Redis) -> None:
    SimpleWorker([Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client)],
                 connection=client).work(burst=True, logging_level="WARNING")


def serve_feed(site: Site, numbers: range) -> str:
    items = []
    for n in numbers:
        s = story(n)
        items.append((s, site.add(f"/news/{s.slug}/", telecoms_page(s))))
    return site.add("/feed.xml", rss2("News", items), "application/rss+xml", headers={"ETag": '"v1"'})


def test_pause_keeps_validators_and_resume_polls_conditionally(site: Site, redis_client: redis.Redis,
                                                              redis_url: str, feeds_file: Path) -> None:
    feeds_file.write_text("feeds = []\n")
    context = make_context(redis_url, feeds_file)
    admin = SourceAdmin(context.store, None, AdminOptions(allow_private=True))
    url = serve_feed(site, range(2))
    admin.create({"name": "news", "url": url}, check=False)
    enqueue_poll(context.poll_queue, "news")
    work(redis_client)
    assert len(articles(redis_client)) == 2
    slot = context.store.due_times()["news"]

    admin.pause("news")
    enqueue_poll(context.poll_queue, "news")  # a poll queued before the pause reached the workers
    work(redis_client)
    assert len(site.hits("/feed.xml")) == 1  # not fetched while paused
    assert context.store.feed_status("news")["etag"] == '"v1"'

    admin.resume("news")
    assert context.store.due_times()["news"] == slot  # its schedule back as it was
    enqueue_poll(context.poll_queue, "news")
    work(redis_client)
    second = site.hits("/feed.xml")[1]
    assert second.headers.get("if-none-match") == '"v1"'  # conditional: the validators were kept
    assert context.store.feed_status("news")["last_status"] == "304"


def test_a_removed_feed_is_not_polled_again_and_what_it_published_stays(site: Site, redis_client: redis.Redis,
                                                                        redis_url: str, feeds_file: Path) -> None:
    feeds_file.write_text("feeds = []\n")
    context = make_context(redis_url, feeds_file)
    admin = SourceAdmin(context.store, None, AdminOptions(allow_private=True))
    admin.create({"name": "news", "url": serve_feed(site, range(3))}, check=False)
    enqueue_poll(context.poll_queue, "news")
    work(redis_client)
    admin.delete("news")
    enqueue_poll(context.poll_queue, "news")  # queued before the removal
    work(redis_client)
    assert len(site.hits("/feed.xml")) == 1
    assert "news" not in context.store.due_times() and context.store.claim_due(2e9, 60) == []
    assert len(articles(redis_client)) == 3  # the stream keeps what the source published
