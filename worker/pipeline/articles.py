"""Articles from what the pipeline found: a page, a feed's own content, a newsletter; and what
publishing needs of them (near-duplicate key, learned boilerplate stripped)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from worker.dedupe import boilerplate
from worker.dedupe.keys import article_id, canonical_url, message_id_key, same_site
from worker.dedupe.minhash import PERMUTATIONS, THRESHOLD, signature
from worker.extract import decode_html, detect_language, extract_article, text_from_html_fragment
from worker.models import Article, Entry, Fetched, Newsletter, NewsletterSource
from worker.store import NearKey, Store
from worker.text import word_count


def article_from_page(entry: Entry, fetched: Fetched, *, selector: str | None = None,
                      strip: Sequence[str] = ()) -> tuple[Article, str | None]:
    """The article from its page, and the page's own canonical link when it names one on the same site.

    ``selector`` and ``strip``: the source's CSS selectors (the body; elements removed first)."""
    html = decode_html(fetched.body, fetched.content_type)
    page = extract_article(html, url=fetched.url, entry_title=entry.title, entry_tags=entry.tags,
                           entry_author=entry.author, entry_published=entry.published,
                           feed_html=entry.content_html or entry.summary_html, selector=selector, strip=strip)
    url = canonical_url(fetched.url)
    article = Article(
        id=article_id(url), url=url, title=page.title or entry.title, text=page.text, feed=entry.feed,
        published=page.published or entry.published, author=page.author or entry.author,
        language=page.language, guid=entry.guid, tags=list(dict.fromkeys([*entry.tags, *page.tags])),
        extraction=page.extraction, authors=page.authors or ([entry.author] if entry.author else []),
        updated=page.updated, categories=page.categories, image=page.image, sitename=page.sitename,
        description=page.description, word_count=page.word_count, markdown=page.markdown,
    )
    # A page's rel=canonical/og:url is another name for the same article, but only
    # when it points at its own site: a syndicated copy naming the original's
    # site must not take over (or be blocked by) the original's URL claim.
    own = page.canonical_url if page.canonical_url and same_site(page.canonical_url, fetched.url) else None
    return article, own


def article_from_feed(entry: Entry, reason: str | None) -> Article:
    """The article from the feed's own content (the page was not fetched, or gave nothing: ``reason``)."""
    url = canonical_url(entry.url)
    text = text_from_html_fragment(entry.content_html or entry.summary_html or "")
    return Article(
        id=article_id(url), url=url, title=entry.title, text=text, feed=entry.feed,
        published=entry.published, author=entry.author, guid=entry.guid, tags=entry.tags,
        extraction="feed", fallback_reason=reason,
        authors=[entry.author] if entry.author else [], word_count=word_count(text), markdown=text,
        language=detect_language(text),
    )


def newsletter_article(source: NewsletterSource, letter: Newsletter) -> Article:
    """The stream's article for a newsletter: id from its Message-ID, url ``mid:<Message-ID>`` (RFC 2392)."""
    mid = letter.message_id or f"{letter.author_address}/{letter.published}/{letter.title}"
    key = message_id_key(mid)
    return Article(
        id=key, url=f"mid:{quote(mid, safe='@.-_!$&*+=^`{|}~')}", title=letter.title, text=letter.text,
        feed=source.name, published=letter.published, author=letter.author, guid=letter.message_id,
        tags=list(source.tags), extraction="newsletter", list_id=letter.list_id,
        authors=[letter.author] if letter.author else [], word_count=word_count(letter.text),
        markdown=letter.text, language=detect_language(letter.text),
    )


def near_key(text: str, *, normalised: str | None = None) -> NearKey | None:
    """The article text's entry in the near-duplicate index; None for texts too short to judge."""
    sig = signature(text, normalised=normalised)
    if sig is None:
        return None
    return NearKey(sig.packed(), sig.bands(), min_agree=round(THRESHOLD * PERMUTATIONS))


def strip_learned_boilerplate(store: Store, articles: Sequence[Article]) -> list[list[str]]:
    """Drop paragraphs each feed's earlier published articles carried too (publisher boilerplate).

    Reads the counts for all of ``articles`` in one round trip and returns each article's
    fingerprints, which its publish counts (so only published articles teach the feed).
    """
    paragraphs = [article.text.split("\n\n") for article in articles]
    fingerprints = [boilerplate.fingerprints(paras) for paras in paragraphs]
    counts = store.boilerplate_counts_many([(article.feed, fps) for article, fps in zip(articles, fingerprints,
                                                                                          strict=True)])
    for article, paras, known in zip(articles, paragraphs, counts, strict=True):
        kept, removed = boilerplate.strip_paragraphs(paras, known)
        if removed:
            article.text = "\n\n".join(kept)
            article.markdown = boilerplate.strip_markdown(article.markdown, removed)
            article.word_count = word_count(article.text)
            article.boilerplate_removed = len(removed)
    return fingerprints
