"""Finding a site's feeds from its address, the way Miniflux's ``reader/subscription/finder.go`` does.

1. The address itself may be a feed.
2. Else the page's ``<link rel="alternate">`` elements of RSS, Atom and JSON Feed types (WordPress's
   ``/wp-json/`` alternates are its REST API, not feeds, and are skipped).
3. Else the usual paths at the site's root: ``/feed/``, ``/rss.xml``, ``/atom.xml``, ``/feed.xml``,
   ``/index.xml``, ``/feed.json``.
4. Else the sitemaps the site's robots.txt names (``Sitemap:`` lines): a news sitemap is a source too
   (``kind = "sitemap"``); asked for sitemaps only, the address itself or robots.txt's.

A candidate counts only if its body parses as a feed (:func:`parse_feed`). The candidates are
found by pure functions; :func:`discover` fetches them through a ``get`` it is given (the guarded
client: address checks, deadline, size cap), so this stage imports no HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

from worker.errors import FeedstreamError, FetchError, ParseError
from worker.feeds.parse import parse_feed
from worker.feeds.sitemap import parse_sitemap, robots_sitemaps
from worker.models import Fetched

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",
    "application/rdf+xml": "rss",
    "application/x-rss+xml": "rss",
    "text/xml": "rss",
    "application/xml": "rss",
}
WELL_KNOWN_PATHS = ("/feed/", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml", "/feed.json")
MAX_LINKS = 10  # alternates tried per page; a page listing hundreds (tag feeds) is cut here
MAX_HTML_CHARS = 2_000_000  # links sit in the head: no need to parse a huge body to its end
ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
          "text/xml;q=0.9, application/json;q=0.8, text/html;q=0.7, */*;q=0.5")

Get = Callable[[str], Fetched]


@dataclass(frozen=True)
class FeedLink:
    """A feed a page points to."""

    url: str
    title: str = ""
    type: str = ""  # rss | atom | json (from the link's type)


@dataclass(frozen=True)
class FoundFeed:
    """A candidate that was fetched and parsed as a feed."""

    url: str  # as linked (or the usual path); the poller follows redirects itself
    title: str
    found_by: str  # "address" (the URL given is a feed), "link" (<link rel=alternate>) or "path"
    entries: int
    kind: str = "feed"  # or "sitemap" (found_by "robots": named by robots.txt)

    def as_dict(self) -> dict[str, object]:
        return {"url": self.url, "title": self.title, "found_by": self.found_by, "entries": self.entries,
                "kind": self.kind}


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str, str]] = []  # href, type, title

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "").strip() for k, v in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "link":
            rels = values.get("rel", "").lower().split()
            if "alternate" in rels and values.get("href"):
                self.links.append((values["href"], values.get("type", "").lower(), values.get("title", "")))

    handle_startendtag = handle_starttag


def feed_links(html: str, page_url: str) -> list[FeedLink]:
    """The feeds a page links with ``<link rel="alternate">`` of a feed type, absolute, in page order."""
    collector = _LinkCollector()
    try:
        collector.feed(html[:MAX_HTML_CHARS])
        collector.close()
    except Exception:  # html.parser copes with almost anything; what it cannot, has no links for us
        pass
    base = page_url
    if collector.base:
        joined = urljoin(page_url, collector.base)
        if joined.startswith(("http://", "https://")):
            base = joined
    found: list[FeedLink] = []
    seen: set[str] = set()
    for href, mime, title in collector.links:
        kind = FEED_TYPES.get(mime.split(";")[0].strip())
        if kind is None:
            continue
        url = urljoin(base, href)
        if not url.startswith(("http://", "https://")) or "/wp-json/" in url or url in seen:
            continue
        seen.add(url)
        found.append(FeedLink(url, title, kind))
    return found[:MAX_LINKS]


def well_known_urls(page_url: str) -> list[str]:
    """The usual feed paths at the site's root."""
    parts = urlsplit(page_url)
    return [urlunsplit((parts.scheme, parts.netloc, path, "", "")) for path in WELL_KNOWN_PATHS]


_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_.:-]+)", re.I)


def page_text(fetched: Fetched) -> str:
    """The page's HTML as text: the charset the server or a ``<meta>`` names, else UTF-8 (links are ASCII)."""
    declared = re.search(r"charset=[\"']?([A-Za-z0-9_.:-]+)", fetched.content_type or "", re.I)
    meta = _META_CHARSET.search(fetched.body[:4096])
    for charset in ((declared.group(1) if declared else None), (meta.group(1).decode() if meta else None)):
        if charset:
            try:
                return fetched.body.decode(charset, "replace")
            except LookupError:
                continue
    return fetched.body.decode("utf-8", "replace")


def _as_feed(fetched: Fetched, url: str, found_by: str) -> FoundFeed | None:
    try:
        parsed = parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
    except ParseError:
        return _as_sitemap(fetched, url, found_by)
    return FoundFeed(url, parsed.title or "", found_by, len(parsed.entries))


def _as_sitemap(fetched: Fetched, url: str, found_by: str) -> FoundFeed | None:
    try:  # every entry counted, whatever its age: the source's max_age applies when it is polled
        doc = parse_sitemap(fetched.body, url=fetched.url, now=0.0, max_age=float("inf"))
    except ParseError:
        return None
    return FoundFeed(url, "", found_by, len(doc.children) if doc.index else len(doc.entries), kind="sitemap")


def _robots_sitemaps(page_url: str, get: Get) -> list[FoundFeed]:
    parts = urlsplit(page_url)
    try:
        robots = get(urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", "")))
    except FetchError:
        return []
    found = []
    for candidate in robots_sitemaps(robots.body, robots.url)[:5]:
        try:
            sitemap = _as_sitemap(get(candidate), candidate, "robots")
        except FetchError:
            continue
        if sitemap is not None:
            found.append(sitemap)
    return found


class NoFeedFound(FeedstreamError):
    """Nothing at the address is a feed; says where it looked."""

    stage = "discover"


def discover(url: str, get: Get, *, first: bool = False, sitemaps_only: bool = False) -> list[FoundFeed]:
    """The feeds at ``url``, best first (``first``: stop at the first one found); sitemaps named by
    robots.txt when there is no feed (``sitemaps_only``: the address itself if it is one, else those).

    Raises FetchError when the address itself cannot be fetched, NoFeedFound when nothing there
    is a feed. Candidates that fail to fetch or parse are passed over.
    """
    page = get(url)
    if sitemaps_only:
        itself = _as_sitemap(page, url, "address")
        found = [itself] if itself is not None else _robots_sitemaps(page.url, get)
        if not found:
            raise NoFeedFound(f"no sitemap found at {url}: it is not one, and robots.txt names none that reads")
        return found[:1] if first else found
    itself = _as_feed(page, url, "address")
    if itself is not None:
        return [itself]
    found: list[FoundFeed] = []
    tried: set[str] = {url}
    links = feed_links(page_text(page), page.url)
    for candidate, how in [*((link.url, "link") for link in links),
                           *((path, "path") for path in well_known_urls(page.url))]:
        if how == "path" and any(feed.found_by == "link" for feed in found):
            break  # the page named its feeds: the usual paths are only a fallback
        if candidate in tried:
            continue
        tried.add(candidate)
        try:
            feed = _as_feed(get(candidate), candidate, how)
        except FetchError:
            continue
        if feed is not None:
            found.append(feed)
            if first:
                break
    if not found:
        found = _robots_sitemaps(page.url, get)[: 1 if first else None]
    if not found:
        raise NoFeedFound(f"no feed found at {url}: it is not a feed, links none with "
                          f"<link rel=\"alternate\">, none of {', '.join(WELL_KNOWN_PATHS)} is one, "
                          "and robots.txt names no sitemap")
    return found
