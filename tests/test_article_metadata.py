"""Articles on the stream carry the metadata: from the page first, from the feed where the page is silent."""

from __future__ import annotations

from html import escape
from pathlib import Path

import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page

NEW_FIELDS = {"authors", "updated", "categories", "image", "sitename", "description", "word_count", "markdown",
              "extraction", "tags", "language", "published", "author", "title", "text"}


def bare_page(title: str, paragraphs: list[str]) -> str:
    """A page that says nothing about itself: no author, no date, no language, no site name."""
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return f"<html><head><title>{escape(title)}</title></head><body><article>{body}</article></body></html>"


def test_metadata_from_page_first_then_from_feed(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    rich, bare = story(60), story(61)
    rich.author, bare.author = "Jamie Davies", "Feed Writer"
    items = [(rich, site.add(f"/news/{rich.slug}/", telecoms_page(rich))),
             (bare, site.add(f"/news/{bare.slug}/", bare_page(bare.title, bare.paragraphs)))]
    bare.published, bare.iso = "Tue, 24 Nov 2026 07:15:00 +0000", "2026-11-24T07:15:00Z"
    feed = site.add("/feed/", rss2("Telecoms.com", items), "application/rss+xml")
    run_burst(make_context(redis_url, write_feeds(feeds_file, {"t": feed})))

    docs = {doc["url"]: doc for doc in articles(redis_client)}
    page_doc, feed_doc = docs[items[0][1]], docs[items[1][1]]
    for doc in (page_doc, feed_doc):
        assert set(doc) >= NEW_FIELDS
        assert doc["extraction"] == "precision"
        assert doc["word_count"] > 100
        assert doc["markdown"].replace("\n\n", " ") == doc["text"].replace("\n\n", " ")

    # from the page
    assert page_doc["authors"] == ["Jamie Davies"]
    assert page_doc["published"] == rich.iso
    assert page_doc["sitename"] == "Telecoms.com"
    assert page_doc["categories"] == ["Networks"]
    assert page_doc["language"] == "en"

    # from the feed where the page is silent (language detected from the text)
    assert feed_doc["author"] == "Feed Writer" and feed_doc["authors"] == ["Feed Writer"]
    assert feed_doc["published"] == "2026-11-24T07:15:00Z"
    assert feed_doc["sitename"] is None and feed_doc["image"] is None and feed_doc["updated"] is None
    assert feed_doc["language"] == "en"
    assert feed_doc["text"] == bare.body_text
