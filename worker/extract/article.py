"""Page HTML -> article text and metadata: trafilatura, then the clean-up it leaves undone.

Pure: bytes/str in, data out; no I/O, no settings. Imports only ``models``,
``errors`` and ``pagemeta`` of ours.

Text format (``Extracted.text`` and :func:`text_from_html_fragment`): the article
body alone, one paragraph per block (trafilatura's text lines: paragraphs,
headings, list items as ``- item``, table rows as ``| a | b |``; a ``<br>`` ends a
paragraph, since many sites separate paragraphs with ``<br><br>``), whitespace
inside a paragraph collapsed, paragraphs separated by exactly one blank line.

Clean-up (:func:`clean_paragraphs`) is a set of general rules, never keyed to a
site: the title repeated as the first line; a lone category label (or breadcrumb
trail) before the body; newsletter/subscription calls to action; share-button
text; "Read more"/"Related:" lines; a trailing related-articles list.

``published`` is ISO 8601 UTC, ``YYYY-MM-DDTHH:MM:SSZ``, the one shape the stream
contract promises. A page that states only a day gives midnight UTC of that day
(``2026-11-23T00:00:00Z``), and a time without an offset is taken as UTC: one
format for consumers to parse and sort, at the cost of implying a precision the
page did not give. The page's declared date comes first, the feed's next.

Speed: the page is parsed once; metadata is read off that tree by ``pagemeta``
before the extraction prunes it (trafilatura's own ``with_metadata=True`` pass
costs about half an extraction again, mostly for searches a feed makes needless),
and everything else this module adds reads the raw string with bounded regular
expressions (no second parse, no tree copy: lxml copies a tree slower than it
parses one); see ``bench/extraction.py``.
"""

from __future__ import annotations

import codecs
import html as htmllib
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lxml.etree
import lxml.html
import trafilatura
from trafilatura.utils import load_html

from worker.errors import ExtractError
from worker.extract.candidates import Candidate, choose, looks_weak
from worker.extract.pagemeta import page_metadata
from worker.models import Extracted
from worker.text import BOMS, is_usable, language_code, word_count

__all__ = [
    "clean_paragraphs", "decode_html", "detect_language", "extract_article", "text_from_html_fragment", "warm_up",
]

# Exceptions that malformed input can provoke inside trafilatura/lxml/htmldate.
# Deliberately not bare ``Exception``: a job-timeout exception raised by the worker
# (RQ's JobTimeoutException derives from Exception) must pass through, or a stuck
# job would silently run on past its deadline.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes UnicodeError
    TypeError,
    LookupError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    RuntimeError,  # includes RecursionError (deeply nested markup)
    lxml.etree.Error,
)

# --------------------------------------------------------------------------------------
# decoding


# WHATWG Encoding Standard: browsers decode these labels as a superset, and pages
# rely on it (e.g. curly quotes in 0x80-0x9F on pages labelled ISO-8859-1).
_CHARSET_SUPERSETS = {
    "ascii": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
_UTF16_32 = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
_CT_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)
# <meta charset=x> and <meta http-equiv=Content-Type content="...; charset=x">, and an
# XML declaration's encoding=.
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{2,40})"""
    rb"""|^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([a-zA-Z0-9_.:-]{2,40})""",
    re.IGNORECASE,
)
_META_SCAN_BYTES = 32 * 1024  # meta charset sits in the head, often after inline CSS/JS
_DETECT_BYTES = 64 * 1024  # charset_normalizer is slow; a page's start is a fair sample


def _charset(label: str | bytes | None) -> str | None:
    """A charset label -> the Python codec to decode with, or None when unknown."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    try:
        info = codecs.lookup(label.strip().strip("\"'").lower())
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):  # "base64", "zlib", "rot13": not charsets
        return None
    return _CHARSET_SUPERSETS.get(info.name, info.name)


def _decodes(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _mostly_utf8(body: bytes) -> bool:
    """UTF-8 with a few stray bytes (a pasted snippet), not a legacy charset.

    Valid multi-byte UTF-8 sequences practically never occur by chance in
    legacy-encoded text, while its accented letters are nearly always invalid
    UTF-8; so a large majority of valid sequences settles it.
    """
    text = body.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - body.count(b"\xef\xbf\xbd")
    good = len(text) - len(text.encode("ascii", "ignore")) - text.count("\ufffd")
    return good >= 3 and good >= 9 * bad


def _detect(body: bytes) -> str | None:
    import charset_normalizer  # lazy: only pages that declare nothing usable get here

    sample = body
    if len(body) > _DETECT_BYTES:
        # Cut after a '>' or newline: no multi-byte legacy encoding (GBK, Shift_JIS,
        # Big5, EUC) uses bytes below 0x40 as a trail byte, so no character is split.
        cut = max(body.rfind(b">", 0, _DETECT_BYTES), body.rfind(b"\n", 0, _DETECT_BYTES))
        sample = body[: cut + 1] if cut > 0 else body[:_DETECT_BYTES]
    best = charset_normalizer.from_bytes(sample).best()
    return _charset(best.encoding) if best is not None else None


def decode_html(body: bytes, content_type: str = "") -> str:
    """Bytes of a page -> str. Never raises on any byte sequence.

    Charset from the BOM, then the Content-Type header, then ``<meta charset>`` /
    ``http-equiv`` (or an XML declaration) in the first 32 KB, then detection
    (charset_normalizer). Two refinements on that order, both what browsers and
    extractors effectively need:

    - a declared charset that cannot decode the bytes is skipped (a header saying
      UTF-8 over windows-1252 bytes yields to the page's meta);
    - bytes that are valid UTF-8 and not plain ASCII are UTF-8 whatever a legacy
      declaration says (servers default to ISO-8859-1 in their headers; real
      legacy-encoded text is practically never valid UTF-8).

    Labels decode as their WHATWG supersets (ISO-8859-1 as windows-1252, GB2312
    as GB18030, ...). Whatever remains undecodable becomes U+FFFD.
    """
    if not body:
        return ""
    try:
        for bom, encoding in BOMS:
            if body.startswith(bom):
                return body[len(bom) :].decode(encoding, errors="replace")

        declared: list[str] = []
        match = _CT_CHARSET.search(content_type or "")
        header = _charset(match.group(1)) if match else None
        if header:
            declared.append(header)
        match = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
        meta = _charset(match.group(1) or match.group(2)) if match else None
        # A meta claiming UTF-16/32 is impossible in a byte stream that the scan just
        # read as ASCII (HTML spec: treat it as UTF-8).
        if meta in _UTF16_32:
            meta = "utf-8"
        if meta and meta not in declared:
            declared.append(meta)

        if not (declared and declared[0] in _UTF16_32) and not body.isascii():
            text = _decodes(body, "utf-8")
            if text is not None:
                return text
            if _mostly_utf8(body):
                return body.decode("utf-8", errors="replace")
        for encoding in declared:
            text = _decodes(body, encoding)
            if text is not None:
                return text
        if body.isascii():
            return body.decode("ascii")
        detected = _detect(body)
        if detected:
            return body.decode(detected, errors="replace")
        return body.decode(declared[0] if declared else "utf-8", errors="replace")
    except (LookupError, ValueError, RuntimeError):  # an exotic codec misbehaving
        return body.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------
# clean-up rules


def _norm(text: str) -> str:
    """Comparison form: case-folded, punctuation and whitespace runs to one space."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")

# Newsletter/subscription calls to action, matched per sentence.
_CTA = re.compile(
    r"""
    \b(?:straight|direct(?:ly)?|right|delivered|sent|get|receive)\b[^.!?]{0,40}?
      \b(?:in|to|into)\s+your\s+(?:e-?mail\s+)?inbox\b
    | \b(?:sign(?:ing)?[\s-]?up|subscribe|register|join|get|receive)\b[^.!?]{0,60}?\bnewsletters?\b
    | \bnewsletters?\b[^.!?]{0,40}?\b(?:sign(?:ing)?[\s-]?up|subscribe|register)\b
    | \bnewsletters?\s+here\b
    | ^(?:subscribe|sign\s+up|signup)\b
    | ^(?:register|join)\s+(?:now|here|today|free|for\s+free|us|our)\b
    | ^(?:click|tap)\s+here\s+to\s+(?:subscribe|sign\s+up|register|get|receive)\b
    | ^(?:click|tap)\s+here\s+for\s+(?:more\s+)?(?:info(?:rmation)?|details)\b
    | \bdelivered\b[^.!?]{0,40}?\b(?:letterbox|letter\s+box|door|doorstep|mailbox)\b
    | ^\d{1,3}\s+issues\s+for\b
    | ^follow\s+(?:us|[\w@.'’&-]+(?:\s+[\w@.'’&-]+){0,6})\s+on\s+
      (?:twitter|x|facebook|instagram|linkedin|youtube|tiktok|threads|bluesky|mastodon|flipboard)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
# every _CTA/_NEWSLETTER_HEADING alternative contains one of these (case-folded)
_PROMO_KEYS = ("newsletter", "inbox", "subscri", "sign", "register", "join", "follow", "click", "tap",
               "deliver", "issues")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])\s+")
_PROMO_MAX_CHARS = 320  # a promo is a line or two; a long paragraph mentioning a newsletter is news
# A newsletter box's own heading: "Pick Six Newsletter", "Our daily newsletter".
_NEWSLETTER_HEADING = re.compile(r"^(?:[\w'’&+.-]+\s+){0,5}newsletters?\s*:?$", re.IGNORECASE)

# Share buttons: a short line made only of these words (and counts), with at least
# one of the _SHARE_CORE ones.
_SHARE_CORE = frozenset({
    "share", "shares", "shared", "sharing", "tweet", "email", "e", "mail", "print", "facebook",
    "twitter", "linkedin", "whatsapp", "reddit", "pinterest", "telegram", "messenger", "flipboard",
    "pocket", "sms", "copy",
})
_SHARE_WORDS = _SHARE_CORE | frozenset({
    "this", "the", "article", "story", "post", "page", "link", "url", "on", "via", "to", "with", "a",
    "an", "your", "it", "or", "and", "by", "friend", "friends", "save", "more", "options", "x",
    "comment", "comments", "like", "liked", "enjoyed", "if", "you", "please", "consider",
})
_SHARE_MAX_WORDS = 10
_SHARE_MAX_CHARS = 120
_FURNITURE_LINE = re.compile(
    r"""^(?:\d+\s+)?(?:comments?|leave\s+a\s+(?:comment|reply)|post\s+a\s+comment|add\s+a\s+comment
    |(?:show|view|load|see)\s+(?:all\s+)?(?:\d+\s+)?comments?|read\s+more|continue\s+reading
    |read\s+(?:the\s+)?full\s+(?:story|article)|click\s+here\s+to\s+read\s+more
    |tell\s+us\s+what\s+you\s+think|what\s+do\s+you\s+think|have\s+your\s+say
    |join\s+the\s+(?:conversation|discussion))\s*[.:»›>…?!]*$
    # the footer WordPress appends to every feed item
    |^the\s+post\s+.{1,300}\s+appeared\s+first\s+on\s+.{1,120}$""",
    re.IGNORECASE | re.VERBOSE,
)
# "Read more: <headline>", "Related: <headline>", "See also: ..." (the prefix needs
# its separator, so a sentence starting "Related to this, ..." is left alone).
_POINTER_LINE = re.compile(
    r"""^(?:read\s+more|read\s+also|also\s+read|see\s+also|related|more|recommended|read\s+next
    |related\s+(?:articles?|stories|story|posts?|content|coverage|reading|news|links?))
    \s*(?:[:：»›>|]|\s[–—-])\s*\S
    # "Also on example.com <headline>": a cross-link to another story of the site
    |^(?:also|more)\s+on\s+[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\s+\S""",
    re.IGNORECASE | re.VERBOSE,
)
_POINTER_MAX_CHARS = 200
# Headings that open a related-articles list.
_RELATED_HEADING = re.compile(
    r"""^(?:articles?\s+you\s+(?:may|might)\s+(?:also\s+)?(?:like|enjoy)
    |you\s+(?:may|might)\s+(?:also\s+)?(?:like|enjoy|be\s+interested\s+in)
    |(?:more\s+)?related(?:\s+(?:articles?|stories|posts?|content|coverage|reading|news|links?))?
    |more\s+(?:from|on|in|about)\s+(?:[^.,;!?]|\.(?=\w)){1,60}
    |more\s+(?:stories|articles|news|headlines|to\s+read)
    |recommended(?:\s+(?:for\s+you|stories|articles|reading|videos?))?
    |(?:what\s+to\s+)?read\s+next|up\s+next|don'?t\s+miss|further\s+reading|also\s+on\s+(?:[^.,;!?]|\.(?=\w)){1,40}
    |(?:most\s+(?:popular|read|viewed|shared)|trending|popular)(?:\s+(?:now|today|stories|articles|posts))?
    |(?:latest|top)\s+(?:news|stories|articles|headlines)|more|see\s+also|read\s+more)
    \s*[:：»›>…]*$""",
    re.IGNORECASE | re.VERBOSE,
)
_RELATED_ITEM_MAX_CHARS = 300  # headline (+ teaser) in a related list
_RELATED_MAX_ITEMS = 40
_HEADLINE_MAX_CHARS = 160
_CLOSERS = " \"'”’»)]*"  # trailing quotes/brackets before a sentence's final stop
_LABEL_MAX_CHARS = 48
_LABEL_MAX_WORDS = 5
_CRUMB_SPLIT = re.compile(r"\s*(?:[»›>/|·•→:]|\s-\s)\s*")
_TITLE_SPLIT = re.compile(r"\s+[|\-–—:·•»]\s+|\s*::\s*")
_LEADING_MAX_DROPS = 4
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
# A line that is only a publication date: "Published 4 March 2026", "Updated: Nov. 19,
# 2019 at 10:31 a.m. ET", "Tuesday, 19 November 2019 14:05".
_DATELINE = re.compile(
    rf"""^(?:(?:first\s+|last\s+)?(?:published|updated|posted|modified)(?:\s+on)?\s*:?\s*)?
    (?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?
    (?:\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}
      |\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}[/.]\d{{1,2}}[/.]\d{{2,4}})
    (?:[,\s|•·-]+(?:at\s+)?\d{{1,2}}[:.]\d{{2}}(?:\s*[ap]\.?m\.?)?(?:\s+[A-Z]{{2,5}})?)?
    (?:\s*[,|•·-]\s*(?:(?:last\s+)?updated|modified)\b.{{0,40}})?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def _is_promo(paragraph: str) -> bool:
    """Short paragraph dominated by a newsletter/subscription/follow call to action."""
    if len(paragraph) > _PROMO_MAX_CHARS:
        return False
    folded = paragraph.casefold()
    if not any(key in folded for key in _PROMO_KEYS):  # cheap test first: most lines are news
        return False
    if _NEWSLETTER_HEADING.match(paragraph):
        return True
    sentences = [s for s in _SENTENCE_SPLIT.split(paragraph) if s]
    cta = sum(len(s) for s in sentences if _CTA.search(s))
    return cta >= 0.6 * len(paragraph)


def _is_share_text(paragraph: str) -> bool:
    if len(paragraph) > _SHARE_MAX_CHARS:
        return False
    words = [w.casefold() for w in _WORD.findall(paragraph)]
    if not words or len(words) > _SHARE_MAX_WORDS:
        return False
    if not any(w in _SHARE_CORE for w in words):
        return False
    return all(w in _SHARE_WORDS or w.isdigit() for w in words)


def _is_furniture(paragraph: str) -> bool:
    """A line that is page furniture wherever it appears."""
    return (
        _is_share_text(paragraph)
        or bool(_FURNITURE_LINE.match(paragraph))
        or (len(paragraph) <= _POINTER_MAX_CHARS and bool(_POINTER_LINE.match(paragraph)))
        or _is_promo(paragraph)
    )


def _is_headline(paragraph: str) -> bool:
    """Looks like a linked headline: short, not ending as a sentence does."""
    return len(paragraph) <= _HEADLINE_MAX_CHARS and not paragraph.rstrip(_CLOSERS).endswith(
        (".", ":", ";", ",")
    )


def _trailing_cut(paragraphs: list[str]) -> int:
    """Index where a trailing related-articles list (or newsletter box) starts, else len.

    What follows the heading must be short items, mostly headline-like; after a
    heading followed by real paragraphs (news paragraphs can be one short
    sentence each) the text goes on, and only the heading is furniture.
    """
    n = len(paragraphs)
    cut = n
    headlines = 0  # among paragraphs[i + 1:]
    i = n - 1
    while i >= 1 and n - i <= _RELATED_MAX_ITEMS + 1:
        p = paragraphs[i]
        if _RELATED_HEADING.match(p):
            if 2 * headlines >= n - 1 - i:
                cut = i
        elif _NEWSLETTER_HEADING.match(p) and n - i <= 3:
            cut = i
        elif len(p) > _RELATED_ITEM_MAX_CHARS:
            break
        headlines += _is_headline(p)
        i -= 1
    return cut


def _drop_related_blocks(paragraphs: list[str]) -> list[str]:
    """A related-articles heading inside the text and the headlines right after it."""
    out: list[str] = []
    skipping = False
    for p in paragraphs:
        if _RELATED_HEADING.match(p):
            skipping = True
            continue
        if skipping and _is_headline(p):
            continue
        skipping = False
        out.append(p)
    return out


def _title_forms(titles: Iterable[str | None]) -> set[str]:
    """Normalised forms a repeated title may take, incl. without a " - Site" part."""
    forms: set[str] = set()
    for title in titles:
        if not title:
            continue
        forms.add(_norm(title))
        for part in _TITLE_SPLIT.split(title):
            if len(part.split()) >= 3:  # "Opinion" or "News" alone is no title
                forms.add(_norm(part))
    forms.discard("")
    return forms


def _label_forms(labels: Iterable[str]) -> set[str]:
    forms: set[str] = set()
    for label in labels:
        if not label:
            continue
        # "a, b, c" keyword strings (trafilatura passes them on whole)
        parts = label.split(",") if label.count(",") >= 2 else [label]
        forms.update(_norm(part) for part in parts)
    forms.discard("")
    return forms


def _is_label(paragraph: str, labels: set[str]) -> bool:
    """A lone category label, or a breadcrumb trail made only of labels."""
    if len(paragraph) > _LABEL_MAX_CHARS * 3 or not labels:
        return False
    norm = _norm(paragraph)
    if len(paragraph) <= _LABEL_MAX_CHARS and len(norm.split()) <= _LABEL_MAX_WORDS and norm in labels:
        return True
    parts = [_norm(p) for p in _CRUMB_SPLIT.split(paragraph) if _norm(p)]
    return len(parts) >= 2 and all(p in labels or p == "home" for p in parts)


def clean_paragraphs(
    paragraphs: list[str],
    *,
    title: str | None,
    labels: Sequence[str],
    alt_titles: Sequence[str] = (),
    authors: Sequence[str] = (),
) -> list[str]:
    """The clean-up rules trafilatura leaves undone; pure, general (never keyed to a site).

    ``paragraphs``: the article's text blocks in order; whitespace is collapsed and
    empty ones dropped. ``title``: the article's title (``alt_titles``: other forms
    of it, e.g. the feed entry's title or the page's h1). ``labels``: category
    names the article is filed under (the entry's tags/categories, the page's
    section and categories, breadcrumb items). ``authors``: the byline's names.

    Removes, in order:

    1. a trailing related-articles list ("Articles You May Like", "Related
       articles", "More from ...", "Recommended", ...): heading and everything
       after it, when what follows is only short headline-like items; likewise a
       newsletter box ("X Newsletter" + a line or two) closing the text;
    2. anywhere: newsletter/subscription/follow-us calls to action (short
       paragraphs dominated by one), share-button text, comment-widget lines,
       "Read more"/"Related: ..." pointer lines and lone related-list headings;
    3. at the start: the title repeated (compared case-, punctuation- and
       whitespace-insensitively, also without a " - Site name" part) and lone
       label lines (short lines equal to one of ``labels``, or a breadcrumb trail
       of them), a lone byline ("By <author>", the author being one of
       ``authors``) and a lone dateline ("Published 4 March 2026", "Updated
       ..."). A short first sentence that is none of these stays.
    """
    paras = [" ".join(p.split()) for p in paragraphs]
    paras = [p for p in paras if p]
    paras = paras[: _trailing_cut(paras)]
    paras = _drop_related_blocks(paras)
    paras = [p for p in paras if not _is_furniture(p)]

    titles = _title_forms([title, *alt_titles])
    label_set = _label_forms(labels)
    bylines = {_norm(f"{prefix} {a}") for a in authors if a and a.strip() for prefix in ("", "by")}
    drops = 0
    while paras and drops < _LEADING_MAX_DROPS:
        first = paras[0]
        norm = _norm(first)
        if (
            norm in titles
            or _is_label(first, label_set)
            or (len(first) <= _LABEL_MAX_CHARS * 2 and norm in bylines)
            or bool(_DATELINE.match(first))
        ):
            paras.pop(0)
            drops += 1
        else:
            break
    return paras


# --------------------------------------------------------------------------------------
# what the raw page says (read with bounded regexes: trafilatura does the one parse)

_HEAD_SCAN_CHARS = 256 * 1024
# Spelled-out cases instead of re.IGNORECASE: with a literal start the regex engine
# scans for it fast, and these run over whole pages.
_HTML_TAG = re.compile(r"<(?:html|HTML|Html)\b[^>]{0,2000}>")
_META_TAG = re.compile(r"<(?:meta|META|Meta)\b[^>]{0,2000}>")
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_H1 = re.compile(r"<[hH]1\b[^>]{0,1000}>(.{0,2000}?)</[hH]1\s*>", re.DOTALL)
_TAGS = re.compile(r"<[^>]*>")
# the opening tag around a "breadcrumb" hit: a container named so by class/id/aria/itemtype
_BREADCRUMB_OPEN = re.compile(
    r"""<(?:nav|ol|ul|div|p|span|section|header|small|li)\b[^<>]{0,500}?"""
    r"""\b(?:class|id|aria-label|itemtype)\s*=\s*["'][^"'<>]{0,200}?breadcrumb""",
    re.IGNORECASE,
)
_BREADCRUMB_WINDOW = 4000
_BREADCRUMB_MAX_HITS = 50
_JSONLD_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.){1,80})"')
_LANG_META_NAMES = ("og:locale", "content-language", "language", "dc.language", "dcterms.language")


@dataclass
class _PageHints:
    language: str | None = None
    h1: str | None = None
    crumbs: list[str] = field(default_factory=list)


def _attrs(tag: str) -> dict[str, str]:
    return {
        m.group(1).lower(): htmllib.unescape(next(g for g in m.groups()[1:] if g is not None))
        for m in _ATTR.finditer(tag)
    }



def _page_hints(page: str) -> _PageHints:
    hints = _PageHints()
    head_end = page.find("</head", 0, _HEAD_SCAN_CHARS)
    head = page[: head_end if head_end >= 0 else _HEAD_SCAN_CHARS]

    # declared language: <html lang>, then og:locale, then content-language metas
    match = _HTML_TAG.search(head)
    if match:
        attrs = _attrs(match.group(0))
        hints.language = language_code(attrs.get("lang") or attrs.get("xml:lang"))
    if hints.language is None:
        declared: dict[str, str] = {}
        for tag in _META_TAG.findall(head):
            if "ocale" not in tag and "anguage" not in tag:  # skip parsing the other metas
                continue
            attrs = _attrs(tag)
            key = (attrs.get("property") or attrs.get("name") or attrs.get("http-equiv") or "").lower()
            if key in _LANG_META_NAMES and key not in declared:
                declared[key] = attrs.get("content", "")
        for key in _LANG_META_NAMES:
            hints.language = language_code(declared.get(key))
            if hints.language:
                break

    match = _H1.search(page)
    if match:
        hints.h1 = " ".join(htmllib.unescape(_TAGS.sub(" ", match.group(1))).split()) or None

    seen: set[int] = set()
    hit = -1
    for _ in range(_BREADCRUMB_MAX_HITS):  # "breadcrumb" may be all over a stylesheet
        hit = page.find("readcrumb", hit + 1)  # [bB]readcrumb; str.find is the fast scan
        if hit < 0:
            break
        start = page.rfind("<", max(0, hit - 700), hit)
        if start < 0 or start in seen or not _BREADCRUMB_OPEN.match(page, start, hit + 9):
            continue
        seen.add(start)
        window = page[start : start + _BREADCRUMB_WINDOW]
        try:
            # the window starts at the breadcrumb element, so the parsed root is that
            # element; text after its end tag is outside it (lxml closes what the cut opened)
            element = lxml.html.fragment_fromstring(window, create_parent="div")[0]
        except (*_INPUT_ERRORS, IndexError):
            continue
        for piece in element.itertext():
            piece = " ".join(piece.split())
            if piece and _WORD.search(piece):
                hints.crumbs.append(piece)
        if len(hints.crumbs) >= 2:
            break
    hints.crumbs.extend(_jsonld_crumbs(page))
    return hints


def _jsonld_crumbs(page: str) -> list[str]:
    """Names in a JSON-LD BreadcrumbList's itemListElement array (read, not parsed)."""
    at = page.find('"BreadcrumbList"')
    if at < 0:
        return []
    # the array may come before or after the "@type"; take the nearest one
    after = page.find('"itemListElement"', at, at + 3000)
    before = page.rfind('"itemListElement"', max(0, at - 3000), at)
    starts = [i for i in (after, before) if i >= 0]
    if not starts:
        return []
    start = min(starts, key=lambda i: abs(i - at))
    end = page.find("]", start, start + 5000)
    names = []
    for name in _JSONLD_NAME.findall(page, start, end if end > 0 else start + 5000):
        try:
            names.append(json.loads(f'"{name}"'))
        except ValueError:
            continue
    return names


# --------------------------------------------------------------------------------------
# language detection

_LANGID_MIN_CHARS = 200  # below this, py3langid guesses
_LANGID_SAMPLE_CHARS = 3000
_LANGID_MIN_CONFIDENCE = 0.9
_langid_lock = threading.Lock()
_langid_identifier = None


def warm_up() -> None:
    """Load the language model now; a parent process calls it before forking its workers so they share it."""
    _language_identifier()


def _language_identifier() -> Any:
    global _langid_identifier
    with _langid_lock:  # the model takes ~0.2-0.6 s to load; load it once, on first need
        if _langid_identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _langid_identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _langid_identifier


def detect_language(text: str) -> str | None:
    """2-letter code of the text's language (py3langid), or None when unsure or under 200 characters."""
    return _detect_language(text)


def _detect_language(text: str) -> str | None:
    """2-letter code of the text's language via py3langid, or None when unsure/too short."""
    if len(text) < _LANGID_MIN_CHARS:
        return None
    try:
        code, confidence = _language_identifier().classify(text[:_LANGID_SAMPLE_CHARS])
    except _INPUT_ERRORS:
        return None
    return language_code(code) if confidence >= _LANGID_MIN_CONFIDENCE else None


# --------------------------------------------------------------------------------------
# public API



def _split_tags(tags: Iterable[str]) -> list[str]:
    """Tags as a list, a comma-joined keyword string split up, duplicates dropped."""
    out: list[str] = []
    for tag in tags:
        parts = tag.split(",") if tag.count(",") >= 2 else [tag]
        out.extend(p.strip() for p in parts if p.strip())
    return list(dict.fromkeys(out))


def extract_article(
    html: str,
    *,
    url: str,
    entry_title: str | None = None,
    entry_tags: Sequence[str] = (),
    entry_author: str | None = None,
    entry_published: str | None = None,
    feed_html: str | None = None,
) -> Extracted:
    """A page's HTML (str) -> its article text and metadata.

    The page is parsed once (trafilatura's ``load_html``); :func:`pagemeta.page_metadata`
    reads the metadata off that tree, then ``trafilatura.bare_extraction(tree,
    include_comments=False, favor_precision=True)`` extracts the body, and
    :func:`clean_paragraphs` removes what it leaves, with the page's title (and
    ``entry_title`` and the page's h1 as other forms) and labels from ``entry_tags``,
    the page's categories and breadcrumbs.

    Metadata: title (page, else ``entry_title``), author (page meta/JSON-LD, else a
    byline search only when ``entry_author`` is None), published (the date the page
    declares, ISO 8601 UTC; htmldate's search only when ``entry_published`` is None),
    language (declared ``<html lang>``/og:locale/content-language as a 2-letter code,
    else detected from the text when at least 200 characters, else None),
    canonical_url (rel=canonical/og:url, else ``url``), sitename, description, image,
    categories, tags.

    The body is chosen among candidates (:mod:`candidates`): the precision-mode
    extraction; only when that looks weak (short, link-heavy, or covering little
    of the feed's full text ``feed_html``, the entry's content:encoded/summary) a
    recall-mode extraction (a second parse and extraction) and the feed's own
    text. ``Extracted.extraction`` names the winner ("precision", "recall",
    "feed"); ``markdown`` is the same body with headings, list items and quotes
    marked (read off the winning extraction's tree: no second extraction; see
    :func:`_markdown`).

    Raises :class:`ExtractError` when the page has no usable article text, and
    nothing else on any input (trafilatura/lxml failures are wrapped).
    """
    if not isinstance(html, str):  # given bytes, trafilatura would decompress without limit
        raise ExtractError(f"expected str, got {type(html).__name__}")
    if not html.strip():
        raise ExtractError("no article text found (empty page)")
    try:
        tree = load_html(html)
        if tree is None:
            raise ExtractError("no article text found (not HTML)")
        meta = page_metadata(tree, html, url=url, need_author=not entry_author, need_date=not entry_published)
        hints = _page_hints(html)
        # after the metadata: the extraction prunes the tree in place
        document = trafilatura.bare_extraction(
            tree, url=url, include_comments=False, favor_precision=True, with_metadata=False
        )
    except _INPUT_ERRORS as exc:
        raise ExtractError(f"trafilatura failed: {type(exc).__name__}: {exc}") from exc
    feed = _feed_candidate(feed_html) if feed_html else None
    if (document is None or not document.text) and feed is None:
        raise ExtractError("no article text found")

    title = meta.title or " ".join((entry_title or "").split())
    categories = list(dict.fromkeys(c.strip() for c in meta.categories if c and c.strip()))
    tags = _split_tags(meta.tags)
    labels = [*entry_tags, *categories, *tags, *hints.crumbs]
    alt_titles = [t for t in (entry_title, hints.h1) if t]
    author = meta.author or entry_author
    authors = [a.strip() for a in (author or "").split(";") if a.strip()]

    def cleaned(name: str, body: Any, raw_text: str) -> Candidate:
        paragraphs = clean_paragraphs(raw_text.split("\n"), title=title, labels=labels, alt_titles=alt_titles,
                                      authors=authors)
        candidate = Candidate(name, paragraphs)
        candidate.markdown = _markdown(body, paragraphs) if body is not None else None
        return candidate

    primary = cleaned("precision", document.body, document.text) if document is not None and document.text else \
        Candidate("precision", [])
    best = primary
    if looks_weak(primary, feed):
        recall = None
        try:
            second = trafilatura.bare_extraction(
                load_html(html), url=url, include_comments=False, favor_recall=True, with_metadata=False
            )
            if second is not None and second.text:
                recall = cleaned("recall", second.body, second.text)
        except _INPUT_ERRORS:
            recall = None  # the precision body (or the feed's) still stands
        if feed is not None:
            feed = Candidate("feed", clean_paragraphs(feed.paragraphs, title=title, labels=labels,
                                                      alt_titles=alt_titles, authors=authors),
                             link_density=feed.link_density)
        best = choose(primary, recall, feed)
    text = "\n\n".join(best.paragraphs)
    if not is_usable(text):
        raise ExtractError("no article text found (too little text)")

    return Extracted(
        title=title,
        text=text,
        author=meta.author,
        published=meta.published,
        language=hints.language or _detect_language(text),
        canonical_url=meta.url or url or None,
        sitename=meta.sitename,
        description=meta.description,
        image=meta.image,
        categories=categories,
        tags=tags,
        authors=[a for a in (a.strip() for a in (meta.author or "").split(";")) if a],
        updated=meta.updated,
        markdown=best.markdown or text,
        extraction=best.name,
        word_count=word_count(text),
    )


_MD_INLINE = re.compile(r"([\\`*_\[\]<>])")  # CommonMark inline syntax to show literally
_MD_BLOCK_START = re.compile(r"^(#{1,6}\s|>|\d{1,9}[.)]\s|[-+*]\s|={3,}|-{3,})")


def _md_escape(text: str) -> str:
    text = _MD_INLINE.sub(r"\\\1", text)
    return _MD_BLOCK_START.sub(r"\\\1", text)


def _markdown(body: Any, kept: list[str]) -> str:
    """The kept paragraphs as Markdown: headings as ``#`` lines, list items as ``-``, quotes as ``>``.

    Read off the extraction's own tree (which paragraphs are headings, quotes):
    trafilatura's own Markdown rendering of that tree (``xmltotxt(..., include_formatting=True)``,
    what ``output_format="markdown"`` uses) costs about 2.4 ms a page on the corpus, a tenth of
    an extraction; this costs a small fraction of that. Emphasis and links are not kept
    (the extraction drops links unless asked, and asking changes what it extracts).
    """
    heads: dict[str, int] = {}
    quoted: set[str] = set()
    if body is not None:
        for element in body.iter("head", "quote"):
            for node in (element, *element.iter("p")):
                line = " ".join("".join(node.itertext()).split())
                if not line:
                    continue
                if element.tag == "head":
                    rend = element.get("rend") or "h2"
                    heads.setdefault(line, int(rend[1]) if rend[1:2].isdigit() else 2)
                else:
                    quoted.add(line)
    out: list[str] = []
    previous_item = False
    for paragraph in kept:
        item = paragraph.startswith("- ")
        if paragraph in heads:
            line = "#" * heads[paragraph] + " " + _md_escape(paragraph)
        elif item:
            line = "- " + _md_escape(paragraph[2:])
        elif paragraph.startswith("| "):
            line = paragraph  # trafilatura's table rows are already pipe-table rows
        else:
            line = ("> " if paragraph in quoted else "") + _md_escape(paragraph)
        if out:
            out.append("\n" if item and previous_item else "\n\n")
        out.append(line)
        previous_item = item
    return "".join(out)


def _feed_candidate(html: str) -> Candidate | None:
    """The feed's own content as a candidate body, with its real link density; None when it has no text."""
    paragraphs, link_density = _fragment_paragraphs(html)
    paragraphs = [" ".join(p.split()) for p in paragraphs]
    paragraphs = [p for p in paragraphs if p]
    if not paragraphs:
        return None
    return Candidate("feed", paragraphs, link_density=link_density)


# Elements whose text is no part of the content.
_FRAGMENT_DROP = ("script", "style", "noscript", "template", "iframe", "object", "embed", "form",
                  "button", "select", "textarea", "svg", "math", "figcaption", "head", "title")
# Elements that end a paragraph.
_FRAGMENT_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "html", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
    "thead", "tr", "ul",
})
_FRAGMENT_CELLS = frozenset(("td", "th"))
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _fragment_blocks(element: lxml.html.HtmlElement) -> list[str]:
    """Flatten to paragraphs in trafilatura's text shape (blocks and <br> end one)."""
    pieces: list[str] = []

    def text(value: str | None) -> None:
        if value:  # a newline in HTML text is just a space
            pieces.append(_SPACE.sub(" ", value))

    # iterative walk: feed HTML can nest deeper than Python's recursion limit
    stack: list[tuple[lxml.html.HtmlElement, bool]] = [(element, False)]
    while stack:
        node, closing = stack.pop()
        tag = node.tag if isinstance(node.tag, str) else ""
        if closing:
            if tag in _FRAGMENT_BLOCKS:
                pieces.append("\n")
            elif tag in _FRAGMENT_CELLS:
                pieces.append(" | ")
            text(node.tail)
            continue
        if not tag:  # comment or processing instruction: only its tail is text
            text(node.tail)
            continue
        if tag == "br":
            pieces.append("\n")
        elif tag in _FRAGMENT_BLOCKS:
            pieces.append("\n- " if tag == "li" else "\n")
        text(node.text)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))
    return "".join(pieces).split("\n")


def text_from_html_fragment(html: str) -> str:
    """A feed's own content:encoded/summary HTML -> plain text paragraphs.

    The fallback article when the page cannot be fetched or extracted. Same
    paragraph format as :func:`extract_article` (one blank line between
    paragraphs; block elements and ``<br>`` end a paragraph; list items as
    ``- item``) and the same clean-up of promos, share text and related lists
    (no title/label rules: those need the page's metadata). Text without markup
    is split at its blank lines (or, having none, at its line breaks). Never
    raises; "" when there is no text.
    """
    if not html or not html.strip():
        return ""
    lines, _ = _fragment_paragraphs(html)
    return "\n\n".join(clean_paragraphs(lines, title=None, labels=()))


def _fragment_paragraphs(html: str) -> tuple[list[str], float]:
    """Feed HTML -> (raw text blocks, share of the text inside links). ([], 0.0) when unreadable."""
    if "<" not in html:
        blocks = re.split(r"\n\s*\n", html) if re.search(r"\n\s*\n", html) else html.split("\n")
        return [htmllib.unescape(b) for b in blocks], 0.0
    try:
        # lxml refuses strings with NUL/control characters outright
        root = lxml.html.fragment_fromstring(_CONTROL_CHARS.sub("", html), create_parent="div")
        for element in list(root.iter(*_FRAGMENT_DROP)):
            if element.getparent() is not None:
                element.drop_tree()  # keeps its tail: that belongs to the parent's text
        total = len(_SPACE.sub("", root.text_content()))
        linked = sum(len(_SPACE.sub("", a.text_content())) for a in root.iter("a"))
        return _fragment_blocks(root), (linked / total if total else 0.0)
    except _INPUT_ERRORS:
        return [], 0.0
