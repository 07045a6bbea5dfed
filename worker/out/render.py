"""Stream articles -> Atom 1.0 and JSON Feed 1.1 documents. Pure: data in, bytes out.

Each item is ``(stream id, article document)`` as read from the stream, newest
first. An entry's ``updated`` is the time it reached the stream (from the
stream id), so a reader's "new" matches the stream's order; ``published`` is
the article's own date when it has one. An article with update events is shown
as its latest version, still at its first publication's place: ``modified``
maps its stream id to the latest version's, whose time is its ``updated``
(Atom) / ``date_modified`` (JSON Feed), the way feed readers notice an edit.

Article text is plain text (the stream's format), so Atom carries it as
``<content type="text">`` and JSON Feed as ``content_text``. feedstream's own
fields (source feed, duplicate_of, stream id, List-Id) ride along in Atom under
our namespace and in JSON Feed under the ``_feedstream`` extension object (the
spec's way to extend: keys starting with an underscore).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.timefmt import iso_utc

ATOM_NS = "http://www.w3.org/2005/Atom"
FS_NS = "https://feedstream.invalid/ns/1"  # our extension elements; a namespace name, never fetched
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
JSON_FEED_TYPE = "application/feed+json; charset=utf-8"
# XML 1.0 cannot carry these at all, even escaped
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

ET.register_namespace("", ATOM_NS)
ET.register_namespace("fs", FS_NS)

Item = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class FeedMeta:
    """What a rendered document says about itself."""

    title: str
    self_url: str  # this document's absolute URL
    alternate_url: str  # the same selection in the other format
    home_url: str
    feed_id: str  # stable for the selection (not the page): "urn:feedstream:all", ...
    next_url: str | None = None  # the next (older) page, when there is one
    hub_url: str | None = None  # our WebSub hub (worker/out/hub.py), advertised when it runs


def stream_time(stream_id: str) -> datetime:
    """When an entry reached the stream: the milliseconds part of its id."""
    return datetime.fromtimestamp(int(stream_id.split("-", 1)[0]) / 1000, UTC)


def _clean(value: Any) -> str:
    return _XML_ILLEGAL.sub("", str(value or ""))


def _sub(parent: ET.Element, tag: str, text: str | None = None, ns: str = ATOM_NS, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ns}}}{tag}", {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        element.text = _clean(text)
    return element


def updated(items: Sequence[Item], modified: Mapping[str, str] | None = None) -> datetime | None:
    """The newest item's (or latest version's) stream time: the document's Last-Modified."""
    return max((_modified(sid, modified) for sid, _ in items), default=None)


def _modified(stream_id: str, modified: Mapping[str, str] | None) -> datetime:
    """When the item's latest version reached its stream."""
    return stream_time((modified or {}).get(stream_id, stream_id))


def render_atom(meta: FeedMeta, items: Sequence[Item], modified: Mapping[str, str] | None = None) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of the items (``modified``: see the module's docstring)."""
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _sub(feed, "id", meta.feed_id)
    _sub(feed, "title", meta.title)
    newest = updated(items, modified)
    _sub(feed, "updated", iso_utc(newest or datetime(1970, 1, 1, tzinfo=UTC)))
    _sub(feed, "generator", "feedstream")
    _sub(feed, "link", rel="self", type="application/atom+xml", href=meta.self_url)
    _sub(feed, "link", rel="alternate", type="application/feed+json", href=meta.alternate_url)
    if meta.next_url:
        _sub(feed, "link", rel="next", type="application/atom+xml", href=meta.next_url)
    if meta.hub_url:
        _sub(feed, "link", rel="hub", href=meta.hub_url)
    for stream_id, doc in items:
        entry = _sub(feed, "entry")
        _sub(entry, "id", f"urn:feedstream:article:{doc.get('id')}")
        _sub(entry, "title", doc.get("title") or "(untitled)")
        _sub(entry, "updated", iso_utc(_modified(stream_id, modified)))
        if doc.get("published"):
            _sub(entry, "published", doc["published"])
        if doc.get("url"):
            _sub(entry, "link", rel="alternate", href=doc["url"])
        # Atom requires an author per entry (or on the feed); the source's name stands in
        author = _sub(entry, "author")
        _sub(author, "name", doc.get("author") or doc.get("feed") or "feedstream")
        for tag in doc.get("tags") or []:
            _sub(entry, "category", term=tag)
        content = _sub(entry, "content", doc.get("text") or "", type="text")
        if doc.get("language"):
            content.set("{http://www.w3.org/XML/1998/namespace}lang", _clean(doc["language"]))
        _sub(entry, "source-feed", doc.get("feed") or "", ns=FS_NS)
        _sub(entry, "stream-id", stream_id, ns=FS_NS)
        if doc.get("duplicate_of"):
            _sub(entry, "duplicate-of", doc["duplicate_of"], ns=FS_NS)
        if doc.get("list_id"):
            _sub(entry, "list-id", doc["list_id"], ns=FS_NS)
        if doc.get("version"):
            _sub(entry, "version", str(doc["version"]), ns=FS_NS)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def render_json_feed(meta: FeedMeta, items: Sequence[Item], modified: Mapping[str, str] | None = None) -> bytes:
    """A JSON Feed 1.1 document of the items (``modified``: see the module's docstring)."""
    out: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": meta.title,
        "home_page_url": meta.home_url,
        "feed_url": meta.self_url,
    }
    if meta.next_url:
        out["next_url"] = meta.next_url
    if meta.hub_url:
        out["hubs"] = [{"type": "WebSub", "url": meta.hub_url}]
    entries = []
    for stream_id, doc in items:
        item: dict[str, Any] = {
            "id": f"urn:feedstream:article:{doc.get('id')}",
            "title": doc.get("title") or "",
            "content_text": doc.get("text") or "",
            "date_modified": iso_utc(_modified(stream_id, modified)),
        }
        if doc.get("url"):
            item["url"] = doc["url"]
        if doc.get("published"):
            item["date_published"] = doc["published"]
        if doc.get("author"):
            item["authors"] = [{"name": doc["author"]}]
        if doc.get("tags"):
            item["tags"] = list(doc["tags"])
        if doc.get("language"):
            item["language"] = doc["language"]
        item["_feedstream"] = {
            "feed": doc.get("feed"), "stream_id": stream_id, "duplicate_of": doc.get("duplicate_of"),
            "list_id": doc.get("list_id"), "article_id": doc.get("id"), "version": doc.get("version"),
        }
        entries.append(item)
    out["items"] = entries
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
