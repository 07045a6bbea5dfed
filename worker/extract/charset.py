"""A page's bytes -> str, as a browser would decode them (BOM, header, meta, then detection). Pure."""

from __future__ import annotations

import codecs
import re

from worker.text import bom_encoding

__all__ = ["decode_html"]

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
# XML declaration's encoding=. Two patterns, not one alternation: with a "^" branch
# the regex engine tries every position of the scan instead of only each "<".
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{2,40})""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([a-zA-Z0-9_.:-]{2,40})""", re.IGNORECASE)
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


def _meta_charset(body: bytes) -> bytes | None:
    """The charset label of the first ``<meta>`` naming one in the first 32 KB, or of an XML declaration
    opening the page, whichever comes first (a meta tag opening the page before the declaration)."""
    meta = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
    if meta is not None and meta.start() == 0:
        return meta.group(1)
    xml = _XML_ENCODING.match(body, 0, _META_SCAN_BYTES)
    if xml is not None:
        return xml.group(1)
    return meta.group(1) if meta is not None else None


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
        bom = bom_encoding(body)
        if bom is not None:
            encoding, length = bom
            return body[length:].decode(encoding, errors="replace")

        declared: list[str] = []
        match = _CT_CHARSET.search(content_type or "")
        header = _charset(match.group(1)) if match else None
        if header:
            declared.append(header)
        meta = _charset(_meta_charset(body))
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
