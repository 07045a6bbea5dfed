"""Page metadata: declared dates, rel links, and the costly searches only when the feed leaves a gap."""

from __future__ import annotations

import pytest

from worker.extract import extract_article
from worker.extract.pagemeta import declared_date, iso_utc, rel_links

BODY = "".join(
    f"<p>Paragraph {n} of a story about fibre roll-out in rural areas, with enough words to count as news.</p>"
    for n in range(6)
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T09:30:00+00:00", "2026-11-23T09:30:00Z"),
        ("2026-11-23T10:30:00+0100", "2026-11-23T09:30:00Z"),
        ("2026-11-23T09:30:00Z", "2026-11-23T09:30:00Z"),
        ("2026-11-23 09:30:00", "2026-11-23T09:30:00Z"),
        ("2026-11-23", "2026-11-23T00:00:00Z"),
        ("23 November 2026", None),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
    ],
)
def test_iso_utc(value: str, expected: str | None) -> None:
    assert iso_utc(value) == expected


def test_declared_date_prefers_meta_over_time_elements() -> None:
    page = (
        '<html><head><meta content="2026-11-20T08:00:00+00:00" property="article:published_time"></head>'
        '<body><time datetime="2026-11-24T00:00:00Z">today</time></body></html>'
    )
    assert declared_date(page) == "2026-11-20T08:00:00Z"
    jsonld = '<script type="application/ld+json">{"datePublished": "2026-11-19T07:00:00Z"}</script>'
    assert declared_date(jsonld) == "2026-11-19T07:00:00Z"
    only_time = '<body><time datetime="2026-11-24T06:00:00Z">x</time></body>'
    assert declared_date(only_time) == "2026-11-24T06:00:00Z"
    assert declared_date(only_time, time_elements=False) is None


def test_rel_links_split_categories_and_tags() -> None:
    page = (
        '<a href="/networks" rel="category tag">Networks</a> <a rel="tag" href="/t/5g">5G &amp; 6G</a>'
        '<a rel="tag" href="/t/ran"><span>Open RAN</span></a><a rel="nofollow" href="/x">Other</a>'
    )
    assert rel_links(page, "category") == ["Networks"]
    assert rel_links(page, "tag") == ["5G & 6G", "Open RAN"]


def test_page_metadata_comes_first_and_searches_run_only_without_feed_metadata() -> None:
    page = (
        "<html><head><title>Fibre reaches the hills</title></head><body><article>"
        '<div class="byline">By <a rel="author" class="author" href="/a/jo">Jo Bloggs</a></div>'
        f"<h1>Fibre reaches the hills</h1>{BODY}<p>Posted on 2026-11-21</p></article></body></html>"
    )
    searched = extract_article(page, url="https://example.com/fibre")
    assert searched.author == "Jo Bloggs"
    assert searched.published is not None and searched.published.startswith("2026-11-21")
    from_feed = extract_article(
        page, url="https://example.com/fibre", entry_author="Feed Author", entry_published="2026-11-22T00:00:00Z"
    )
    assert from_feed.author is None and from_feed.published is None  # the caller falls back to the feed's
    declared = page.replace("<head>", '<head><meta name="author" content="Sam Page">'
                                      '<meta property="article:published_time" content="2026-11-20T12:00:00Z">')
    stated = extract_article(
        declared, url="https://example.com/fibre", entry_author="Feed Author", entry_published="2026-11-22T00:00:00Z"
    )
    assert stated.author == "Sam Page" and stated.published == "2026-11-20T12:00:00Z"
