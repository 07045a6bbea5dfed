"""The clean-up rules trafilatura leaves undone: general rules over paragraphs, never keyed to a site. Pure.

The title repeated as the first line; a lone category label (or breadcrumb
trail) before the body; newsletter/subscription calls to action; share-button
text; "Read more"/"Related:" lines; a trailing related-articles list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from worker.text import WORD

__all__ = ["clean_paragraphs", "drop_link_lists"]

def _norm(text: str) -> str:
    """Comparison form: case-folded, punctuation and whitespace runs to one space."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


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
    # a blog's filing line: "Filed under: Politics |", "Posted in News, World", "Tagged: a, b"
    |^(?:(?:filed\s+(?:under|in)|posted\s+(?:in|under)|tagged(?:\s+with)?)\s*:?|(?:tags|categories)\s*:)
      \s*[^.!?:]{1,150}$
    # a wire story's credit line: "(Reporting by A and B; Editing by C)"
    # the footer WordPress appends to every feed item
    |^the\s+post\s+.{1,300}\s+appeared\s+first\s+on\s+.{1,120}$""",
    re.IGNORECASE | re.VERBOSE,
)
# "Read more: <headline>", "Related: <headline>", "See also: ..." (the prefix needs
# its separator, so a sentence starting "Related to this, ..." is left alone).
_POINTER_LINE = re.compile(
    r"""^(?:read\s+more|read\s+also|also\s+read|see\s+also|see\s+more|watch\s+more|related|more|recommended|read\s+next
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
    words = [w.casefold() for w in WORD.findall(paragraph)]
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


LINK_LIST_MIN_WORDS = 4  # a headline; shorter linked items (product names, places) may be the article's own list


def drop_link_lists(paragraphs: list[str], is_link: Callable[[str], bool]) -> list[str]:
    """Drop runs of two or more list items that are each the whole text of a page link and read as headlines.

    A list of linked headlines inside an article is a related-stories box whose
    heading the extraction lost ("- 15 Amazing Images of Stars"); ``is_link`` says
    whether a paragraph is one link's whole text (measured on the page).
    """
    flags = [p.startswith("- ") and len(WORD.findall(p)) >= LINK_LIST_MIN_WORDS and is_link(p) for p in paragraphs]
    return [p for i, p in enumerate(paragraphs)
            if not (flags[i] and ((i > 0 and flags[i - 1]) or (i + 1 < len(flags) and flags[i + 1])))]
