"""``feedstream sources test NAME [URL]``: a source's rules tried on its feed (or one article page), publishing nothing.

Fetches as the workers do (the guarded, polite client, the source's request settings, robots.txt),
judges each entry by the source's rules before its page is fetched and again after extraction,
and prints what would be published and which rule dropped or stripped what. Nothing is written
to the stream, the seen items or the source's status.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from types import SimpleNamespace
from typing import Any, TextIO

from worker.cli.edge import Edge
from worker.errors import ExtractError, FetchError, ParseError, SourceInvalid
from worker.extract import decode_html, extract_article
from worker.feeds import parse_feed
from worker.fetch import HttpClient, PoliteFetcher
from worker.models import Entry, Feed
from worker.pipeline.pages import PAGE_ACCEPT
from worker.pipeline.poll import FEED_ACCEPT
from worker.sources.rules import RuleError, entry_fields, judge, judge_article, request_headers, rules_of
from worker.timefmt import seconds_since


def run_source_test(edge: Edge, args: argparse.Namespace, out: TextIO) -> int:
    """Print (or ``--json``) one line per entry tried; exit 0, or 1 when the source cannot be fetched."""
    snapshot = edge.store.sources_snapshot()
    feed = snapshot.get(args.name).source
    if not isinstance(feed, Feed):
        raise SourceInvalid(f"{args.name} is a newsletter: test works on feeds", {"name": "is not a feed"})
    defaults = snapshot.defaults
    rules = rules_of(feed, defaults)
    strip = tuple(dict.fromkeys((*defaults.get("strip", ()), *feed.strip)))
    try:
        headers = {**({"User-Agent": defaults["user_agent"]} if defaults.get("user_agent") else {}),
                   **request_headers(feed, os.environ)}
    except RuleError as exc:
        raise SourceInvalid(f"{args.name}: {exc}", {"basic_auth_password_env": str(exc)}) from None
    settings = edge.settings
    client = HttpClient(settings.http)
    fetcher = PoliteFetcher(client, edge.store, host_concurrency=settings.host_concurrency, robots=settings.robots,
                            robots_ttl=settings.robots_ttl)
    try:
        if args.url:
            entries = [Entry(guid=args.url, url=args.url, feed=feed.name, tags=list(feed.tags))]
        else:
            try:
                fetched = fetcher.get(feed.url, accept=FEED_ACCEPT, headers=headers)
                parsed = parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
                entries = parsed.entries[:max(args.limit, 1)]
            except (FetchError, ParseError) as exc:
                print(f"feed {feed.url}: {exc}", file=out)
                return 1
            for entry in entries:
                entry.feed = feed.name
                entry.tags = list(dict.fromkeys([*entry.tags, *feed.tags]))
        results = [_try(entry, feed, rules, strip, headers, fetcher) for entry in entries]
    finally:
        client.close()
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False), file=out)
    else:
        _print(results, out)
    return 0


def _try(entry: Entry, feed: Feed, rules: Any, strip: tuple[str, ...], headers: dict[str, str],
         fetcher: PoliteFetcher) -> dict[str, Any]:
    now = time.time()
    result: dict[str, Any] = {"url": entry.url, "title": entry.title}
    before = judge(rules, entry_fields(entry.title, entry.url, entry.author, entry.tags),
                   age=seconds_since(entry.published, now), final=False)
    if before.keep is False:
        return {**result, "outcome": "dropped before fetching", "rule": before.rule}
    if not feed.full_text:
        return {**result, "outcome": "would publish the feed's own content (full_text = false)"}
    try:
        fetched = fetcher.get(entry.url, accept=PAGE_ACCEPT, page=True, headers=headers)
        page = extract_article(decode_html(fetched.body, fetched.content_type), url=fetched.url,
                               entry_title=entry.title, entry_tags=entry.tags, entry_author=entry.author,
                               entry_published=entry.published, feed_html=entry.content_html or entry.summary_html,
                               selector=feed.selector, strip=strip)
    except (FetchError, ExtractError) as exc:
        return {**result, "outcome": "would publish the feed's own content", "reason": str(exc)}
    result.update({"title": page.title or entry.title, "extraction": page.extraction, "words": page.word_count,
                   "stripped": page.stripped, "selector": page.selector, "text": page.text[:300]})
    article = SimpleNamespace(title=page.title or entry.title, url=fetched.url, author=page.author or entry.author,
                              tags=[*entry.tags, *page.tags], categories=page.categories, text=page.text,
                              published=page.published or entry.published)
    after = judge_article(rules, article, now)
    if after.keep is False:
        return {**result, "outcome": "dropped after extraction", "rule": after.rule}
    return {**result, "outcome": "would publish"}


def _print(results: list[dict[str, Any]], out: TextIO) -> None:
    for r in results:
        print(f"{r['outcome'].upper()}: {r['title'] or '(no title)'} <{r['url']}>", file=out)
        if r.get("rule"):
            print(f"    rule: {r['rule']}", file=out)
        if r.get("reason"):
            print(f"    why: {r['reason']}", file=out)
        if "extraction" in r:
            print(f"    extraction: {r['extraction']}, {r['words']} words", file=out)
        if r.get("selector"):
            print(f"    selector: {r['selector']}", file=out)
        for css, count in (r.get("stripped") or {}).items():
            print(f"    strip {css!r}: {count} element(s) removed", file=out)
        if r.get("text") and r["outcome"] == "would publish":
            print(f"    text: {r['text'][:200]!r}", file=out)
    print(f"{sum(r['outcome'].startswith('would') for r in results)} of {len(results)} would be published "
          "(nothing was)", file=out)
