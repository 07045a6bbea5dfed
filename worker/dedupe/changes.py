"""What counts as a change: to a feed's entry (worth a re-check of its page) and to a published
article's text (worth an update event). Pure: text in, verdicts out.

An entry's *mark* is 12 bytes: its declared ``updated`` time (4 bytes, epoch seconds) and a digest of
its title, content and summary with the markup stripped (8 bytes). A mark that moved (``updated``
later, or the digest different) asks for a re-check of the article's page.

An article's *baseline* is what the re-check compares against, kept compact: a digest of its title
and one digest per paragraph (:func:`worker.dedupe.boilerplate.digest`, 8 bytes each, in order),
leaving out *volatile* paragraphs: short lines made only of numbers, dates and counter words
("Updated 10:32 GMT", "1,234 views", "5 min read"), which change without the story changing.

A change is real when the title changed or a paragraph was added, removed or changed. That is
finer than "word-shingle Jaccard below 0.95": any text whose shingle Jaccard drops below 0.95 has a
changed paragraph, while a corrected figure in one sentence of a long article ("12 killed" -> "14
killed") keeps the Jaccard near 0.99 and is exactly the correction a reader wants to hear of. The
paragraph digests are exact where a stored MinHash would only estimate the Jaccard (about +-0.02
at 0.95 with 128 values). Paragraphs the feed's learned boilerplate now covers are left out on both
sides, so boilerplate learned after the first publication is no change.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.dedupe.boilerplate import WORD, digest
from worker.dedupe.keys import normalise_text
from worker.text import word_count

__all__ = ["MARK_BYTES", "Baseline", "Change", "baseline", "compare", "entry_mark", "is_volatile", "learned",
           "mark_moved"]

MARK_BYTES = 12
DIGEST_BYTES = 8
_TAG = re.compile(r"<[^>]*>")
# A volatile paragraph is at most this many words, every one of them a number or one of these.
VOLATILE_MAX_WORDS = 12
_NUMERIC = re.compile(r"^\d+(?:st|nd|rd|th|am|pm|k|m|h|s|min|mins|hr|hrs)?$")
_VOLATILE_WORDS = frozenset(" ".join([
    "updated update updates last modified published posted edited revised first at on by as of ago just now",
    "today yesterday",
    "am pm gmt utc bst cet cest est edt cst cdt pst pdt ist jst aest z",
    "sec secs second seconds min mins minute minutes hr hrs hour hours day days week weeks month months",
    "year years",
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august",
    "september october november december mon tue tues wed thu thur thurs fri sat sun monday tuesday",
    "wednesday thursday friday saturday sunday",
    "view views viewed share shares shared comment comments like likes reads read reading time times",
    "reaction reactions reply replies vote votes this article story post has have been was were",
    "and the a k m",
]).split())


def entry_mark(title: str, content_html: str | None, summary_html: str | None, updated_epoch: float | None) -> bytes:
    """The entry's 12-byte mark: its ``updated`` time and a digest of its words (markup stripped, so a
    tracking pixel's new token in an attribute moves nothing)."""
    words = normalise_text(" \n ".join(_TAG.sub(" ", part or "") for part in (title, content_html, summary_html)))
    seconds = min(max(int(updated_epoch or 0), 0), 0xFFFFFFFF)
    return struct.pack(">I", seconds) + hashlib.blake2b(words.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def mark_moved(old: bytes, new: bytes) -> bool:
    """Whether the entry changed since ``old`` was taken: its ``updated`` moved forward or its words changed.

    An ``updated`` moving backwards alone is no change (a feed regenerated from an older copy)."""
    if len(old) != MARK_BYTES or len(new) != MARK_BYTES:
        return old != new
    return struct.unpack(">I", new[:4])[0] > struct.unpack(">I", old[:4])[0] or old[4:] != new[4:]


def is_volatile(paragraph: str) -> bool:
    """A short line of numbers, dates and counter words only: a timestamp or a counter, not story text.

    Its words are the ones its digest compares; story text says so by its first word or two, so the
    words are read one at a time and no further than the verdict needs."""
    seen = 0
    for match in WORD.finditer(paragraph.casefold()):
        seen += 1
        token = match.group()
        if seen > VOLATILE_MAX_WORDS or not (token in _VOLATILE_WORDS or _NUMERIC.match(token)):
            return False
    return seen > 0


@dataclass(frozen=True)
class Baseline:
    """What a published version is compared by: its title's digest and its paragraphs' (16 hex digits each)."""

    title: str
    paragraphs: tuple[str, ...]

    def packed(self) -> bytes:
        """The paragraph digests as 8-byte records, for the store."""
        return b"".join(bytes.fromhex(d) for d in self.paragraphs)

    @classmethod
    def unpack(cls, title: str, packed: bytes) -> Baseline:
        return cls(title, tuple(packed[i:i + DIGEST_BYTES].hex() for i in range(0, len(packed), DIGEST_BYTES)))


def _story(text: str) -> list[tuple[str, str]]:
    """(paragraph, digest) of each paragraph that is story text (not volatile, not empty)."""
    out = []
    for paragraph in text.split("\n\n"):
        if not paragraph.strip() or is_volatile(paragraph):
            continue
        value = digest(paragraph)
        if value is not None:
            out.append((paragraph, value))
    return out


def baseline(title: str, text: str) -> Baseline:
    """The baseline of a version with this ``title`` and ``text`` (paragraphs split by blank lines)."""
    return Baseline(digest(title) or "", tuple(d for _, d in _story(text)))


@dataclass(frozen=True)
class Change:
    """How a new version differs from the previous one (the update event's ``changes``)."""

    paragraphs_added: int
    paragraphs_removed: int
    paragraphs_changed: int
    title_changed: bool
    changed_share: float  # share of the new text's words in added or changed paragraphs (0..1)

    def as_dict(self) -> dict[str, Any]:
        return {"paragraphs_added": self.paragraphs_added, "paragraphs_removed": self.paragraphs_removed,
                "paragraphs_changed": self.paragraphs_changed, "title_changed": self.title_changed,
                "changed_share": self.changed_share}


def compare(old: Baseline, title: str, text: str, ignore: Collection[str] = ()) -> Change | None:
    """The change from ``old`` to the version with ``title`` and ``text``; None when it is no real change.

    ``ignore``: paragraph digests to leave out on both sides (the feed's learned boilerplate).
    """
    before = [d for d in old.paragraphs if d not in ignore]
    after = [(d, word_count(paragraph)) for paragraph, d in _story(text) if d not in ignore]
    added = removed = changed = 0
    new_words = 0
    ops = difflib.SequenceMatcher(a=before, b=[d for d, _ in after], autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        old_n, new_n = i2 - i1, j2 - j1
        paired = min(old_n, new_n)
        changed += paired
        removed += old_n - paired
        added += new_n - paired
        new_words += sum(words for _, words in after[j1:j2])
    title_changed = (digest(title) or "") != old.title
    if not (added or removed or changed or title_changed):
        return None
    total = sum(words for _, words in after)
    return Change(added, removed, changed, title_changed, round(new_words / total, 3) if total else 0.0)


def learned(digests: Sequence[str], counts: Mapping[str, int], threshold: int) -> set[str]:
    """The digests the feed's boilerplate counts put at ``threshold`` articles or more."""
    return {d for d in digests if counts.get(d, 0) >= threshold}
