"""Choosing the article body among candidates: the page in precision mode, in recall mode, the feed's own content.

Pure: paragraphs in, a choice out. ``extract`` builds the candidates; this module
only says when the first one looks weak (so that the costly second extraction
runs on few pages) and which one wins.

The judges, all general (nothing here knows a site):

- length: a body of fewer than ``WEAK_WORDS`` words is suspect (a teaser, a
  caption, a cookie notice instead of the story);
- link density: the share of a candidate's text inside links (for the feed's
  HTML, read off its ``<a>`` elements; trafilatura's own text has lost its links,
  so for the page candidates the share of short headline-like lines stands in:
  a list of links renders as exactly that);
- agreement: the share of one candidate's 4-word shingles found in another. A
  recall candidate must contain the precision one (it only adds to it) and a
  feed that carries the full text must be covered by what the page gave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Candidate", "choose", "coverage", "looks_weak"]

WEAK_WORDS = 120  # fewer words than this in the precision body: try the others
FEED_FULL_WORDS = 150  # a feed body this long is a full text, worth comparing with
AGREE = 0.6  # the page must cover this share of a full-text feed's shingles
CONTAINS = 0.9  # a recall candidate must contain this share of the precision one
RECALL_MAX_GROWTH = 1.5  # recall text at most this many times the precision text
MAX_LINK_DENSITY = 0.35
_HEADLINE_MAX_CHARS = 90

_TOKEN = re.compile(r"\w+")


@dataclass
class Candidate:
    """One possible body: its name (recorded as the article's ``extraction``), paragraphs, link density."""

    name: str
    paragraphs: list[str]
    link_density: float | None = None  # None: estimate from headline-like lines
    markdown: str | None = None
    _tokens: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._tokens = [t.lower() for t in _TOKEN.findall(" ".join(self.paragraphs))]
        if self.link_density is None:
            self.link_density = _headline_share(self.paragraphs)

    @property
    def words(self) -> int:
        return len(self._tokens)

    def shingles(self) -> set[tuple[str, ...]]:
        tokens = self._tokens
        return {tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)}


def _headline_share(paragraphs: list[str]) -> float:
    """Share of the characters in short lines that do not end as a sentence does (link lists look so)."""
    total = sum(len(p) for p in paragraphs)
    if not total:
        return 0.0
    short = sum(len(p) for p in paragraphs
                if len(p) <= _HEADLINE_MAX_CHARS and not p.rstrip(" \"'”’»)]").endswith((".", "!", "?", ":")))
    return short / total


def coverage(part: Candidate, whole: Candidate) -> float:
    """Share of ``part``'s shingles that ``whole`` contains (1.0 when ``part`` has none)."""
    mine = part.shingles()
    if not mine:
        return 1.0
    return len(mine & whole.shingles()) / len(mine)


def looks_weak(primary: Candidate, feed: Candidate | None) -> bool:
    """Whether the precision body deserves a second opinion (and the cost of a recall-mode extraction).

    Only a witness can overrule it: without a full-text feed to agree with, a recall
    candidate wins only over an unusable precision body (measured: on short pages
    recall mostly adds furniture) and a summary never beats a usable page body, so
    then only an unusable body is weak. With a full-text feed: a short body, or one
    covering less than ``AGREE`` of the feed.
    """
    if not _acceptable(primary):
        return True
    if feed is None or feed.words < FEED_FULL_WORDS:
        return False
    return primary.words < WEAK_WORDS or coverage(feed, primary) < AGREE


def _acceptable(candidate: Candidate) -> bool:
    return candidate.words >= 5 and (candidate.link_density or 0.0) <= MAX_LINK_DENSITY


def choose(primary: Candidate, recall: Candidate | None = None, feed: Candidate | None = None) -> Candidate:
    """The best body among the precision candidate and, when given, recall and feed ones.

    - recall wins when it contains the precision body, adds to it at most half
      again, is not link-heavy, and agrees with a full-text feed better than the
      precision body does; or when the precision body is unusable;
    - the feed wins when it is a full text, not link-heavy, longer than the page's
      best, and the page covers less than ``AGREE`` of it (the page extraction
      found some other block), or when no page candidate is acceptable.
    """
    best = primary
    full_feed = feed is not None and _acceptable(feed) and feed.words >= FEED_FULL_WORDS
    if recall is not None and _acceptable(recall) and (not _acceptable(primary) or (
        primary.words < recall.words <= RECALL_MAX_GROWTH * primary.words and coverage(primary, recall) >= CONTAINS
    )):
        if full_feed:
            assert feed is not None
            if coverage(feed, recall) > coverage(feed, primary) + 0.05:
                best = recall
        elif not _acceptable(primary):
            best = recall
    if feed is not None and _acceptable(feed) and (
        not _acceptable(best) or (full_feed and feed.words > best.words and coverage(feed, best) < AGREE)
    ):
        best = feed
    return best
