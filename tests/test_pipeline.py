"""The pipeline end to end: feeds in, one clean article per story out on the stream."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import atom, rss1, rss2, story, telecoms_page
from worker.models import ARTICLE_SCHEMA_VERSION


def serve_stories(site: Site, numbers: range, prefix: str = "/news") -> list[tuple]:
    items = []
    for n in numbers:
        s = story(n)
        link = site.add(f"{prefix}/{s.slug}/", telecoms_page(s))
        items.append((s, link))
    return items


def test_rss2_atom_and_rss1_feeds_publish_each_article_body(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    rss_items, atom_items, rdf_items = (serve_stories(site, range(a, a + 3)) for a in (0, 10, 20))
    feeds = {
        "rss": site.add("/rss.xml", rss2("RSS", rss_items), "application/rss+xml"),
        "atom": site.add("/atom.xml", atom("Atom", atom_items), "application/atom+xml"),
        "rdf": site.add("/rdf.xml", rss1("RDF", rdf_items), "application/rdf+xml"),
    }
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    run_burst(context)

    published = {doc["url"]: doc for doc in articles(redis_client)}
    expected = {link: s for s, link in rss_items + atom_items + rdf_items}
    assert set(published) == set(expected)
    for link, s in expected.items():
        doc = published[link]
        assert doc["text"] == s.body_text, link
        assert doc["title"] == s.title
        assert doc["extraction"] == "precision"
        assert doc["author"] == s.author
        assert doc["published"] == s.iso
        assert doc["language"] == "en"
    assert {doc["feed"] for doc in published.values()} == {"rss", "atom", "rdf"}


def test_telecoms_style_page_publishes_exactly_the_body_paragraphs(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    [(s, link)] = serve_stories(site, range(40, 41))
    feed = site.add("/feed/", rss2("Telecoms.com", [(s, link)]), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"telecoms": feed}))
    run_burst(context)

    [doc] = articles(redis_client)
    assert doc["text"] == s.body_text
    for furniture in ("Networks", "Register for", "inbox", "Articles You May Like", "Related headline",
                      "Leave a comment", "All rights reserved", "Share on", "Popular story"):
        assert furniture not in doc["text"], furniture
    assert not doc["text"].startswith(s.title)


def test_one_article_in_two_feeds_with_tracking_parameters_is_published_once(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    [(s, link)] = serve_stories(site, range(50, 51))
    first = rss2("A", [(s, link + "?utm_source=rss&utm_medium=feed")])
    second = rss2("B", [(s, link + "?utm_source=partner&fbclid=xyz#comments")])
    feeds = {"a": site.add("/a.xml", first, "application/rss+xml"),
             "b": site.add("/b.xml", second, "application/rss+xml")}
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    run_burst(context)

    docs = articles(redis_client)
    assert len(docs) == 1
    assert docs[0]["url"] == link


def test_same_text_under_a_new_guid_and_url_is_published_once(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    s = story(60)
    original = site.add(f"/news/{s.slug}/", telecoms_page(s))
    copy = site.add(f"/mirror/{s.slug}-copy/", telecoms_page(s))
    feeds = {"a": site.add("/a.xml", rss2("A", [(s, original)]), "application/rss+xml"),
             "b": site.add("/b.xml", rss2("B", [(s, copy)]), "application/rss+xml")}
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    run_burst(context)

    assert len(articles(redis_client)) == 1
    assert context.store.counters()["duplicates_exact"] == 1


def test_second_run_over_unchanged_feeds_publishes_and_fetches_nothing(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    items = serve_stories(site, range(70, 74))
    feed = site.add("/feed/", rss2("F", items), "application/rss+xml", headers={"ETag": '"v1"'})
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}))
    run_burst(context)
    assert len(articles(redis_client)) == 4
    page_hits = sum(len(site.hits(f"/news/{s.slug}/")) for s, _ in items)

    run_burst(context)
    assert len(articles(redis_client)) == 4
    assert sum(len(site.hits(f"/news/{s.slug}/")) for s, _ in items) == page_hits
    second_poll = site.hits("/feed/")[-1]
    assert second_poll.headers.get("if-none-match") == '"v1"'
    assert context.store.feed_status("f")["last_status"] == "304"


def test_feed_changed_but_items_known_publishes_nothing_new(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    items = serve_stories(site, range(80, 83))
    feed = site.add("/feed/", rss2("F", items), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}))
    run_burst(context)
    more = serve_stories(site, range(83, 84))
    site.add("/feed/", rss2("F", more + items), "application/rss+xml")
    run_burst(context)

    docs = articles(redis_client)
    assert [d["title"] for d in docs][-1] == more[0][0].title
    assert len(docs) == 4


def test_page_404_falls_back_to_the_feed_content_and_says_so(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    s = story(90)
    missing = site.url(f"/news/{s.slug}/")  # never added: the site answers 404
    feed = site.add("/feed/", rss2("F", [(s, missing)]), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}))
    run_burst(context)

    [doc] = articles(redis_client)
    assert doc["extraction"] == "feed"
    assert "404" in doc["fallback_reason"] and doc["fallback_reason"].startswith("fetch: ")
    assert doc["text"] == s.body_text
    assert doc["title"] == s.title
    assert doc["authors"] == [s.author] and doc["published"] == s.iso
    assert doc["language"] == "en"  # detected from the feed's text
    assert doc["word_count"] > 100 and doc["markdown"] == doc["text"]


def test_stream_entry_contract(site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    items = serve_stories(site, range(95, 96))
    feed = site.add("/feed/", rss2("F", items), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"f": feed}))
    run_burst(context)

    [(_, fields)] = redis_client.xrange("articles")
    assert set(fields) >= {b"article", b"id", b"url", b"feed"}
    [doc] = articles(redis_client)
    assert doc["schema"] == ARTICLE_SCHEMA_VERSION
    for key in ("id", "url", "title", "text", "published", "feed", "author", "language", "duplicate_of"):
        assert key in doc, key
    assert doc["duplicate_of"] is None
    assert isinstance(doc["id"], str) and len(doc["id"]) >= 16


def test_feed_failure_is_recorded_and_does_not_stop_other_feeds(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    items = serve_stories(site, range(100, 102))
    feeds = {"good": site.add("/feed/", rss2("F", items), "application/rss+xml"),
             "html": site.add("/not-a-feed/", "<html><body><p>hello</p></body></html>"),
             "gone": site.url("/missing.xml")}
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    run_burst(context)

    assert len(articles(redis_client)) == 2
    assert context.store.feed_status("html")["last_error"].startswith("parse: ")
    gone = context.store.feed_status("gone")
    assert gone["last_error"].startswith("fetch: ") and "404" in gone["last_error"]
    assert gone["consecutive_errors"] == "1"


def test_scheduler_ticks_poll_feeds_in_batches_and_publish_everything(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    from rq import Queue, SimpleWorker

    from worker.ops.scheduler import tick
    from worker.pipeline.queues import EXTRACT_QUEUE, POLL_BATCH, POLL_QUEUE
    from worker.store import Store

    feeds = {}
    expected = set()
    for f in range(POLL_BATCH + 3):  # more feeds than one poll job carries
        items = serve_stories(site, range(100 + 2 * f, 102 + 2 * f), prefix=f"/f{f}")
        feeds[f"feed{f}"] = site.add(f"/feed{f}.xml", rss2(f"Feed {f}", items), "application/rss+xml")
        expected |= {link for _, link in items}
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    store = Store(redis_client)
    assert sorted(store.due_times()) == sorted(feeds)  # applying the feeds file scheduled them, due now
    queued = tick(store, context.poll_queue, now=time.time() + 1)
    assert sorted(queued) == sorted(feeds)
    assert context.poll_queue.count == 2  # two batches, not one job per feed

    SimpleWorker([Queue(POLL_QUEUE, connection=redis_client), Queue(EXTRACT_QUEUE, connection=redis_client)],
                 connection=redis_client).work(burst=True, logging_level="WARNING")
    assert {doc["url"] for doc in articles(redis_client)} == expected
    assert store.counters()["polls_ok"] == len(feeds)
    # every poll released its lock: the next slot's polls are not skipped
    assert store.acquire_polls(list(feeds), ttl=5) == list(feeds)
