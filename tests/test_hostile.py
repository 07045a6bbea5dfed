"""Hostile servers and hostile links through the whole pipeline.

Each bad feed sits in one burst beside a good feed: the bad one ends with a clear,
stage-prefixed error on its status, the good one publishes normally, no job fails.
Servers are real sockets on loopback (tests.site, and raw ones from tests.test_fetch_client).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from tests.test_fetch_client import GiB, OnePortAllowed, RawServer, bomb, hold_silently, trickle
from worker.fetch import HttpSettings, PoliteFetcher

_connects: list[tuple[str, int]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple):
            _connects.append((str(address[0]), int(address[1])))


sys.addaudithook(_audit)


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[socket.socket, RawServer], None] | None = None, **kw: Any) -> RawServer:
        servers.append(RawServer(handler, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def good_feed(site: Site) -> tuple[str, list[tuple[Any, str]]]:
    items = []
    for n in range(500, 502):
        s = story(n)
        items.append((s, site.add(f"/news/{s.slug}/", telecoms_page(s))))
    return site.add("/good.xml", rss2("Good", items), "application/rss+xml"), items


def billion_laughs() -> str:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    return (f'<?xml version="1.0"?>\n<!DOCTYPE rss [{entities}]>\n<rss version="2.0"><channel><title>&lol9;'
            '</title><item><title>x</title><link>https://example.test/x</link></item></channel></rss>')


def test_hostile_feeds_each_end_with_a_clear_error_and_the_good_feed_publishes(
        site: Site, raw: Callable[..., RawServer], redis_client: redis.Redis, redis_url: str,
        feeds_file: Path) -> None:
    body = rss2("T", [])
    trickler = raw(lambda conn, srv: (srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)),
                                      trickle(body.encode(), srv, conn)))
    silent = raw(hold_silently)
    gz = bomb("gzip")
    bomber = raw(lambda conn, srv: (srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                                                   b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gz)),
                                    srv.send(conn, gz), hold_silently(conn, srv)))

    def endless(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n")
        block = b"<" * (64 * 1024)
        for _ in range(GiB // len(block)):
            srv.send(conn, block)

    huge = raw(endless)
    site.add("/loop-a", b"", status=302, headers={"Location": "/loop-b"})
    site.add("/loop-b", b"", status=302, headers={"Location": "/loop-a"})
    good, items = good_feed(site)
    feeds = {
        "trickle": trickler.url("/feed"),
        "silent": silent.url("/feed"),
        "bomb": bomber.url("/feed"),
        "huge": huge.url("/feed"),
        "loop": site.url("/loop-a"),
        "html": site.add("/html", "<!DOCTYPE html><html><body><p>Welcome</p></body></html>"),
        "empty": site.add("/empty", b"", "application/rss+xml"),
        "malformed": site.add("/malformed", "<<<this is not xml>>> &&&", "application/rss+xml"),
        "entities": site.add("/entities", billion_laughs(), "application/rss+xml"),
        "good": good,
    }
    context = make_context(redis_url, write_feeds(feeds_file, feeds), deadline=2)
    context.store.sync_feeds(list(feeds), time.time())
    run_burst(context)

    expected = {
        "trickle": "fetch: no complete response within 2 s",
        "silent": "fetch: no complete response within 2 s",
        "bomb": "fetch: body larger than 10 MiB",
        "huge": "fetch: body larger than 10 MiB",
        "loop": "fetch: too many redirects (6)",
        "html": "parse: got an HTML page, not a feed",
        "empty": "parse: empty body",
        "malformed": "parse: not a feed (malformed XML",
        "entities": "parse: refusing XML entity declarations",
    }
    for name, message in expected.items():
        state = context.store.feed_status(name)
        assert state["last_error"].startswith(message), (name, state["last_error"])
        assert state["consecutive_errors"] == "1", name
        assert context.store.due_times()[name] > time.time() + 60, name  # backed off, not retried at once
    assert huge.sent < 64 * 1024 * 1024
    good_state = context.store.feed_status("good")
    assert good_state["consecutive_errors"] == "0" and good_state["last_status"] == "200"
    assert sorted(doc["url"] for doc in articles(redis_client)) == sorted(link for _, link in items)


def test_wrong_or_missing_charset_still_publishes_the_right_text(site: Site, redis_client: redis.Redis,
                                                                 redis_url: str, feeds_file: Path) -> None:
    feed = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Caf\u00e9</title><item>'
            '<title>\u00c9t\u00e9 \u00e0 Paris</title><link>https://example.test/ete</link><guid>ete</guid>'
            '<description>Un \u00e9t\u00e9 chaud \u00e0 Paris.</description></item></channel></rss>')
    declared_utf8 = feed.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>')
    feeds = {
        # Latin-1 bytes that claim to be UTF-8, in the prolog and in the header.
        "wrong": site.add("/wrong.xml", declared_utf8.encode("latin-1"), "application/rss+xml; charset=utf-8"),
        # No charset anywhere, UTF-8 bytes: XML's default applies.
        "missing": site.add("/missing.xml", feed.replace("ete", "ete2").encode("utf-8"), "application/rss+xml"),
    }
    context = make_context(redis_url, write_feeds(feeds_file, feeds, full_text=False))
    run_burst(context)

    docs = {doc["feed"]: doc for doc in articles(redis_client)}
    assert docs["wrong"]["title"] == docs["missing"]["title"] == "\u00c9t\u00e9 \u00e0 Paris"
    assert docs["wrong"]["text"] == "Un \u00e9t\u00e9 chaud \u00e0 Paris."
    wrong = context.store.feed_status("wrong")
    assert wrong["consecutive_errors"] == "0"
    assert wrong["last_warning"].startswith("parse: ") and "utf-8" in wrong["last_warning"]


def test_item_links_to_inside_addresses_are_refused_and_no_listener_is_reached(
        site: Site, raw: Callable[..., RawServer], redis_client: redis.Redis, redis_url: str,
        feeds_file: Path) -> None:
    inside = raw(hold_silently)
    try:
        alias = raw(hold_silently, host="127.0.0.2")
    except OSError:
        pytest.skip("no 127.0.0.2 loopback alias here")
    links = {
        "loopback": inside.url("/admin"),
        "alias": alias.url("/admin", host="127.0.0.2"),
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "mapped": f"http://[::ffff:127.0.0.1]:{inside.port}/admin",
        "file": "file:///etc/passwd",
    }
    stories = {name: story(600 + i) for i, name in enumerate(links)}
    feed = site.add("/feed.xml", rss2("F", [(stories[name], link) for name, link in links.items()]),
                    "application/rss+xml")
    good, items = good_feed(site)
    site_port = int(site.base.rsplit(":", 1)[1])
    context = make_context(redis_url, write_feeds(feeds_file, {"hostile": feed, "good": good}),
                           allow_private=False)
    # The production guard, except that the test site itself counts as a public server.
    http = OnePortAllowed(HttpSettings(deadline=3), site_port)
    context.http = http
    context.fetcher = PoliteFetcher(http, context.store)
    del _connects[:]
    run_burst(context)

    docs = {doc["url"]: doc for doc in articles(redis_client)}
    for name in ("loopback", "alias", "metadata", "mapped"):
        doc = docs[links[name]]
        assert doc["extraction"] == "feed", name
        assert doc["fallback_reason"].startswith("fetch: refused non-public address"), (name, doc["fallback_reason"])
        assert doc["text"] == stories[name].body_text
    # A file: link never becomes an article at all; the feed says why.
    assert not any(url.startswith("file:") for url in docs)
    assert "without an http(s) link" in context.store.feed_status("hostile")["last_warning"]
    assert inside.accepts == 0 and alias.accepts == 0
    assert not [c for c in _connects if c[0] in ("169.254.169.254", "127.0.0.2", "::ffff:127.0.0.1")
                or c[1] in (inside.port, alias.port)]
    for _, link in items:
        assert docs[link]["extraction"] in ("precision", "recall")


def test_second_burst_sends_validators_gets_304s_and_fetches_no_page(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    feeds = {}
    pages = []
    for f in range(3):
        items = []
        for n in range(700 + f * 10, 702 + f * 10):
            s = story(n)
            pages.append(f"/f{f}/{s.slug}/")
            items.append((s, site.add(pages[-1], telecoms_page(s))))
        validator = {"ETag": f'"f{f}"'} if f != 1 else {"Last-Modified": "Mon, 23 Nov 2026 09:30:00 GMT"}
        feeds[f"f{f}"] = site.add(f"/f{f}.xml", rss2(f"F{f}", items), "application/rss+xml", headers=validator)
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    run_burst(context)
    assert len(articles(redis_client)) == 6
    hits_before = {path: len(site.hits(path)) for path in pages}
    assert set(hits_before.values()) == {1}

    run_burst(context)
    for f in range(3):
        second = site.hits(f"/f{f}.xml")[-1]
        assert second.headers.get("if-none-match") == (f'"f{f}"' if f != 1 else None)
        assert second.headers.get("if-modified-since") == (None if f != 1 else "Mon, 23 Nov 2026 09:30:00 GMT")
        assert context.store.feed_status(f"f{f}")["last_status"] == "304"
    assert {path: len(site.hits(path)) for path in pages} == hits_before
    assert len(articles(redis_client)) == 6
