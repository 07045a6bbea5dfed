"""Feed discovery: links read from pages (pure), and whole discoveries against a loopback site."""

from __future__ import annotations

import pytest

from tests.site import Site
from tests.sitegen import atom, rss2, story
from worker.errors import FetchError
from worker.feeds.discover import NoFeedFound, discover, feed_links, well_known_urls
from worker.fetch import HttpClient, HttpSettings
from worker.sources.manage import fetch_for_discovery

WORDPRESS_HEAD = """<!DOCTYPE html><html lang="en-GB"><head><meta charset="UTF-8">
<title>Telecoms Weekly</title>
<link rel='dns-prefetch' href='//fonts.example' />
<link rel="alternate" type="application/rss+xml" title="Telecoms Weekly &raquo; Feed" href="{base}/feed/" />
<link rel="alternate" type="application/rss+xml" title="Telecoms Weekly &raquo; Comments Feed"
      href="{base}/comments/feed/" />
<link rel="https://api.w.org/" href="{base}/wp-json/" />
<link rel="alternate" title="JSON" type="application/json" href="{base}/wp-json/wp/v2/pages/2" />
<link rel="alternate" type="application/json+oembed" href="{base}/wp-json/oembed/1.0/embed?url=x" />
<link rel="stylesheet" href="/style.css">
</head><body><p>Hello</p></body></html>"""


def test_feed_links_follow_types_base_and_skip_wordpress_rest_alternates() -> None:
    links = feed_links(WORDPRESS_HEAD.format(base="https://tw.example"), "https://tw.example/")
    assert [(link.url, link.type) for link in links] == [("https://tw.example/feed/", "rss"),
                                                         ("https://tw.example/comments/feed/", "rss")]
    assert links[0].title == "Telecoms Weekly » Feed"
    page = """<html><head><base href="/blog/"><LINK REL="Alternate Feed" TYPE="application/atom+xml" href="atom">
      <link rel=alternate type="application/feed+json; charset=utf-8" href="https://cdn.example/f.json">
      <link rel="alternate" type="text/html" href="/fr/"><link rel="alternate" type="application/rss+xml"
      href="javascript:alert(1)"></head></html>"""
    assert [(link.url, link.type) for link in feed_links(page, "https://site.example/x/y")] == [
        ("https://site.example/blog/atom", "atom"), ("https://cdn.example/f.json", "json")]
    assert feed_links("<html><head><link rel=alternate type=application/rss+xml", "https://a.example/") == []
    assert well_known_urls("https://a.example:8443/some/page?q=1")[0] == "https://a.example:8443/feed/"


@pytest.fixture
def get() -> object:
    client = HttpClient(HttpSettings(allow_private=True, deadline=5))
    yield fetch_for_discovery(client.get)
    client.close()


def feed_body(title: str) -> str:
    return rss2(title, [(story(1), "https://example.test/a")])


def test_a_wordpress_like_page_is_found_by_its_alternate_link(site: Site, get: object) -> None:
    site.add("/", WORDPRESS_HEAD.format(base=site.base))
    site.add("/feed/", feed_body("Telecoms Weekly"), "application/rss+xml")
    site.add("/comments/feed/", feed_body("Comments"), "application/rss+xml")
    found = discover(site.url("/"), get)  # type: ignore[arg-type]
    assert [(f.url, f.found_by, f.title) for f in found] == [
        (site.url("/feed/"), "link", "Telecoms Weekly"), (site.url("/comments/feed/"), "link", "Comments")]
    assert not [r for r in site.requests if "wp-json" in r.path]
    assert not site.hits("/rss.xml")  # the page named its feeds: the usual paths are not tried
    assert [f.url for f in discover(site.url("/"), get, first=True)] == [site.url("/feed/")]  # type: ignore[arg-type]


def test_a_page_without_links_is_found_by_the_usual_paths(site: Site, get: object) -> None:
    site.add("/", "<html><head><title>Plain</title></head><body>no links</body></html>")
    site.add("/feed/", feed_body("Plain"), "application/rss+xml")
    site.add("/atom.xml", atom("Plain atom", [(story(2), "https://example.test/b")]), "application/atom+xml")
    site.add("/rss.xml", "<html><body>a page, not a feed</body></html>")
    found = discover(site.url("/"), get)  # type: ignore[arg-type]
    assert [(f.url, f.found_by) for f in found] == [(site.url("/feed/"), "path"), (site.url("/atom.xml"), "path")]


def test_a_broken_link_falls_back_and_a_feed_address_is_itself(site: Site, get: object) -> None:
    site.add("/", f'<html><head><link rel="alternate" type="application/rss+xml" href="{site.base}/gone"></head>')
    site.add("/index.xml", feed_body("Index"), "application/rss+xml")
    assert [(f.url, f.found_by) for f in discover(site.url("/"), get)] == [  # type: ignore[arg-type]
        (site.url("/index.xml"), "path")]
    assert [f.found_by for f in discover(site.url("/index.xml"), get)] == ["address"]  # type: ignore[arg-type]


def test_no_feed_and_no_site_say_so(site: Site, get: object) -> None:
    site.add("/", "<html><body>nothing here</body></html>")
    with pytest.raises(NoFeedFound, match=r"no feed found at .*/feed/, /rss\.xml"):
        discover(site.url("/"), get)  # type: ignore[arg-type]
    with pytest.raises(FetchError, match="404"):
        discover(site.url("/missing"), get)  # type: ignore[arg-type]
    refusing = HttpClient(HttpSettings(allow_private=False, deadline=5))
    with pytest.raises(FetchError, match="non-public address"):
        discover(site.url("/"), fetch_for_discovery(refusing.get))
    refusing.close()
