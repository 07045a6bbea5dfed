"""Publisher boilerplate learned per feed: paragraphs that recur across a feed's articles.

A newsletter plea, a "Read more" line or a standard disclaimer sits inside the
article container of every story a publisher prints, so no page-level rule can
tell it from the text; across one feed's articles it is the paragraph that comes
back word for word. Pure: this module fingerprints paragraphs and decides what
to strip given how many distinct articles of the feed carried each fingerprint
(the counts live in Redis: ``Store.boilerplate_counts`` reads them, publishing an article counts its
fingerprints).

A paragraph seen in fewer than ``threshold`` earlier articles is kept, so one
seen once is never stripped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

__all__ = ["DEFAULT_THRESHOLD", "digest", "fingerprint", "fingerprints", "strip_markdown", "strip_paragraphs"]

DEFAULT_THRESHOLD = 3  # earlier distinct articles of the feed that carried the paragraph
# Long paragraphs are story text even when repeated (a quoted statement, a follow-up's
# recap): only lines up to this long are learned and stripped.
MAX_CHARS = 400
# What a paragraph's digest compares: runs of letters and digits of its casefolded text.
WORD = re.compile(r"[^\W_]+")


def _norm(paragraph: str) -> str:
    return " ".join(WORD.findall(paragraph.casefold()))


def _digest(paragraph: str) -> str | None:
    norm = _norm(paragraph)
    if not norm:
        return None
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=8).hexdigest()


# An article's short paragraphs are digested three times on its way out: its fingerprints, the strip,
# its update baseline (dedupe/changes.py), each a pure function of the text. The cache makes that
# once, without threading digests through the pipeline. A batch's short paragraphs fit many times
# over; long ones are digested once (only the baseline does), so they stay out of it: the cache's
# memory is bounded by MAX_CHARS: about 2 MB when full, 7 at most.
_short_digest = lru_cache(maxsize=4096)(_digest)


def digest(paragraph: str) -> str | None:
    """16 hex digits for a paragraph of any length, compared case-, punctuation- and markup-insensitively;
    None when it has no word. A learnable paragraph's :func:`fingerprint` is this same value, so a
    published text's digests (dedupe/changes.py) can be looked up among the feed's boilerplate counts."""
    return _short_digest(paragraph) if len(paragraph) <= MAX_CHARS else _digest(paragraph)


def fingerprint(paragraph: str) -> str | None:
    """:func:`digest` of a paragraph short enough to be learned as boilerplate; None otherwise."""
    if len(paragraph) > MAX_CHARS:
        return None
    return digest(paragraph)


def fingerprints(paragraphs: Sequence[str]) -> list[str]:
    """The distinct fingerprints of an article's paragraphs, in order."""
    return list(dict.fromkeys(fp for fp in map(fingerprint, paragraphs) if fp))


def strip_paragraphs(
    paragraphs: Sequence[str], counts: Mapping[str, int], threshold: int = DEFAULT_THRESHOLD
) -> tuple[list[str], list[str]]:
    """(kept, removed): paragraphs whose fingerprint ``counts`` puts at >= ``threshold`` articles go.

    Never strips every paragraph: if all would go, the article is kept whole (a feed
    publishing the same short notice over and over is publishing that notice).
    """
    kept: list[str] = []
    removed: list[str] = []
    for paragraph in paragraphs:
        fp = fingerprint(paragraph)
        (removed if fp is not None and counts.get(fp, 0) >= threshold else kept).append(paragraph)
    if not kept:
        return list(paragraphs), []
    return kept, removed


def strip_markdown(markdown: str, removed: Sequence[str]) -> str:
    """The Markdown body without the lines matching ``removed`` paragraphs (markup ignored)."""
    if not removed:
        return markdown
    gone = {_norm(p) for p in removed}
    blocks = [b for b in markdown.split("\n\n") if b.strip()]
    out = []
    for block in blocks:
        lines = [line for line in block.split("\n") if _norm(line) not in gone]
        if lines:
            out.append("\n".join(lines))
    return "\n\n".join(out)
