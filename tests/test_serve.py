"""Feeds out: the stream served as Atom and JSON Feed over real HTTP, read back with feedparser."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import feedparser
import pytest
import redis

from worker.dedupe.keys import text_key, url_key
from worker.feeds import parse_feed
from worker.models import Article, UpdatePolicy
from worker.out.render import stream_time
from worker.out.server import FeedServer, make_server
from worker.store import PublishRequest, Store, UpdateRequest, VersionRecord
from worker.timefmt import iso_utc


def publish(store: Store, n: int, feed: str, tags: list[str], url: str | None = None) -> Article:
    url = url or f"https://news.example.com/story-{n}"
    article = Article(id=f"a{n:03d}", url=url, title=f"Story {n} & <friends>", feed=feed, tags=tags,
                      text=f"Paragraph one of story {n}.\n\nParagraph two of story {n}, with \x01 a control char.",
                      published=f"2026-11-{10 + n % 10:02d}T08:00:00Z", author=f"Writer {n}", language="en")
    result = store.publish(article, url_keys=[url_key(url)], text_key=text_key(article.text))
    assert result.outcome == "published"
    return article


@pytest.fixture
def served(redis_client: redis.Redis) -> Iterator[tuple[Store, str]]:
    store = Store(redis_client)
    server: FeedServer = make_server(store, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_atom_round_trips_through_feedparser_with_every_field(served: tuple[Store, str]) -> None:
    store, base = served
    published = [publish(store, n, "telecoms", ["telecoms"]) for n in range(3)]
    status, headers, body = get(f"{base}/feed.atom")
    assert status == 200 and headers["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(io.BytesIO(body))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == [a.title for a in reversed(published)]
    newest = parsed.entries[0]
    article = published[-1]
    assert newest.link == article.url
    assert newest.author == article.author
    assert newest.published == article.published
    assert newest.content[0].value == article.text.replace("\x01", "")
    assert [t.term for t in newest.tags] == ["telecoms"]
    assert newest.id == f"urn:feedstream:article:{article.id}"


def test_second_request_with_validators_gets_304(served: tuple[Store, str]) -> None:
    store, base = served
    publish(store, 1, "telecoms", ["telecoms"])
    for path in ("/feed.atom", "/feed.json", "/feeds/telecoms.atom", "/tags/telecoms.json"):
        status, headers, _ = get(base + path)
        assert status == 200 and headers["ETag"] and headers["Last-Modified"]
        status, _, body = get(base + path, {"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b""), path
        status, _, body = get(base + path, {"If-Modified-Since": headers["Last-Modified"]})
        assert (status, body) == (304, b""), path
    status, first, _ = get(f"{base}/feed.atom")
    publish(store, 2, "telecoms", ["telecoms"])  # a new article: the old validators no longer match
    status, _, body = get(f"{base}/feed.atom", {"If-None-Match": first["ETag"]})
    assert status == 200 and b"Story 2" in body


def test_json_feed_is_valid_1_1_and_reads_back(served: tuple[Store, str]) -> None:
    store, base = served
    articles = [publish(store, n, "telecoms", ["telecoms"]) for n in range(2)]
    publish(store, 9, "letters", ["mail"], url="mid:abc@telecoms.example")
    status, headers, body = get(f"{base}/feed.json")
    assert status == 200 and headers["Content-Type"].startswith("application/feed+json")
    doc = json.loads(body)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"] and doc["feed_url"] == f"{base}/feed.json"
    for item in doc["items"]:  # JSON Feed 1.1: every item has an id and content
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item["content_text"], str)
    assert doc["items"][0]["url"] == "mid:abc@telecoms.example"
    assert doc["items"][0]["_feedstream"]["feed"] == "letters"
    parsed = parse_feed(body, url=f"{base}/feed.json", headers={"content-type": headers["Content-Type"]})
    assert [e.url for e in parsed.entries] == [a.url for a in reversed(articles)]  # mid: links are not http
    assert parsed.entries[0].title == articles[-1].title


def test_per_source_and_per_tag(served: tuple[Store, str]) -> None:
    store, base = served
    publish(store, 1, "telecoms", ["telecoms"])
    publish(store, 2, "arstechnica", ["tech"])
    publish(store, 3, "letters", ["telecoms", "mail"])
    titles = lambda path: [e.title for e in feedparser.parse(io.BytesIO(get(base + path)[2])).entries]  # noqa: E731
    assert titles("/feeds/telecoms.atom") == ["Story 1 & <friends>"]
    assert titles("/feeds/letters.atom") == ["Story 3 & <friends>"]
    assert titles("/tags/telecoms.atom") == ["Story 3 & <friends>", "Story 1 & <friends>"]
    assert titles("/tags/tech.atom") == ["Story 2 & <friends>"]
    assert titles("/tags/nothing.atom") == []


def test_paging_follows_next_links_through_every_article_once(served: tuple[Store, str]) -> None:
    store, base = served
    published = [publish(store, n, "telecoms", ["telecoms"]) for n in range(7)]
    for fmt in ("atom", "json"):
        seen: list[str] = []
        url: str | None = f"{base}/feed.{fmt}?limit=3"
        pages = 0
        while url:
            status, _, body = get(url)
            assert status == 200
            pages += 1
            if fmt == "atom":
                parsed = feedparser.parse(io.BytesIO(body))
                seen += [e.id for e in parsed.entries]
                url = next((link.href for link in parsed.feed.links if link.rel == "next"), None)
            else:
                doc = json.loads(body)
                seen += [item["id"] for item in doc["items"]]
                url = doc.get("next_url")
        assert seen == [f"urn:feedstream:article:{a.id}" for a in reversed(published)], fmt
        assert pages == 3


def test_bad_requests_are_400_and_unknown_paths_404(served: tuple[Store, str]) -> None:
    _store, base = served
    assert get(f"{base}/feed.atom?before=yesterday")[0] == 400
    assert get(f"{base}/feed.atom?limit=100000")[0] == 400
    assert get(f"{base}/feed.rss")[0] == 404


def test_a_quiet_tags_page_is_complete_under_20000_newer_articles_and_a_304_reads_no_entry(
        served: tuple[Store, str], redis_client: redis.Redis) -> None:
    store, base = served
    quiet = [publish(store, n, "quietfeed", ["quiet"]) for n in range(8)]
    for start in range(0, 20_000, 1_000):  # other tags' articles, newer than all of the quiet tag's
        store.publish_many([PublishRequest(Article(id=f"b{n:05d}", url=f"https://busy.example/{n}", title="busy",
                                                   text="busy", feed="busy", tags=["busy"]), [f"busy-{n}"], None)
                            for n in range(start, start + 1_000)])
    for path in ("/tags/quiet.atom", "/feeds/quietfeed.atom"):
        status, headers, body = get(base + path)
        assert status == 200
        parsed = feedparser.parse(io.BytesIO(body))
        assert [e.title for e in parsed.entries] == [a.title for a in reversed(quiet)], path
        assert not any(link.rel == "next" for link in parsed.feed.links)
        reads = redis_client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0)
        status, _, body = get(base + path, {"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b"")
        assert redis_client.info("commandstats").get("cmdstat_xrange", {}).get("calls", 0) == reads


def test_articles_published_before_the_indexes_are_still_served_after_the_indexed_ones(
        served: tuple[Store, str], redis_client: redis.Redis) -> None:
    store, base = served
    # two entries as the publish script wrote them before feeds-out indexes existed (issue 18)
    for n in (1, 2):
        doc = {"id": f"old{n}", "url": f"https://old.example/{n}", "title": f"Old {n}", "text": "old",
               "feed": "telecoms", "tags": ["telecoms"], "published": None}
        redis_client.xadd("articles", {"article": json.dumps(doc), "id": doc["id"], "url": doc["url"],
                                       "feed": "telecoms"})
    publish(store, 3, "telecoms", ["telecoms"])
    publish(store, 4, "other", ["other"])
    for path in ("/tags/telecoms.atom?limit=1", "/feeds/telecoms.atom?limit=2", "/feed.atom?limit=3"):
        seen: list[str] = []
        url: str | None = base + path
        while url:
            parsed = feedparser.parse(io.BytesIO(get(url)[2]))
            seen += [e.title for e in parsed.entries]
            url = next((link.href for link in parsed.feed.links if link.rel == "next"), None)
        expected = ["Story 3 & <friends>", "Old 2", "Old 1"]
        assert seen == (["Story 4 & <friends>", *expected] if path.startswith("/feed.") else expected), path


@pytest.mark.parametrize("mode", ["separate", "inline"])
def test_an_updated_article_is_shown_once_as_its_latest_version_in_its_place(
        served: tuple[Store, str], redis_client: redis.Redis, mode: str) -> None:
    store, base = served
    first = [publish(store, n, "telecoms", ["telecoms"]) for n in range(2)]
    _, before, _ = get(f"{base}/feed.json")
    time.sleep(1.1)  # feeds give times in whole seconds: the update's must differ from the first version's
    # the update published as the pipeline does it (version record, then the atomic version step)
    updater = Store(redis_client, updates=UpdatePolicy(mode=mode))
    record = VersionRecord(version=1, title="", paragraphs=b"")
    updater.remember_versions({first[0].id: record})
    newer = replace(first[0], title="Story 0, corrected", version=2, event="updated")
    [result] = updater.publish_updates([UpdateRequest(first[0].id, first[0].url, "telecoms", record,
                                                      newer.to_json())])
    assert result.outcome == "published" and result.stream_id
    assert redis_client.xlen("articles") == (3 if mode == "inline" else 2)
    changed_at = iso_utc(stream_time(result.stream_id))

    status, headers, body = get(f"{base}/feed.json", {"If-None-Match": before["ETag"]})
    assert status == 200 and headers["ETag"] != before["ETag"]
    items = json.loads(body)["items"]
    assert [i["title"] for i in items] == [first[1].title, "Story 0, corrected"]  # once, in its first place
    assert items[1]["date_modified"] == changed_at and items[1]["_feedstream"]["version"] == 2
    assert items[1]["date_modified"] != iso_utc(stream_time(items[1]["_feedstream"]["stream_id"]))
    entries = feedparser.parse(io.BytesIO(get(f"{base}/feed.atom")[2])).entries
    assert [e.title for e in entries] == [first[1].title, "Story 0, corrected"]
    assert entries[1].updated == changed_at
