"""Text primitives every stage shares: what a word is, when a text is worth
keeping, byte-order marks, language codes."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence

WORD = re.compile(r"\w+")
USABLE_WORD_CHARS = 20  # fewer word characters than this is no article ("<p>x</p>", junk)

# UTF-32 first: its little-endian BOM begins with UTF-16's.
BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF8, "utf-8"),
)

_LANGUAGE_CODE = re.compile(r"([A-Za-z]{2})(?![A-Za-z])")


def word_count(text: str, *, lowered_words: Sequence[str] | None = None) -> int:
    """Words in ``text`` as the stream's ``word_count`` counts them (runs of word characters).

    ``lowered_words``: the words of ``text.lower()`` when the caller has them, counted instead
    of ``text`` read again. Their number is the same: lower-casing maps each word character to
    word characters and each other character to others, except U+0130 (İ), which lowers to
    "i" and a combining dot that is no word character; a text holding it is counted itself.
    """
    if lowered_words is not None and "\u0130" not in text:
        return len(lowered_words)
    return len(WORD.findall(text))


def is_usable(text: str, min_chars: int = USABLE_WORD_CHARS) -> bool:
    """Whether ``text`` holds at least ``min_chars`` word characters (stops counting once it does)."""
    total = 0
    for word in WORD.finditer(text):
        total += word.end() - word.start()
        if total >= min_chars:
            return True
    return False


def bom_encoding(body: bytes) -> tuple[str, int] | None:
    """(codec, BOM length) when ``body`` starts with a byte-order mark."""
    for bom, encoding in BOMS:
        if body.startswith(bom):
            return encoding, len(bom)
    return None


def language_code(value: object) -> str | None:
    """"en-GB", "en_US", " EN", "en, fr" -> "en"; anything without a 2-letter ISO 639-1 primary tag -> None."""
    if not isinstance(value, str):
        return None
    match = _LANGUAGE_CODE.match(value.strip().split(",")[0].strip())
    return match.group(1).lower() if match else None
