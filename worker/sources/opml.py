"""OPML 2.0 subscription lists in and out. Pure: bytes in, outlines out; sources in, bytes out.

Why not ``listparser`` (by feedparser's author; measured, version 0.20): it reads OPML with
lxml's *HTML* parser in recover mode, which is safe against entity expansion but gives no
per-outline account: an outline with no ``xmlUrl`` is dropped and a repeated URL merged
silently, nested folders become ``categories`` but only one-level ones become ``tags``, and it
has no size or outline cap (100,000 outlines: 2.3 s and 55 MB before we could say no). Its
``lxml`` extra pins lxml < 6 while trafilatura needs >= 6.1.3, and given a string starting with
``http`` it fetches it itself with requests. An import here must report each outline (added,
skipped, refused, with its line) and stop hostile files early, so we read the XML ourselves
with lxml (already a dependency), which takes ~60 lines.

The XML guard: at most ``MAX_OPML_BYTES`` and ``MAX_OUTLINES`` (counted while parsing, so a huge
file stops at the first outline over), no entity declarations at all (OPML has no use for them;
they are how billion-laughs and XXE attacks start), no DTD loading, no network, lxml's default
depth limit.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import quoteattr

from lxml import etree

from worker.errors import ParseError
from worker.models import Feed

MAX_OPML_BYTES = 5 * 1024 * 1024
MAX_OUTLINES = 10_000
# Our own attributes on an exported outline, so an export imports back to the same sources.
NAMESPACE = "https://feedstream.invalid/opml"
_NO_ENTITIES = "entity declarations are refused (they serve entity-expansion and XXE attacks)"
_OWN = ("name", "interval", "full_text", "min_interval", "max_interval")


class OpmlError(ParseError):
    """The file is not an OPML document we will read (malformed, too large, hostile)."""

    stage = "opml"


@dataclass
class Outline:
    """One ``<outline>`` of a subscription list."""

    line: int
    title: str
    xml_url: str | None
    html_url: str | None
    tags: list[str] = field(default_factory=list)  # enclosing folders, then its own categories
    own: dict[str, str] = field(default_factory=dict)  # feedstream's attributes (name, interval, ...)

    def where(self) -> dict[str, Any]:
        """How an import report names the outline."""
        return {"line": self.line, "title": self.title, "xml_url": self.xml_url}


@dataclass
class OpmlDocument:
    title: str
    feeds: list[Outline]  # outlines with an xmlUrl
    others: list[Outline]  # outlines that are neither a feed nor a folder of feeds (no xmlUrl, no children)


def _attr(element: Any, name: str) -> str:
    # OPML attribute names are case-sensitive by the spec, but exports write xmlurl/XMLURL too
    for key, value in element.attrib.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return " ".join(str(value).split())
    return ""


def _categories(value: str) -> list[str]:
    tags: list[str] = []
    for path in value.split(","):
        tags += [part.strip() for part in path.split("/") if part.strip()]
    return tags


def parse_opml(data: bytes, *, max_bytes: int = MAX_OPML_BYTES, max_outlines: int = MAX_OUTLINES) -> OpmlDocument:
    """Read an OPML subscription list; raises OpmlError for a file we refuse, saying why."""
    if len(data) > max_bytes:
        raise OpmlError(f"the file is {len(data):,} bytes, over the {max_bytes:,}-byte limit")
    if re.search(rb"<!ENTITY", data, re.I):
        raise OpmlError(_NO_ENTITIES)
    stack: list[tuple[Any, str | None]] = []  # open outlines and the folder name each one adds
    feeds: list[Outline] = []
    others: list[Outline] = []
    pending: dict[Any, Outline] = {}
    title, count, in_head = "", 0, False
    try:
        events = etree.iterparse(io.BytesIO(data), events=("start", "end"), resolve_entities=False,
                                 no_network=True, load_dtd=False, huge_tree=False, remove_comments=True)
        for event, element in events:
            tag = etree.QName(element).localname if isinstance(element.tag, str) else ""
            if event == "start" and element.getparent() is None:  # the root: the prolog has been read
                dtd = element.getroottree().docinfo.internalDTD
                if dtd is not None and any(True for _ in dtd.iterentities()):
                    raise OpmlError(_NO_ENTITIES)
                if tag != "opml":
                    raise OpmlError(f"the root element is <{tag}>, not <opml>")
            if tag == "head":
                in_head = event == "start"
            elif tag == "title" and in_head and event == "end":
                title = " ".join((element.text or "").split())
            elif tag == "outline" and event == "start":
                count += 1
                if count > max_outlines:
                    raise OpmlError(f"more than {max_outlines:,} outlines: refused")
                text = _attr(element, "text") or _attr(element, "title")
                xml_url = _attr(element, "xmlUrl") or None
                outline = Outline(
                    line=element.sourceline or 0, title=text, xml_url=xml_url,
                    html_url=_attr(element, "htmlUrl") or None,
                    tags=[t for _, t in stack if t] + _categories(_attr(element, "category")),
                    own={name: str(element.get(f"{{{NAMESPACE}}}{name}")) for name in _OWN
                         if element.get(f"{{{NAMESPACE}}}{name}") is not None})
                outline.tags = list(dict.fromkeys(outline.tags))
                if xml_url:
                    feeds.append(outline)
                else:
                    pending[element] = outline  # a folder if it has children, else an outline we cannot use
                stack.append((element, None if xml_url else (text or None)))
            elif tag == "outline" and event == "end":
                stack.pop()
                outline = pending.pop(element, None)
                if outline is not None and len(element) == 0:
                    others.append(outline)
                element.clear(keep_tail=False)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from None
    if count == 0 and not title and not feeds:
        raise OpmlError("no <outline> elements: not a subscription list")
    return OpmlDocument(title, feeds, others)


def outline_fields(outline: Outline) -> dict[str, Any]:
    """The source fields an outline gives (name only if it carries ours; the importer names the rest)."""
    fields: dict[str, Any] = {"url": outline.xml_url}
    if outline.tags:
        fields["tags"] = outline.tags
    for key, raw in outline.own.items():
        if key == "name":
            fields["name"] = raw
        elif key == "full_text":
            fields["full_text"] = {"true": True, "false": False}.get(raw.lower(), raw)
        else:
            fields[key] = int(raw) if raw.isdigit() else raw
    return fields


def render_opml(feeds: Iterable[Feed], *, title: str = "feedstream sources",
                titles: Mapping[str, str] | None = None, sites: Mapping[str, str] | None = None) -> bytes:
    """An OPML 2.0 document of the feeds, in folders by their first tag (as Miniflux and FreshRSS
    write them), every tag in ``category``, and feedstream's own settings in its namespace.

    ``titles`` and ``sites``: each feed's title and home page, as its polls found them.
    """
    titles, sites = titles or {}, sites or {}
    defaults = Feed(name="-", url="-")
    folders: dict[str, list[str]] = {}
    for feed in feeds:
        attrs = {"type": "rss", "text": titles.get(feed.name) or feed.name, "xmlUrl": feed.url}
        attrs["title"] = attrs["text"]
        if sites.get(feed.name):
            attrs["htmlUrl"] = sites[feed.name]
        if feed.tags:
            attrs["category"] = ",".join(f"/{tag}" for tag in feed.tags)
        own = {"fs:name": feed.name}
        for key in _OWN[1:]:
            value = getattr(feed, key)
            if value != getattr(defaults, key):
                own[f"fs:{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
        line = "<outline " + " ".join(f"{k}={quoteattr(v)}" for k, v in {**attrs, **own}.items()) + "/>"
        folders.setdefault(feed.tags[0] if feed.tags else "", []).append(line)
    body: list[str] = []
    for folder, lines in folders.items():
        if folder:
            body.append(f"    <outline text={quoteattr(folder)} title={quoteattr(folder)}>")
            body += [f"      {line}" for line in lines]
            body.append("    </outline>")
        else:
            body += [f"    {line}" for line in lines]
    doc = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
           f"<opml version=\"2.0\" xmlns:fs={quoteattr(NAMESPACE)}>",
           "  <head>", f"    <title>{_escape(title)}</title>",
           f"    <dateCreated>{formatdate(usegmt=True)}</dateCreated>", "  </head>", "  <body>", *body,
           "  </body>", "</opml>", ""]
    return "\n".join(doc).encode("utf-8")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
