"""Helpers both feed readers share: values made plain, links made absolute, entries de-duplicated."""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from worker.models import Entry

__all__ = ["build_entry", "clean", "http_url", "opaque", "scalar", "short", "tag_list", "text_to_html",
           "unique_entries", "warning_text"]

def scalar(value: Any) -> str | None:
    """A string, or a number written as one (feeds put ids and titles as numbers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def clean(value: Any) -> str:
    """Whitespace collapsed; "" for anything that is not a string."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def tag_list(values: Iterable[Any]) -> list[str]:
    cleaned = (clean(scalar(value)) for value in values)
    return list(dict.fromkeys(tag for tag in cleaned if tag))


def opaque(value: Any) -> str:
    """An id: only surrounding whitespace removed (ids are opaque, compared as they are)."""
    return value.strip() if isinstance(value, str) else ""


def http_url(value: Any, base: str) -> str | None:
    """``value`` made absolute against ``base``; None unless it is http(s) with a host."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        absolute = urllib.parse.urljoin(base, value.strip())
        parts = urllib.parse.urlsplit(absolute)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return absolute


def unique_entries(entries: list[Entry], warnings: list[str], skipped: int) -> list[Entry]:
    """Drop repeated guids (first wins) and note what was left out."""
    if skipped:
        warnings.append(f"{skipped} {'entry' if skipped == 1 else 'entries'} without an http(s) link skipped")
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.guid not in seen:
            seen.add(entry.guid)
            unique.append(entry)
    if repeated := len(entries) - len(unique):
        noun = "entry" if repeated == 1 else "entries"
        warnings.append(f"{repeated} {noun} repeating an earlier id skipped")
    return unique


def warning_text(warnings: list[str]) -> str | None:
    return short("; ".join(warnings), _MAX_WARNING) if warnings else None


def short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_to_html(text: str) -> str:
    """Plain text -> escaped HTML: blank lines split paragraphs, single newlines become <br>."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "\n".join(
        "<p>" + html.escape(p.strip()).replace("\n", "<br>") + "</p>" for p in paragraphs if p.strip()
    )


_MAX_WARNING = 500


def build_entry(*, guid: str, url: str, title: str, author: str | None, published: str | None,
          content: str | None, summary: str | None, tags: list[str], updated: str | None = None) -> Entry:
    """An Entry as both readers build it: a summary identical to the content is no summary of its own."""
    if summary is not None and content is not None and summary.strip() == content.strip():
        summary = None
    return Entry(guid=guid, url=url, title=title, author=author, published=published, content_html=content,
                 summary_html=summary, tags=tags, updated=updated)
