"""Page HTML -> article text and metadata: the orchestration of the extraction stage.

Pure: str in, data out; no I/O, no settings. The parts it calls:
:mod:`pagemeta` (metadata off the parsed tree), trafilatura (the body),
:mod:`cleanup` (what trafilatura leaves undone), :mod:`hints` (language, h1,
breadcrumbs from the raw page), :mod:`candidates` (which body wins),
:mod:`markdown`, :mod:`language`, :mod:`fragment` (the feed's own HTML).

Text format (``Extracted.text`` and :func:`fragment.text_from_html_fragment`): the article
body alone, one paragraph per block (trafilatura's text lines: paragraphs,
headings, list items as ``- item``, table rows as ``| a | b |``; a ``<br>`` ends a
paragraph, since many sites separate paragraphs with ``<br><br>``), whitespace
inside a paragraph collapsed, paragraphs separated by exactly one blank line.

``published`` is ISO 8601 UTC, ``YYYY-MM-DDTHH:MM:SSZ``, the one shape the stream
contract promises. A page that states only a day gives midnight UTC of that day
(``2026-11-23T00:00:00Z``), and a time without an offset is taken as UTC: one
format for consumers to parse and sort, at the cost of implying a precision the
page did not give. The page's declared date comes first, the feed's next.

Speed: the page is parsed once; metadata is read off that tree by ``pagemeta``
before the extraction prunes it (trafilatura's own ``with_metadata=True`` pass
costs about half an extraction again, mostly for searches a feed makes needless),
and everything else this module adds reads the raw string with bounded regular
expressions (no second parse, no tree copy: a copy costs a quarter of a parse, which
is why :func:`bare_extraction` runs trafilatura's extraction on that tree itself rather
than through ``trafilatura.bare_extraction``, which copies a tree it is given); see
``bench/extraction.py`` (``--stages``: where the time goes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from trafilatura.core import trafilatura_sequence
from trafilatura.settings import DEFAULT_CONFIG, Document, Extractor
from trafilatura.utils import load_html
from trafilatura.xml import xmltotxt

from worker.errors import ExtractError
from worker.extract.candidates import Candidate, PageLinks, choose, coverage, is_full_text, looks_weak
from worker.extract.cleanup import clean_paragraphs, drop_link_lists
from worker.extract.fragment import fragment_paragraphs
from worker.extract.guard import INPUT_ERRORS
from worker.extract.hints import page_hints
from worker.extract.language import detect_language
from worker.extract.markdown import markdown, markdown_escape
from worker.extract.pagemeta import page_metadata
from worker.extract.selector import select_body, strip_elements
from worker.extract.witness import missing_lede, summary_lead
from worker.models import Extracted
from worker.text import is_usable, word_count

__all__ = ["extract_article"]


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
    selector: str | None = None,
    strip: Sequence[str] = (),
) -> Extracted:
    """A page's HTML (str) -> its article text and metadata.

    The page is parsed once (trafilatura's ``load_html``); :func:`pagemeta.page_metadata`
    reads the metadata off that tree, then trafilatura's extraction
    (:func:`bare_extraction`, ``include_comments=False, favor_precision=True``) extracts the body, and
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
    extraction, with its link density measured against the page's ``<a>`` texts
    (read off the tree before the extraction prunes it); only where a second
    opinion can win (the body is no body, or the feed's text ``feed_html``, the
    entry's content:encoded/summary, disagrees with it) a recall-mode extraction
    (a second parse and extraction) and the feed's own text. A summary (under
    150 words) is a witness: it never replaces a longer page body, and when the
    body lacks its opening, the page block holding that opening is put back in
    front (:mod:`witness`). ``Extracted.extraction`` names the winner
    ("precision", "recall", "feed"); ``markdown`` is the same body with
    headings, list items and quotes marked (read off the winning extraction's
    tree: no second extraction; see :func:`markdown.markdown`).

    A source's rules (issue 16): the elements ``strip`` selects are removed after the metadata is
    read and before the body is looked for; the elements ``selector`` selects are the body
    (``extraction: "selector"``), cleaned as a feed's HTML is, and no other candidate is weighed.
    When it selects nothing (or nothing usable, or the whole page), the chain above runs and
    ``Extracted.selector`` says so.

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
        hints = page_hints(html)
        stripped = strip_elements(tree, tuple(strip)) if strip else {}
        chosen, chosen_html = select_body(tree, selector) if selector else (None, None)
        links = PageLinks.of_tree(tree)
        # after the metadata and the links: the extraction prunes the tree in place
        document = bare_extraction(tree, url=url, favor_precision=True) if chosen_html is None else None
    except INPUT_ERRORS as exc:
        raise ExtractError(f"trafilatura failed: {type(exc).__name__}: {exc}") from exc
    title = meta.title or " ".join((entry_title or "").split())
    categories = list(dict.fromkeys(c.strip() for c in meta.categories if c and c.strip()))
    tags = _split_tags(meta.tags)
    labels = [*entry_tags, *categories, *tags, *hints.crumbs]
    alt_titles = [t for t in (entry_title, hints.h1) if t]
    author = meta.author or entry_author
    authors = [a.strip() for a in (author or "").split(";") if a.strip()]
    # cleaned before it is judged: a "The post ... appeared first on ..." footer is no part of a summary
    context = {"title": title, "labels": labels, "alt_titles": alt_titles, "authors": authors}
    if chosen_html is not None:
        body = _html_candidate(chosen_html, "selector", **context)
        if body is not None and is_usable("\n\n".join(body.paragraphs)):
            return _extracted(meta, hints, url, title, categories, tags, body, selector="matched", stripped=stripped)
        chosen = "missed"  # matched, but nothing usable in it: the chain runs as if it had missed
        try:  # selecting left the tree as it was
            document = bare_extraction(tree, url=url, favor_precision=True)
        except INPUT_ERRORS as exc:
            raise ExtractError(f"trafilatura failed: {type(exc).__name__}: {exc}") from exc
    feed = _html_candidate(feed_html, "feed", **context) if feed_html else None
    if (document is None or not document.text) and feed is None:
        raise ExtractError("no article text found")

    def cleaned(name: str, body: Any, raw_text: str) -> Candidate:
        paragraphs = clean_paragraphs(raw_text.split("\n"), title=title, labels=labels, alt_titles=alt_titles,
                                      authors=authors)
        paragraphs = drop_link_lists(paragraphs, links.is_link)
        candidate = Candidate(name, paragraphs)
        candidate.link_density = links.density_of(candidate)
        candidate.markdown = markdown(body, paragraphs) if body is not None else None
        return candidate

    primary = cleaned("precision", document.body, document.text) if document is not None and document.text else \
        Candidate("precision", [])
    best = primary
    if looks_weak(primary, feed):
        recall = None
        lede = None
        try:
            second_tree = load_html(html)
            if strip:
                strip_elements(second_tree, tuple(strip))
            if feed is not None and not is_full_text(feed):
                lede = missing_lede(second_tree, summary_lead(feed, primary))  # before the extraction prunes
            second = bare_extraction(second_tree, url=url, favor_recall=True)
            if second is not None and second.text:
                recall = cleaned("recall", second.body, second.text)
        except INPUT_ERRORS:
            pass  # the precision body (or the feed's) still stands
        best = choose(primary, recall, feed)
        if lede is not None and feed is not None and best is not feed:
            best = _with_lede(best, lede, feed)
    return _extracted(meta, hints, url, title, categories, tags, best, selector=chosen, stripped=stripped)


def bare_extraction(tree: Any, *, url: str, favor_precision: bool = False,
                    favor_recall: bool = False) -> Document | None:
    """``trafilatura.bare_extraction(tree, url=url, include_comments=False, favor_precision=...,
    favor_recall=..., with_metadata=False)``, the same result, without its copy of ``tree``.

    Given a tree rather than a string, ``bare_extraction`` deep-copies it first so as to leave
    the caller's tree as it was (0.35 ms a page on the corpus, a quarter of a parse); ours
    is read before the extraction and never after, so this runs the same steps on the tree
    itself, which the extraction prunes. None where trafilatura's returns None.
    """
    options = Extractor(config=DEFAULT_CONFIG, output_format="python", precision=favor_precision,
                        recall=favor_recall, comments=False, url=url)
    try:
        body, text, _, comments = trafilatura_sequence(tree, options, options.url)
    except (TypeError, ValueError):
        return None
    if len(text) < options.min_output_size and len(comments) < options.min_output_comm_size:
        return None
    document = Document()
    document.text = document.raw_text = xmltotxt(body, options.formatting)
    document.body = body
    return document


def _extracted(meta: Any, hints: Any, url: str, title: str, categories: list[str], tags: list[str],
               best: Candidate, *, selector: str | None, stripped: dict[str, int]) -> Extracted:
    text = "\n\n".join(best.paragraphs)
    if not is_usable(text):
        raise ExtractError("no article text found (too little text)")
    return Extracted(
        title=title,
        text=text,
        author=meta.author,
        published=meta.published,
        language=hints.language or detect_language(text),
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
        word_count=word_count(text, lowered_words=best.tokens),
        selector=selector,
        stripped=stripped,
    )


def _with_lede(body: Candidate, lede: str, summary: Candidate) -> Candidate:
    """``body`` opened by the page's ``lede`` block when the body still lacks the summary's opening."""
    block = Candidate(body.name, [lede])
    if not summary_lead(summary, body) or coverage(block, body) >= 0.5:
        return body
    with_lede = Candidate(body.name, [lede, *body.paragraphs], link_density=body.link_density)
    with_lede.markdown = markdown_escape(lede) + "\n\n" + (body.markdown or "\n\n".join(body.paragraphs))
    return with_lede


def _html_candidate(html: str, name: str, **context: Any) -> Candidate | None:
    """An HTML fragment (the feed's own content, or the elements a source's selector chose), cleaned with
    the page's ``context`` (title, labels, ...), as a candidate body.

    Its link density is measured off its own ``<a>`` elements; None when it has no text.
    """
    paragraphs, link_density = fragment_paragraphs(html)
    paragraphs = clean_paragraphs(paragraphs, **context)
    if not paragraphs:
        return None
    return Candidate(name, paragraphs, link_density=link_density)
