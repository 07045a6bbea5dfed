"""Choosing the article body among candidates: the page in precision mode, in recall mode, the feed's own content.

Pure: paragraphs in, a choice out. ``article`` builds the candidates; this module
says when the first one deserves a second opinion (so that the costly recall-mode
extraction runs only where it can win) and which one wins.

The judges, all general (nothing here knows a site):

- length: words, and whether a feed text is a full article (``FULL_TEXT_WORDS``)
  or a summary;
- link density: the share of a candidate's text inside ``<a>`` elements, measured:
  for the feed's HTML off its own ``<a>`` elements, for page candidates against
  the texts of the page's ``<a>`` elements (:class:`PageLinks`, read off the tree
  the extraction parses, before it prunes it: trafilatura's text has lost its links);
- agreement: the share of one candidate's 4-word shingles found in another.

And the rules that keep a teaser from winning. A feed's ``<description>`` is
usually the article's first ~200 characters: it is a witness for the page body,
never a rival to it. A page candidate that holds most of a summary's shingles is
the block the summary describes; a summary replaces a page body only when the
page gave less text than the summary itself, or a short link-heavy block (a
menu, a list of headlines) instead of an article. Only a full text (content:encoded)
can replace a longer page body, and only one that does not agree with it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

__all__ = ["Candidate", "PageLinks", "choose", "coverage", "is_full_text", "looks_weak", "tokens_of"]

FULL_TEXT_WORDS = 150  # a feed text this long is a full article; a shorter one is a summary (a witness)
WEAK_WORDS = 120  # fewer words than this in the precision body: a full-text feed gets a say
AGREE = 0.6  # the page must cover this share of a full-text feed's shingles
WITNESS = 0.9  # a page body holding this share of a summary's shingles is the block the summary describes
CONTAINS = 0.9  # a recall candidate must contain this share of the precision one
RECALL_MAX_GROWTH = 1.5  # recall text at most this many times the precision text
BETTER = 0.05  # how much better a recall candidate must agree with the feed to win
MAX_LINK_DENSITY = 0.5  # more of its text inside links than this: a list of links, not an article
MIN_WORDS = 5  # fewer words than this is no body at all
_DENSITY_SAMPLE = 5000  # words: a fair sample of any article, and a bound on a hostile page's cost
_MAX_LINK_TOKENS = 60  # a longer link (a whole card) counts by its first tokens; bounds the scan per word

_TOKEN = re.compile(r"\w+")


def tokens_of(text: str) -> list[str]:
    """The lower-cased word tokens shingles are made of."""
    return _TOKEN.findall(text.lower())


class PageLinks:
    """The texts of a page's ``<a>`` elements, to measure how much of a candidate lies inside links.

    Each link's text counts as many times as the page links it: a candidate's
    paragraph that is one link's whole text (a menu item, a headline in a list)
    is linked; inside a paragraph, runs of two or more words that are a link's
    whole text are linked, each link used up once. One-word links inside prose
    ("here", a name) are not counted: a word alone is too common to place.
    Shares are of words.
    """

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self._count: Counter[tuple[str, ...]] = Counter(
            tokens for tokens in (tuple(tokens_of(text)[:_MAX_LINK_TOKENS]) for text in texts) if tokens
        )
        starts: dict[str, set[int]] = {}
        for phrase in self._count:
            if len(phrase) >= 2:
                starts.setdefault(phrase[0], set()).add(len(phrase))
        # longest first: a whole headline before a name inside it
        self._lengths = {token: sorted(lengths, reverse=True) for token, lengths in starts.items()}

    @classmethod
    def of_tree(cls, tree: Any) -> PageLinks:
        """The links of a parsed page (an lxml tree); call it before an extraction prunes the tree."""
        return cls((a.text or "") if len(a) == 0 else "".join(a.itertext()) for a in tree.iter("a"))

    def is_link(self, paragraph: str) -> bool:
        """Whether ``paragraph`` is, word for word, the whole text of one of the page's links."""
        return self._count.get(tuple(tokens_of(paragraph)), 0) > 0

    def density(self, paragraphs: Iterable[str]) -> float:
        """Share of the paragraphs' words that lie inside the page's links (of the first ``_DENSITY_SAMPLE`` words)."""
        return self._density(tokens_of(paragraph[:_DENSITY_SAMPLE * 20]) for paragraph in paragraphs)

    def density_of(self, candidate: Candidate) -> float:
        """:meth:`density` of a candidate's paragraphs, read off the words it has already tokenised."""
        return self._density(tokens if len(paragraph) <= _DENSITY_SAMPLE * 20 else
                             tokens_of(paragraph[:_DENSITY_SAMPLE * 20])
                             for paragraph, tokens in zip(candidate.paragraphs, candidate.paragraph_tokens,
                                                          strict=True))

    def _density(self, paragraph_tokens: Iterable[list[str]]) -> float:
        budget = self._count.copy()
        lengths = self._lengths
        linked = total = 0
        for paragraph in paragraph_tokens:
            if total >= _DENSITY_SAMPLE:
                break
            tokens = tuple(paragraph[:_DENSITY_SAMPLE - total])
            total += len(tokens)
            if budget.get(tokens, 0) > 0:  # the whole paragraph is one link's text
                budget[tokens] -= 1
                linked += len(tokens)
                continue
            # left to right, a matched phrase's words are not tried again as starts
            free = 0
            for i in [i for i, token in enumerate(tokens) if token in lengths]:
                if i < free:
                    continue
                for length in lengths[tokens[i]]:
                    phrase = tokens[i:i + length]
                    if len(phrase) == length and budget.get(phrase, 0) > 0:
                        budget[phrase] -= 1
                        linked += length
                        free = i + length
                        break
        return linked / total if total else 0.0


@dataclass
class Candidate:
    """One possible body: its name (recorded as the article's ``extraction``), paragraphs, link density."""

    name: str
    paragraphs: list[str]
    link_density: float = 0.0
    markdown: str | None = None
    paragraph_tokens: list[list[str]] = field(default_factory=list, init=False, repr=False)
    _tokens: list[str] = field(default_factory=list, init=False, repr=False)
    _shingles: set[tuple[str, ...]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # paragraph by paragraph (the link density reads them so), the same words as the
        # joined text's: no word spans the space between paragraphs
        self.paragraph_tokens = [tokens_of(paragraph) for paragraph in self.paragraphs]
        self._tokens = list(chain.from_iterable(self.paragraph_tokens))

    @property
    def words(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[str]:
        """The lower-cased words of the paragraphs, in order (:func:`tokens_of` their joined text)."""
        return self._tokens

    def ordered_shingles(self) -> list[tuple[str, ...]]:
        """4-word shingles in text order."""
        tokens = self._tokens
        return [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]

    def shingles(self) -> set[tuple[str, ...]]:
        if self._shingles is None:
            self._shingles = set(self.ordered_shingles())
        return self._shingles


def coverage(part: Candidate, whole: Candidate) -> float:
    """Share of ``part``'s shingles that ``whole`` contains (1.0 when ``part`` has none)."""
    mine = part.shingles()
    if not mine:
        return 1.0
    return len(mine & whole.shingles()) / len(mine)


def _acceptable(candidate: Candidate) -> bool:
    return candidate.words >= MIN_WORDS and candidate.link_density <= MAX_LINK_DENSITY


def is_full_text(feed: Candidate | None) -> bool:
    """Whether a feed's text is a full article rather than a summary."""
    return feed is not None and feed.words >= FULL_TEXT_WORDS


def looks_weak(primary: Candidate, feed: Candidate | None) -> bool:
    """Whether the precision body deserves a second opinion (the cost of a recall-mode extraction).

    True only where a recall candidate could win (see :func:`choose`): the
    precision body is no body (too short, or measured link-heavy); or a witness
    disagrees with it: a full-text feed it covers less than ``AGREE`` of (or a
    short body beside a full text), a summary it holds less than ``WITNESS`` of.
    Without a feed, a usable precision body stands (measured: on whole pages
    recall mostly adds furniture).
    """
    if not _acceptable(primary):
        return True
    if feed is None or not feed.shingles():
        return False
    if is_full_text(feed):
        return primary.words < WEAK_WORDS or coverage(feed, primary) < AGREE
    return coverage(feed, primary) < WITNESS


def _recall_wins(primary: Candidate, recall: Candidate, feed: Candidate | None) -> bool:
    if not _acceptable(recall):
        return False
    if not _acceptable(primary):
        return True
    if feed is None or not (primary.words < recall.words <= RECALL_MAX_GROWTH * primary.words
                            and coverage(primary, recall) >= CONTAINS):
        return False
    # recall adds to the precision body: worth it when the witness agrees better with it
    agreement = coverage(feed, recall)
    return agreement > coverage(feed, primary) + BETTER and (is_full_text(feed) or agreement >= WITNESS)


def _feed_wins(best: Candidate, feed: Candidate) -> bool:
    if not _acceptable(feed):
        return False
    if best.words < MIN_WORDS:
        return True
    if is_full_text(feed):
        # the page found another text than the publisher's own full text
        return not _acceptable(best) or (feed.words > best.words and coverage(feed, best) < AGREE)
    # a summary: only over less text than itself, or over a short block of links
    return feed.words > best.words or (not _acceptable(best) and best.words < FULL_TEXT_WORDS)


def choose(primary: Candidate, recall: Candidate | None = None, feed: Candidate | None = None) -> Candidate:
    """The best body among the precision candidate and, when given, recall and feed ones.

    - recall wins over an unacceptable precision body when it is acceptable
      itself; over an acceptable one only when it contains it (``CONTAINS``), adds
      at most half again, and agrees with the feed's text clearly better (a
      summary: then holding at least ``WITNESS`` of it);
    - a full-text feed wins when the page's best is no body, or is shorter and
      covers less than ``AGREE`` of it (the page extraction found another block);
    - a summary wins only when the page's best has fewer words than it, or is a
      link-heavy block shorter than a full article: a summary never replaces a
      page body.
    """
    best = recall if recall is not None and _recall_wins(primary, recall, feed) else primary
    if feed is not None and _feed_wins(best, feed):
        best = feed
    return best
