"""Extraction: the article body alone, its metadata, and no crash on any input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.errors import ExtractError
from worker.extract import clean_paragraphs, decode_html, extract_article, text_from_html_fragment

PAGES = Path(__file__).parent / "pages"

TELECOMS_BODY = [
    "Vodafone has switched on the first 2,500 open RAN sites in its South West rollout with Ericsson, the operator "
    "said on Monday, and claims the new equipment uses about a fifth less energy than the radios it replaces.",
    "The sites run Ericsson software on commercial servers in Bristol and Plymouth, with radio units from two "
    "suppliers. Vodafone said that mixing vendors on a single site, which it called the whole point of open RAN, "
    "had worked without the integration delays that slowed its earlier trial in Wales.",
    '"Three years ago people asked whether open RAN would ever carry real traffic," said Andrea Dona, chief network '
    'officer. "Today it carries the traffic of more than a million customers, and it does so more cheaply."',
    "The operator plans to convert a further 5,000 sites by the end of 2027. It published the energy figures in a "
    "technical note that compares power draw before and after the swap on 400 of the converted sites.",
    "Analysts were more cautious. Ofcom data show that rural coverage in Devon and Cornwall still trails the "
    "national average, and upgrading existing sites does little for places that have no mast at all.",
    "Ericsson declined to say how much of the contract value depends on the energy targets being met.",
]


def test_telecoms_page_yields_the_body_alone_with_metadata() -> None:
    html = (PAGES / "telecoms_article.html").read_text(encoding="utf-8")
    article = extract_article(html, url="https://www.telecoms.com/networks/vodafone-open-ran")
    assert article.text == "\n\n".join(TELECOMS_BODY)
    for furniture in ("Networks", "Register for the Telecoms.com newsletter", "Articles You May Like",
                      "Share on Twitter", "BT extends fibre", "Leave a comment", "Most popular"):
        assert furniture not in article.text
    assert article.title == "Vodafone and Ericsson switch on open RAN sites across the South West"
    assert article.author == "Jamie Davies"
    assert article.published == "2026-11-23T09:30:00Z"
    assert article.language == "en"
    assert article.canonical_url == (
        "https://www.telecoms.com/networks/vodafone-and-ericsson-switch-on-open-ran-sites-across-the-south-west"
    )
    assert article.tags == ["Open RAN", "Vodafone"]
    assert article.categories == ["Networks"]


def test_bare_extraction_without_the_copy_gives_trafilaturas_result() -> None:
    # ours runs trafilatura's steps on the tree itself; an upgrade that changes them shows here
    import trafilatura
    from lxml import etree
    from trafilatura.utils import load_html

    from worker.extract.article import bare_extraction

    url = "https://example.com/fibre-prices"
    texts = {}
    for page in ("fibre_prices.html", "telecoms_article.html"):
        html = (PAGES / page).read_text(encoding="utf-8")
        for mode in ("favor_precision", "favor_recall"):
            theirs = trafilatura.bare_extraction(load_html(html), url=url, include_comments=False,
                                                 with_metadata=False, **{mode: True})
            ours = bare_extraction(load_html(html), url=url, **{mode: True})
            assert theirs is not None and ours is not None
            assert (ours.text, ours.raw_text) == (theirs.text, theirs.raw_text)
            assert etree.tostring(ours.body) == etree.tostring(theirs.body)
            texts[page, mode] = ours.text
    # the page tells the modes apart (recall keeps the teaser box), and the table is kept
    assert texts["fibre_prices.html", "favor_precision"] != texts["fibre_prices.html", "favor_recall"]
    assert "| Alpha | 29 |" in texts["fibre_prices.html", "favor_precision"]
    empty = "<html><body><div><p></p></div></body></html>"
    assert bare_extraction(load_html(empty), url=url, favor_precision=True) is None
    assert trafilatura.bare_extraction(load_html(empty), url=url, include_comments=False, favor_precision=True) is None


def test_clean_paragraphs_removes_title_label_promo_share_and_related_list() -> None:
    body = ["First real paragraph of the story, long enough to be news.", "Second real paragraph, also news."]
    paragraphs = [
        "Tech",
        "Big Operator Buys Small Operator",
        *body[:1],
        "Get the latest news straight to your inbox. Register for the Example newsletter here.",
        "Share on Twitter Share on LinkedIn",
        *body[1:],
        "Articles You May Like",
        "Another headline about spectrum",
        "Yet another headline about fibre",
    ]
    cleaned = clean_paragraphs(paragraphs, title="Big operator buys small operator", labels=["Tech"])
    assert cleaned == body


def test_clean_paragraphs_keeps_a_first_sentence_that_only_resembles_a_label() -> None:
    paragraphs = ["Tech giants are spending more on fibre than ever before.", "More news follows here."]
    assert clean_paragraphs(paragraphs, title="Fibre spend", labels=["Tech"]) == paragraphs


def test_clean_paragraphs_keeps_long_news_paragraph_mentioning_a_newsletter() -> None:
    paragraph = (
        "The regulator said in its weekly newsletter that it would open a consultation on the auction next "
        "spring, and that operators who want to register interest must do so by the end of January, when it "
        "will publish a shortlist and a timetable for the sale of the remaining millimetre-wave spectrum."
    )
    assert clean_paragraphs([paragraph], title=None, labels=()) == [paragraph]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("café – naïve".encode(), "text/html; charset=utf-8", "café – naïve"),
        ("café “quoted”".encode("cp1252"), "text/html; charset=iso-8859-1", "café “quoted”"),
        # header wrong, meta right
        (
            b'<meta charset="windows-1252"><p>caf\xe9</p>',
            "text/html; charset=utf-8",
            '<meta charset="windows-1252"><p>café</p>',
        ),
        # no charset anywhere, valid UTF-8
        ("<p>Zürich</p>".encode(), "text/html", "<p>Zürich</p>"),
        # UTF-8 bytes under a legacy label: UTF-8 wins
        ("<p>Zürich</p>".encode(), "text/html; charset=iso-8859-1", "<p>Zürich</p>"),
        # BOM
        (b"\xef\xbb\xbf<p>x</p>", "", "<p>x</p>"),
        ("<p>日本語</p>".encode("utf-16"), "", "<p>日本語</p>"),
        (b"", "", ""),
        # an unknown label is ignored, not fatal
        (b"<p>plain</p>", "text/html; charset=x-no-such-codec", "<p>plain</p>"),
    ],
)
def test_decode_html_charsets(body: bytes, content_type: str, expected: str) -> None:
    assert decode_html(body, content_type) == expected


def test_decode_html_never_raises_on_garbage() -> None:
    garbage = bytes(range(256)) * 64
    text = decode_html(garbage, "text/html; charset=utf-8")
    assert isinstance(text, str) and text


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   ",
        "<html><body><nav><a href='/'>Home</a></nav></body></html>",
        "<p>x</p>",
        "\x00\x01\x02 binary junk \xff\xfe",
        "<div>" * 5000 + "deep" + "</div>" * 5000,
        "<html><body><script>var a = 1;</script></body></html>",
    ],
)
def test_pages_without_an_article_raise_extract_error(html: str) -> None:
    with pytest.raises(ExtractError) as error:
        extract_article(html, url="https://example.com/a")
    assert str(error.value).startswith("extract: ")


def test_extract_refuses_bytes() -> None:
    with pytest.raises(ExtractError):
        extract_article(b"<p>hello</p>", url="https://example.com/a")  # type: ignore[arg-type]


def test_language_detected_from_text_when_page_is_silent() -> None:
    paragraphs = "".join(
        f"<p>Die Bundesnetzagentur hat am Montag die Auktion der Frequenzen im Bereich von {n} Megahertz "
        "gestartet, und die drei großen Netzbetreiber haben bereits Gebote abgegeben.</p>"
        for n in (700, 800, 900, 1800)
    )
    html = f"<html><head><title>Auktion</title></head><body><article>{paragraphs}</article></body></html>"
    assert extract_article(html, url="https://example.de/a").language == "de"


def test_fragment_text_keeps_paragraphs_and_drops_promos_and_scripts() -> None:
    html = (
        "<p>First paragraph of the feed's own content.</p><script>alert(1)</script>"
        "<p>Second<br>third line.</p><ul><li>one</li><li>two</li></ul>"
        "<p>Subscribe to our newsletter!</p>"
    )
    assert text_from_html_fragment(html) == (
        "First paragraph of the feed's own content.\n\nSecond\n\nthird line.\n\n- one\n\n- two"
    )


def test_fragment_text_plain_and_empty() -> None:
    assert text_from_html_fragment("") == ""
    assert text_from_html_fragment("One &amp; two.\n\nThree.") == "One & two.\n\nThree."
    assert text_from_html_fragment("<p>\x00\x07</p>") == ""


# -- the candidate chain, metadata, markdown -------------------------------------------------

def _story_paragraphs(topic: str, n: int = 6) -> list[str]:
    return [f"The {topic} report, part {i}, found that operators in region {i} spent {100 + i} million on "
            f"{topic} upgrades this year, while the regulator reviewed plan {i} and customers waited."
            for i in range(n)]


def test_precision_body_stands_when_it_agrees_with_the_feed() -> None:
    html = (PAGES / "telecoms_article.html").read_text(encoding="utf-8")
    feed_html = "".join(f"<p>{p}</p>" for p in TELECOMS_BODY)
    article = extract_article(html, url="https://www.telecoms.com/a", feed_html=feed_html)
    assert article.extraction == "precision"
    assert article.text == "\n\n".join(TELECOMS_BODY)


def test_feed_content_wins_when_the_page_gives_another_text() -> None:
    # the page's main block is a short teaser; the feed carries the full story
    teaser = "<p>" + " ".join(_story_paragraphs("fibre", 1)) + "</p><p>Full story for subscribers only.</p>"
    html = f"<html><head><title>Fibre</title></head><body><article>{teaser}</article></body></html>"
    full = _story_paragraphs("fibre") + _story_paragraphs("roaming")
    feed_html = "".join(f"<p>{p}</p>" for p in full)
    article = extract_article(html, url="https://example.com/fibre", feed_html=feed_html)
    assert article.extraction == "feed"
    assert article.text == "\n\n".join(full)


def test_link_heavy_feed_content_does_not_win() -> None:
    teaser = "<p>" + " ".join(_story_paragraphs("cable", 1)) + "</p>"
    html = f"<html><head><title>Cable</title></head><body><article>{teaser}</article></body></html>"
    links = "".join(f'<p><a href="/x{i}">{p}</a></p>' for i, p in enumerate(_story_paragraphs("tower", 8)))
    article = extract_article(html, url="https://example.com/cable", feed_html=links)
    assert article.extraction != "feed"


def test_metadata_and_markdown_from_the_page() -> None:
    body = "".join(f"<p>{p}</p>" for p in _story_paragraphs("satellite", 3))
    html = f"""<html lang="en"><head><title>Satellite spend rises - Orbit News</title>
<meta property="og:title" content="Satellite spend rises">
<meta property="og:site_name" content="Orbit News">
<meta property="og:image" content="https://orbit.example/img/sat.jpg">
<meta name="description" content="Operators spend more on satellite.">
<meta name="author" content="Ada Lovelace; Charles Babbage">
<meta property="article:published_time" content="2026-11-20T08:00:00+01:00">
<meta property="article:modified_time" content="2026-11-21T10:30:00Z">
<meta property="article:section" content="Space">
<meta property="article:tag" content="Satellites">
</head><body><article><h1>Satellite spend rises</h1>{body}<h2>What comes next</h2>
<ul><li>More launches in 2027.</li><li>Cheaper ground stations.</li></ul>{body.replace("satellite", "launch")}
</article></body></html>"""
    article = extract_article(html, url="https://orbit.example/sat")
    assert article.title == "Satellite spend rises"
    assert article.authors == ["Ada Lovelace", "Charles Babbage"]
    assert article.published == "2026-11-20T07:00:00Z"
    assert article.updated == "2026-11-21T10:30:00Z"
    assert article.sitename == "Orbit News"
    assert article.image == "https://orbit.example/img/sat.jpg"
    assert article.description == "Operators spend more on satellite."
    assert article.categories == ["Space"]
    assert article.tags == ["Satellites"]
    assert article.language == "en"
    assert article.word_count == len(re.findall(r"\w+", article.text)) > 150
    assert "\n## What comes next\n" in article.markdown or "\n### What comes next\n" in article.markdown
    assert "- More launches in 2027.\n- Cheaper ground stations." in article.markdown
    assert article.text.startswith("The satellite report, part 0")
    assert "\n\nWhat comes next\n\n" in article.text  # text stays plain paragraphs


def test_clean_paragraphs_drops_comment_prompts_cross_links_and_print_pitches() -> None:
    body = ["The council approved the new cycle lanes on Tuesday after a long debate.", "Work starts in May."]
    paragraphs = [
        *body,
        "Also on example.com Council rejects second bridge plan",
        "Like this story? Share it with a friend!",
        "Get Cycling Monthly delivered through your letterbox every month. 12 issues for £11.99. "
        "Click here for more information.",
        "Tell us what YOU think...",
    ]
    assert clean_paragraphs(paragraphs, title=None, labels=()) == body
    # the same words inside real sentences stay
    kept = ["Also on Tuesday, the council approved a budget.", "Tell us what you think, the mayor said, at the vote."]
    assert clean_paragraphs(kept, title=None, labels=()) == kept


def test_a_summary_brings_back_the_lede_the_extraction_left_out() -> None:
    lede = ("Regulators in three countries opened an inquiry on Monday into how the largest operators priced "
            "their fibre wholesale access.")
    body = _story_paragraphs("fibre")
    html = (f"<html><head><title>Fibre inquiry</title></head><body><nav><a href='/'>Home</a></nav><article>"
            f"<h1>Fibre inquiry</h1><div class='standfirst'><span>{lede}</span></div>"
            f"<div class='body'>{''.join(f'<p>{p}</p>' for p in body)}</div></article></body></html>")
    summary = (lede + " " + body[0])[:200].rsplit(" ", 1)[0] + " [&#8230;]"
    without = extract_article(html, url="https://example.com/fibre")
    assert without.text == "\n\n".join(body)  # the precision extraction drops the standfirst
    article = extract_article(html, url="https://example.com/fibre", feed_html=summary)
    assert article.extraction == "precision"
    assert article.text == "\n\n".join([lede, *body])  # the page's own block, not the summary's cut
    other = extract_article(html, url="https://example.com/fibre", feed_html="A summary written apart from "
                            "the article, naming no sentence of it, about a different matter entirely.")
    assert other.text == "\n\n".join(body)


def test_fragment_text_drops_a_themes_continue_reading_link_and_the_feed_footer() -> None:
    excerpt = ('<p>The operator said on Monday it would cut wholesale prices [&#8230;] <a class="more-link" '
               'href="/x">Continue reading<span> Operator cuts prices</span></a></p>'
               '<p>The post <a href="/x">Operator cuts prices</a> appeared first on <a href="/">Wire</a>.</p>')
    assert text_from_html_fragment(excerpt) == "The operator said on Monday it would cut wholesale prices […]"
    prose = '<p>Analysts said the deal <a href="/y">read more like a rescue</a> than a merger.</p>'
    assert text_from_html_fragment(prose) == prose[3:-4].replace('<a href="/y">', "").replace("</a>", "")


def test_a_list_of_linked_headlines_inside_the_body_is_dropped_other_lists_stay() -> None:
    from worker.extract.cleanup import drop_link_lists

    linked = {"- 15 Amazing Images of Distant Stars", "- 11 Facts About Our Milky Way Galaxy", "- Dell XPS 13",
              "- MacBook Air"}
    paragraphs = ["The survey mapped two million galaxies.", "- 15 Amazing Images of Distant Stars",
                  "- 11 Facts About Our Milky Way Galaxy", "Its authors plan a second survey.",
                  "- Faster detectors on every telescope in the array", "- A wider field of view for each camera",
                  "The laptops we tested:", "- Dell XPS 13", "- MacBook Air",
                  "- 15 Amazing Images of Distant Stars"]  # one linked headline alone is no list
    kept = drop_link_lists(paragraphs, lambda p: p in linked)
    assert kept == [paragraphs[0], paragraphs[3], paragraphs[4], paragraphs[5], paragraphs[6], paragraphs[7],
                    paragraphs[8], paragraphs[9]]
