"""A sitemap source's poll: its sitemap (or index, followed one level) read as a feed's listing.

The top sitemap is fetched by the poll like a feed (conditional GET, the adaptive schedule);
here its bytes become a :class:`~worker.models.ParsedFeed`, so new-entry detection and
publishing are the feed path's own. An index's child sitemaps are fetched through the same
polite, guarded client, one level only, within caps: at most ``MAX_CHILDREN`` of them, on the
index's own host, ``MAX_TOTAL_BYTES`` in all. An index beyond the caps is refused as a whole
(nothing is listed from it) with a status line saying why.
"""

from __future__ import annotations

import time

from worker.errors import FetchError, HostDeferred, ParseError
from worker.feeds import parse_feed
from worker.feeds.sitemap import MAX_SITEMAP_BYTES, parse_sitemap, same_site
from worker.models import Entry, Feed, Fetched, ParsedFeed, Sitemap
from worker.pipeline.context import Context
from worker.sources.rules import parse_age

SITEMAP_ACCEPT = "application/xml, text/xml;q=0.9, application/x-gzip;q=0.8, */*;q=0.5"
MAX_CHILDREN = 20  # child sitemaps followed per poll (those dated within max_age, or undated)
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # all the children's bytes (inflated) together
CHILDREN_BUDGET = 60.0  # seconds a poll may spend on an index's children (a poll job has 120)


def read_listing(context: Context, feed: Feed, fetched: Fetched) -> ParsedFeed:
    """The entries a fetched feed or sitemap lists; raises ParseError (or FetchError for an index's children)."""
    if not isinstance(feed, Sitemap):
        return parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
    now = time.time()
    max_age = parse_age(feed.max_age or Sitemap.max_age)
    doc = parse_sitemap(fetched.body, url=fetched.url, now=now, max_age=max_age)
    notes = [note for note in [doc.warning()] if note]
    entries, language = doc.entries, doc.language
    if doc.index:
        foreign = [child for child in doc.children if not same_site(child, fetched.url)]
        children = [child for child in doc.children if child not in foreign]
        if foreign and not children:
            raise ParseError(f"sitemap: the index lists only sitemaps on other hosts ({foreign[0]}): refused")
        if len(children) > MAX_CHILDREN:
            raise ParseError(f"sitemap: the index lists {len(children):,} sitemaps within max_age, more than the "
                             f"{MAX_CHILDREN} followed: refused (point the source at a news sitemap)")
        if foreign:
            notes.append(f"{len(foreign)} sitemap(s) on other hosts refused ({foreign[0]})")
        entries, languages, failed = [], set(), []
        total = 0
        started = time.monotonic()
        for child in children:
            if time.monotonic() - started > CHILDREN_BUDGET:
                failed.append(f"{child}: out of time")
                continue
            try:
                got = context.fetcher.get(child, accept=SITEMAP_ACCEPT)
                if not same_site(got.url, fetched.url):
                    raise ParseError(f"sitemap: {child} redirects to another host ({got.url}): refused")
                total += len(got.body)
                if total > MAX_TOTAL_BYTES:
                    raise _Refused(f"sitemap: the index's sitemaps exceed {MAX_TOTAL_BYTES // (1 << 20)} MiB "
                                     "together: refused")
                sub = parse_sitemap(got.body, url=got.url, now=now, max_age=max_age,
                                    cap=min(MAX_SITEMAP_BYTES, MAX_TOTAL_BYTES - total + len(got.body)))
            except (HostDeferred, _Refused):
                raise
            except (FetchError, ParseError) as exc:
                failed.append(f"{child}: {exc}")
                continue
            if sub.index:
                failed.append(f"{child}: an index inside an index (followed one level only)")
                continue
            entries.extend(sub.entries)
            if sub.language:
                languages.add(sub.language)
            if sub.warning():
                notes.append(sub.warning() or "")
        if failed and len(failed) == len(children):
            raise ParseError(f"sitemap: none of the index's {len(children)} sitemap(s) could be read: {failed[0]}")
        if failed:
            notes.append(f"{len(failed)} sitemap(s) unread: {failed[0]}")
        language = languages.pop() if len(languages) == 1 else None
    unique: dict[str, Entry] = {}
    for entry in entries:  # an article listed by two child sitemaps is one entry
        unique.setdefault(entry.guid, entry)
    return ParsedFeed(title=feed.name, language=language, entries=list(unique.values()),
                      warning="; ".join(notes) or None)


class _Refused(ParseError):
    """The index as a whole is refused (beyond a cap): nothing is listed from it."""
