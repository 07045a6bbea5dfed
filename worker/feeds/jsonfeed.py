"""JSON Feed 1.0/1.1 bytes -> ParsedFeed (feedparser 6.0.x has no JSON Feed reader). Pure."""

from __future__ import annotations

import email.utils
import json
import re
from datetime import UTC
from typing import Any

from worker.errors import ParseError
from worker.feeds.common import (
    build_entry,
    clean,
    http_url,
    opaque,
    scalar,
    short,
    tag_list,
    text_to_html,
    unique_entries,
    warning_text,
)
from worker.models import Entry, ParsedFeed
from worker.text import language_code
from worker.timefmt import iso_utc, parse_iso

__all__ = ["parse_json_feed"]

_JSONFEED_VERSION = re.compile(r"https?://jsonfeed\.org/version/1(?:\.\d+)?/?$")


def parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    try:
        text = body.decode(json.detect_encoding(body), errors="replace")
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too-long ints, absurd nesting
        raise ParseError(f"not a feed (invalid JSON: {short(str(exc))})") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not _JSONFEED_VERSION.match(version.strip()):
        raise ParseError("got JSON, but not a JSON Feed (no jsonfeed.org/version/1 \"version\")")

    warnings: list[str] = []
    items = doc.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        warnings.append(f'"items" is {type(items).__name__}, not a list')
        items = []
    feed_author = _json_author(doc)
    entries: list[Entry] = []
    skipped = 0
    for item in items:
        entry = _json_entry(item, url, feed_author) if isinstance(item, dict) else None
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return ParsedFeed(
        title=clean(scalar(doc.get("title"))),
        link=http_url(doc.get("home_page_url"), url),
        language=language_code(doc.get("language")),
        ttl_minutes=None,
        entries=unique_entries(entries, warnings, skipped),
        warning=warning_text(warnings),
        hub=_websub_hub(doc.get("hubs"), url),
        self_url=http_url(doc.get("feed_url"), url),
    )


def _websub_hub(hubs: Any, base: str) -> str | None:
    """The first WebSub hub of JSON Feed's ``hubs`` array."""
    for hub in hubs if isinstance(hubs, list) else []:
        if isinstance(hub, dict) and str(hub.get("type", "")).lower() == "websub":
            found = http_url(hub.get("url"), base)
            if found:
                return found
    return None


def _json_entry(item: dict[str, Any], base: str, feed_author: str | None) -> Entry | None:
    link = http_url(item.get("url"), base) or http_url(item.get("external_url"), base)
    if link is None:
        return None
    title = clean(scalar(item.get("title")))
    published = _iso_text(item.get("date_published")) or _iso_text(item.get("date_modified"))
    content_html = item.get("content_html")
    content_text = item.get("content_text")
    if isinstance(content_html, str) and content_html.strip():
        content: str | None = content_html  # as on the XML path: raw, only ever turned into text
    elif isinstance(content_text, str) and content_text.strip():
        content = text_to_html(content_text)
    else:
        content = None
    summary_text = item.get("summary")  # plain text in JSON Feed
    summary = text_to_html(summary_text) if isinstance(summary_text, str) and summary_text.strip() else None
    tags = item.get("tags")
    return build_entry(
        guid=opaque(scalar(item.get("id"))) or link,
        url=link,
        title=title,
        author=_json_author(item) or feed_author,
        published=published,
        content=content,
        summary=summary,
        tags=tag_list(tags if isinstance(tags, list) else []),
        updated=_iso_text(item.get("date_modified")),
    )


def _json_author(obj: dict[str, Any]) -> str | None:
    """authors[0].name (1.1), else author.name (1.0); a bare string is taken as a name."""
    authors = obj.get("authors")
    candidates = [*(authors if isinstance(authors, list) else []), obj.get("author")]
    for person in candidates:
        name = person.get("name") if isinstance(person, dict) else person
        if cleaned := clean(scalar(name)):
            return cleaned
    return None


def _iso_text(value: Any) -> str | None:
    """RFC 3339 (as the spec says) or RFC 822 (as some feeds do) -> ISO 8601 UTC; no offset is read as UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:  # parse_iso raises OverflowError when an offset moves year 1 or 9999 out of range
        moment = parse_iso(text)
        if moment is None:
            moment = email.utils.parsedate_to_datetime(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return iso_utc(moment.astimezone(UTC))
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
