"""News sitemaps as a source kind: the pure reader, and sources read through the real pipeline."""

from __future__ import annotations

import dataclasses
import gzip
import time
import zlib
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker

from tests.pipeline_helpers import admin_context, articles
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.errors import ParseError
from worker.feeds.discover import discover
from worker.feeds.sitemap import parse_sitemap, robots_sitemaps
from worker.fetch import HttpClient, HttpSettings
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll
from worker.sources.spec import source_from_dict, source_to_dict
from worker.timefmt import iso_from_epoch

NOW = time.time()
HOUR = 3600.0


def news_sitemap(items: list[tuple[str, str, float]]) -> str:
    """A Google News sitemap of (url, title, published epoch)."""
    urls = "".join(
        f"<url><loc>{url}</loc><news:news><news:publication><news:name>Telecoms</news:name>"
        f"<news:language>en</news:language></news:publication>"
        f"<news:publication_date>{iso_from_epoch(at)}</news:publication_date><news:title>{title}</news:title>"
        f"</news:news></url>"
        for url, title, at in items)
    return ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>')


def sitemap_index(locs: list[str]) -> str:
    return ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs) + "</sitemapindex>")


# -- the pure reader ------------------------------------------------------------------------------

def test_a_news_sitemap_lists_recent_articles_with_title_date_and_language() -> None:
    body = news_sitemap([("http://x.test/a", "Fresh", NOW - HOUR), ("http://x.test/b", "Old", NOW - 5 * 86400)])
    doc = parse_sitemap(body.encode(), url="http://x.test/news.xml", now=NOW, max_age=2 * 86400)
    assert [(e.url, e.title) for e in doc.entries] == [("http://x.test/a", "Fresh")]
    assert doc.entries[0].published == iso_from_epoch(NOW - HOUR)
    assert doc.language == "en" and doc.old == 1 and not doc.index


def test_a_plain_sitemap_dates_by_lastmod_and_leaves_undated_urls_out() -> None:
    body = ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"><url><image:image>'
            '<image:loc>http://x.test/pic.jpg</image:loc><image:title>Pic</image:title></image:image>'
            f'<loc>/rel</loc><lastmod>{iso_from_epoch(NOW - HOUR)}</lastmod></url>'
            '<url><loc>http://x.test/undated</loc></url></urlset>')
    doc = parse_sitemap(body.encode(), url="http://x.test/sitemap.xml", now=NOW, max_age=86400)
    assert [(e.url, e.title) for e in doc.entries] == [("http://x.test/rel", "")] and doc.undated == 1


def test_hostile_sitemaps_are_refused() -> None:
    bomb = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    data = b"".join(bomb.compress(zeros) for _ in range(60)) + bomb.flush()  # 60 MiB inflated
    with pytest.raises(ParseError, match="inflates to more than"):
        parse_sitemap(data, url="http://x.test/s.xml.gz", now=NOW, max_age=86400)
    laughs = b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaa">]><urlset><url><loc>&a;</loc></url></urlset>'
    with pytest.raises(ParseError, match="entities"):
        parse_sitemap(laughs, url="http://x.test/s.xml", now=NOW, max_age=86400)
    with pytest.raises(ParseError, match="not a sitemap"):
        parse_sitemap(b"<rss/>", url="http://x.test/s.xml", now=NOW, max_age=86400)
    gz = gzip.compress(news_sitemap([("http://x.test/a", "A", NOW)]).encode())
    assert len(parse_sitemap(gz, url="http://x.test/s.xml.gz", now=NOW, max_age=86400).entries) == 1


def test_robots_sitemap_lines_and_the_kind_in_every_way_in() -> None:
    robots = b"User-agent: *\nDisallow: /x\nSitemap: /news.xml\nsitemap: http://x.test/index.xml # comment\n"
    assert robots_sitemaps(robots, "http://x.test/robots.txt") == ["http://x.test/news.xml",
                                                                   "http://x.test/index.xml"]
    source = source_from_dict({"name": "n", "kind": "sitemap", "url": "http://x.test/news.xml", "max_age": "2h"})
    assert source_to_dict(source) == {"name": "n", "kind": "sitemap", "url": "http://x.test/news.xml",
                                      "max_age": "2h"}
    assert source_from_dict({"name": "n", "kind": "sitemap", "url": "http://x.test/news.xml",
                             "max_age": 7200}).max_age == "7200s"  # whole seconds read as the same duration


def test_discovery_reads_robots_txt_sitemaps(site: Site) -> None:
    site.add("/", "<html><head><title>No feed here</title></head><body>hi</body></html>")
    site.add("/robots.txt", "Sitemap: /news-sitemap.xml\n", "text/plain")
    site.add("/news-sitemap.xml", news_sitemap([(site.url("/a"), "A", NOW)]), "application/xml")
    with HttpClient(HttpSettings(allow_private=True, deadline=5)) as client:
        found = discover(site.url("/"), client.get)
    assert [(f.url, f.kind, f.found_by) for f in found] == [(site.url("/news-sitemap.xml"), "sitemap", "robots")]


# -- through the pipeline -------------------------------------------------------------------------

def work(client: redis.Redis) -> None:
    SimpleWorker([Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client)],
                 connection=client).work(burst=True, logging_level="WARNING")


def serve_articles(site: Site, numbers: range, age: float = 0.0) -> list[tuple[str, str, float]]:
    """Article pages whose own dates agree with the sitemap's (max_age is judged on both)."""
    out = []
    for n in numbers:
        when = NOW - age - (n + 1) * HOUR
        s = dataclasses.replace(story(n), iso=iso_from_epoch(when))
        out.append((site.add(f"/news/{s.slug}/", telecoms_page(s)), s.title, when))
    return out


def test_a_news_sitemap_index_publishes_recent_articles_once(site: Site, redis_client: redis.Redis,
                                                             redis_url: str, feeds_file: Path) -> None:
    context, admin = admin_context(redis_url, feeds_file)
    recent = serve_articles(site, range(3))
    old = serve_articles(site, range(3, 5), age=10 * 86400)
    site.add("/news-1.xml", news_sitemap(recent[:2] + old), "application/xml")
    site.add("/news-2.xml.gz", gzip.compress(news_sitemap(recent[2:]).encode()), "application/x-gzip")
    foreign = site.url("/elsewhere.xml").replace("127.0.0.1", "localhost")
    site.add("/sitemap-index.xml", sitemap_index([site.url("/news-1.xml"), site.url("/news-2.xml.gz"), foreign]),
             "application/xml", headers={"ETag": '"i1"'})
    admin.create({"name": "news", "kind": "sitemap", "url": site.url("/sitemap-index.xml")}, check=False)
    enqueue_poll(context.poll_queue, "news")
    work(redis_client)
    published = articles(redis_client)
    assert sorted(doc["url"] for doc in published) == sorted(url for url, _, _ in recent)
    assert {doc["title"] for doc in published} == {title for _, title, _ in recent}
    status = context.store.feed_status("news")
    assert "on other hosts refused" in status["last_warning"] and "older than max_age" in status["last_warning"]
    assert not site.hits("/elsewhere.xml")

    enqueue_poll(context.poll_queue, "news")  # the index unchanged: 304, nothing more
    work(redis_client)
    assert len(articles(redis_client)) == 3
    assert context.store.feed_status("news")["last_status"] == "304"


def test_a_sitemap_bomb_is_refused_and_other_sources_go_on(site: Site, redis_client: redis.Redis,
                                                           redis_url: str, feeds_file: Path) -> None:
    context, admin = admin_context(redis_url, feeds_file)
    site.add("/bomb-index.xml", sitemap_index([site.url(f"/s{n}.xml") for n in range(5000)]), "application/xml")
    only_foreign = sitemap_index([site.url("/x.xml").replace("127.0.0.1", "localhost")])
    site.add("/foreign-index.xml", only_foreign, "application/xml")
    items = [(s, url) for s, url in ((story(n), site.url(f"/p/{n}/")) for n in range(2))]
    for s, url in items:
        site.add(url.removeprefix(site.base), telecoms_page(s))
    site.add("/feed.xml", rss2("Feed", items), "application/rss+xml")
    admin.create({"name": "bomb", "kind": "sitemap", "url": site.url("/bomb-index.xml")}, check=False)
    admin.create({"name": "foreign", "kind": "sitemap", "url": site.url("/foreign-index.xml")}, check=False)
    admin.create({"name": "feed", "url": site.url("/feed.xml")}, check=False)
    for name in ("bomb", "foreign", "feed"):
        enqueue_poll(context.poll_queue, name)
    work(redis_client)
    assert "5,000 sitemaps" in context.store.feed_status("bomb")["last_error"]
    assert "other hosts" in context.store.feed_status("foreign")["last_error"]
    assert not site.hits("/s0.xml")
    assert {doc["feed"] for doc in articles(redis_client)} == {"feed"}
