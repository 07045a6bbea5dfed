"""Articles shaped like the ones a summary used to replace: each publishes its page body, not its teaser.

Three pages written for this test, in the shapes that a line-shape guess at
link density took for lists of links (issue 13): a body of subheadings and
bullet lists, a Q&A interview of short lines, a table-heavy review. Each sits
on a site with the usual furniture (menus, a related-articles list) behind an
RSS feed whose ``<description>`` holds the first ~200 characters, as WordPress
builds it; one real burst (HTTP, Redis, RQ) runs all three.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site

SECTIONS = {
    "What changes for prepaid customers": [
        "Roaming in 41 more countries from March", "No top-up needed for the first 500 MB",
        "Daily passes priced per region", "Alerts at 80 and 100 per cent of the allowance",
    ],
    "What stays the same": [
        "Existing bundles keep their prices until renewal", "Emergency calls are free everywhere",
        "Customer service hours in every market",
    ],
    "Who is affected": [
        "About 3.2 million prepaid lines across the group", "Business accounts on legacy tariffs",
        "Travellers who bought passes before 1 March",
    ],
    "What to do next": [
        "Check the app for the new country list", "Switch off data roaming to keep the old behaviour",
        "Ask for a refund of unused passes within 30 days",
    ],
}
LISTICLE_INTRO = ("The operator will change how prepaid roaming works across its European networks from March, "
                  "the company said on Tuesday.")

INTERVIEW = [
    ("Telecoms.com", "Why move the whole core network to the cloud now?"),
    ("Okafor", "Because the old contracts end next year"),
    ("Telecoms.com", "Was there a cheaper option?"),
    ("Okafor", "Not one that scales with 5G standalone"),
    ("Telecoms.com", "How long will the migration take?"),
    ("Okafor", "Eighteen months, region by region"),
    ("Telecoms.com", "What worries you most?"),
    ("Okafor", "Latency on the voice side — we test it every night"),
    ("Telecoms.com", "And the staff?"),
    ("Okafor", "Retrained, all of them — nobody loses a job over this"),
    ("Telecoms.com", "Will customers notice?"),
    ("Okafor", "Only that outages get shorter"),
    ("Telecoms.com", "What comes after the core?"),
    ("Okafor", "The radio network, starting with the rural sites"),
]
INTERVIEW_INTRO = ("Sarah Okafor runs network engineering at a mid-sized European operator that is moving its "
                   "entire core network to a public cloud. We asked her why, and what could go wrong.")

SPECS = [
    ("Display", "6.1in OLED, 120Hz"), ("Processor", "Octa-core 3.2GHz"), ("Memory", "8GB"),
    ("Storage", "128GB / 256GB"), ("Main camera", "50MP wide, 12MP ultra-wide"), ("Selfie camera", "12MP"),
    ("Battery", "4,400mAh"), ("Charging", "45W wired, 15W wireless"), ("Weight", "187g"),
    ("Dimensions", "147 x 71 x 8.2mm"), ("Water resistance", "IP68"), ("Price", "£799"),
]
REVIEW_VERDICT = ["Bright, fast screen", "Two days of battery", "Clean software", "No charger in the box",
                  "Camera struggles at night", "Pricey storage upgrade"]
REVIEW_INTRO = ("The latest mid-range flagship gets most things right: a bright screen, a battery that lasts "
                "two days and software without clutter. Here is how it measured up in a month of use.")


def page(title: str, body_html: str) -> str:
    """A news site's article page with the furniture real ones carry: menus, breadcrumbs, related links, footer."""
    menu = "".join(f'<li><a href="/{s.lower()}/">{s}</a></li>' for s in
                   ("News", "Networks", "Devices", "Cloud", "Security", "Events", "Newsletter"))
    related = "".join(f'<li><a href="/news/related-{i}/">Operator {i} reports third-quarter results</a></li>'
                      for i in range(6))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - Wire Weekly</title>
<meta property="og:title" content="{escape(title)}"><meta property="og:site_name" content="Wire Weekly"></head>
<body><header><a href="/">Wire Weekly</a><nav><ul>{menu}</ul></nav></header>
<div class="breadcrumbs"><a href="/">Home</a> / <a href="/news/">News</a></div>
<main><article><h1>{escape(title)}</h1><div class="byline">By <a href="/author/jo/">Jo Lane</a></div>
<div class="entry-content">{body_html}</div></article>
<section class="related"><h3>Related articles</h3><ul>{related}</ul></section></main>
<footer><ul><li><a href="/privacy/">Privacy</a></li><li><a href="/terms/">Terms</a></li></ul>
<p>&copy; 2026 Wire Weekly</p></footer></body></html>"""


def listicle() -> tuple[str, list[str]]:
    html = f"<p>{escape(LISTICLE_INTRO)}</p>" + "".join(
        f"<h2>{escape(head)}</h2><ul>{''.join(f'<li>{escape(item)}</li>' for item in items)}</ul>"
        for head, items in SECTIONS.items())
    lines = [LISTICLE_INTRO] + [line for head, items in SECTIONS.items() for line in (head, *items)]
    return html, lines


def interview() -> tuple[str, list[str]]:
    html = f"<p>{escape(INTERVIEW_INTRO)}</p>" + "".join(
        f"<p><strong>{escape(who)}</strong></p><p>{escape(said)}</p>" for who, said in INTERVIEW)
    return html, [INTERVIEW_INTRO] + [said for _, said in INTERVIEW]


def review() -> tuple[str, list[str]]:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in SPECS)
    verdict = "".join(f"<li>{escape(v)}</li>" for v in REVIEW_VERDICT)
    html = (f"<p>{escape(REVIEW_INTRO)}</p><h2>Specifications</h2><table>{rows}</table>"
            f"<h2>Verdict</h2><ul>{verdict}</ul>")
    return html, [REVIEW_INTRO] + [v for _, v in SPECS] + REVIEW_VERDICT


def wordpress_summary(lines: list[str]) -> str:
    """What WordPress puts in <description>: the article's opening words, cut near 200 characters."""
    text = " ".join(lines)
    return escape(text[: text.rfind(" ", 0, 200)]) + " [&#8230;]"


def rss(items: list[tuple[str, str, str]]) -> str:
    body = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link><guid>{escape(link)}</guid>"
        f"<pubDate>Mon, 23 Nov 2026 09:30:00 +0000</pubDate><dc:creator>Jo Lane</dc:creator>"
        f"<description><![CDATA[{summary}]]></description></item>"
        for title, link, summary in items)
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>Wire Weekly</title><link>https://example.test/</link>{body}</channel></rss>")


def test_lists_interviews_and_tables_publish_their_page_body_not_the_summary(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    stories = {
        "Prepaid roaming: what changes in March": listicle(),
        "Interview: why one operator is moving its core to the cloud": interview(),
        "Review: a mid-range flagship that lasts two days": review(),
    }
    items, expected = [], {}
    for n, (title, (body_html, lines)) in enumerate(stories.items()):
        link = site.add(f"/news/story-{n}/", page(title, body_html))
        items.append((title, link, wordpress_summary(lines)))
        expected[link] = lines
    feed = site.add("/feed/", rss(items), "application/rss+xml")
    run_burst(make_context(redis_url, write_feeds(feeds_file, {"wire": feed})))

    published = {doc["url"]: doc for doc in articles(redis_client)}
    assert set(published) == set(expected)
    for link, lines in expected.items():
        doc = published[link]
        assert doc["extraction"] in ("precision", "recall"), (link, doc["extraction"], doc["text"])
        for line in lines:  # the whole body, every short line of it
            assert line in doc["text"], (link, line)
        assert doc["word_count"] > 2 * len(wordpress_summary(lines).split())
        for furniture in ("Related articles", "Operator 3 reports", "Privacy", "Newsletter"):
            assert furniture not in doc["text"], (link, furniture)
