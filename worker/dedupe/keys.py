"""Keys that say two articles are the same one. Pure functions.

- ``url_key``: the canonical form of a link, so tracking parameters, fragments,
  ``www.``, the scheme and a trailing slash do not make a new article.
- ``guid_key``: a feed's own item id, scoped to that feed.
- ``text_key``: a hash of the normalised text, which catches the same article
  under a new URL or GUID.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

from courlan import normalize_url
from courlan.urlutils import get_tldinfo

_WORD_RE = re.compile(r"\w+")


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode("utf-8"), digest_size=12).hexdigest()


def canonical_url(url: str) -> str:
    """The link as we publish it: tracking parameters and fragment removed, query sorted.

    courlan drops ``utm_*``, ``fbclid``, ``gclid`` and their kin and normalises
    case and ports; it keeps fragments, so we drop those ourselves.
    """
    try:
        normal = normalize_url(url)
    except (ValueError, TypeError):
        normal = url.strip()
    parts = urlsplit(normal)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def url_identity(url: str) -> str:
    """What must match for two links to be one article: scheme, ``www.`` and a trailing slash ignored."""
    parts = urlsplit(canonical_url(url))
    host = parts.netloc.lower()
    if host.startswith("www."):
        host = host[4:]
    path = parts.path.rstrip("/") or "/"
    return f"{host}{path}" + (f"?{parts.query}" if parts.query else "")


def url_key(url: str) -> str:
    """Short hash of ``url_identity``; two links with the same key are one article."""
    return _digest(url_identity(url))


def article_id(url: str) -> str:
    """The article's public id: stable for its canonical link, so a retry yields the same id."""
    return url_key(url)


def guid_key(feed: str, guid: str) -> str:
    """Hash of a feed's item id, scoped to the feed (GUIDs are only unique within one)."""
    return _digest(f"{feed}\x00{guid}")


def normalise_text(text: str) -> str:
    """Case, accents' composition, punctuation and spacing folded away."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD_RE.findall(folded))


def text_key(text: str, *, normalised: str | None = None) -> str | None:
    """Hash of the normalised text; None when there are too few words to mean anything.

    ``normalised``: ``normalise_text(text)`` when the caller has it already.
    """
    normal = normalise_text(text) if normalised is None else normalised
    if normal.count(" ") < 20:
        return None
    return _digest(normal)


def message_id_key(message_id: str) -> str:
    """Hash of an email's Message-ID (angle brackets and case of the domain part ignored)."""
    mid = message_id.strip().strip("<>").strip()
    local, at, domain = mid.rpartition("@")
    return _digest(f"mid\x00{local}{at}{domain.lower()}" if at else f"mid\x00{mid}")


def same_site(url: str, other: str) -> bool:
    """Whether two links are on the same registered domain (``news.example.co.uk`` ~ ``www.example.co.uk``).

    courlan's public-suffix lookup gives the registered domain; hosts it cannot
    place (IP addresses, ``localhost``, private names) must match exactly,
    port included.
    """
    try:
        mine, theirs = get_tldinfo(url)[1], get_tldinfo(other)[1]
        if mine and theirs:
            return mine == theirs
        return urlsplit(url).netloc.lower() == urlsplit(other).netloc.lower()
    except (ValueError, TypeError):
        return False
