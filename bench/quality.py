"""Article quality as users get it: the corpus pages behind RSS feeds, through the real pipeline, scored.

Serves every page of ../shared/corpus/aeb-dev on a loopback HTTP server behind
one RSS 2.0 feed per style:

- ``summary``: each item's ``<description>`` holds the article's first ~200
  characters and `` [&#8230;]``, as WordPress builds an excerpt (no content:encoded);
- ``full``: the same description plus the full text in ``content:encoded``;
- ``none``: neither (title, link, date and author only).

For each style it runs the real ``feedstream run --burst`` (a subprocess with
``FEEDSTREAM_FEEDS`` pointing at a generated feeds file, ``FEEDSTREAM_ALLOW_PRIVATE=1``
and a fresh embedded Redis in a temporary directory, so the styles do not
deduplicate against one another), reads the stream and scores each published
``text`` with the benchmark's metric, exactly as ``bench/extraction.py`` does.
Beside it: plain ``trafilatura.extract(include_comments=False, favor_precision=True)``
on the same pages. Also printed: how many bodies came from the feed and why, and
the count of articles whose page extraction has >= 150 words but were published
from a shorter feed text (the target is 0).

Discipline: the corpus is split in two halves by a stable hash of each page's key
(first byte of its SHA-256 even: the ``tune`` half, the one the rules were
looked at and tuned on; odd: the ``held-out`` half, only ever measured). Both
halves' figures are printed; a change that helps one and hurts the other is no gain.

``--direct`` skips HTTP, Redis and RQ and calls ``extract_article`` in this
process the way the pipeline does (for tuning: seconds instead of minutes; the
pipeline's learned-boilerplate stripping is then not applied).

Usage: .venv/bin/python bench/quality.py [--direct] [--styles summary,full,none] [--list]
(``--list`` prints every page whose published text scores below plain trafilatura's.)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html as htmllib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import trafilatura  # noqa: E402
from extraction import CORPUS, load, page_pr, plain  # noqa: E402

from worker.errors import ExtractError  # noqa: E402
from worker.extract import extract_article  # noqa: E402
from worker.text import word_count  # noqa: E402

STYLES = ("summary", "full", "none")
SUMMARY_CHARS = 200
FEED_AUTHOR = "Staff Writer"
PUB_DATE = "Mon, 23 Nov 2026 09:30:00 +0000"
PUBLISHED = "2026-11-23T09:30:00Z"
LONG_PAGE_WORDS = 150
# Why the extraction chose the feed's text over the page's (worker/extract/candidates.py: _feed_wins)
FEED_WON = {
    "full": "the page's best body was no body, or shorter than the full text and covering < 60% of it",
    "summary": "the page gave fewer words than the summary, or a short block of links",
    "none": "(no feed text)",
}  # a page extraction this long must never lose to a shorter feed text


def half_of(key: str) -> str:
    """``tune`` or ``held-out``: a stable split by the first byte of the key's SHA-256."""
    return "tune" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "held-out"


@dataclass
class Page:
    key: str
    url: str
    html: str  # decoded once, as bench/extraction.py does
    truth: str
    title: str
    body: bytes  # as the publisher served it

    @property
    def half(self) -> str:
        return half_of(self.key)


def load_pages() -> list[Page]:
    pages = []
    for key, url, html, truth in load(CORPUS):
        meta = trafilatura.extract_metadata(html)
        body = gzip.decompress((CORPUS / "html" / f"{key}.html.gz").read_bytes())
        pages.append(Page(key, url, html, truth, (meta.title if meta is not None else None) or key[:12], body))
    return pages


def wp_summary(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The article's first ~``limit`` characters cut at a word, with WordPress's " [&#8230;]" (as HTML)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return htmllib.escape(flat)
    cut = flat.rfind(" ", 0, limit)
    return htmllib.escape(flat[: cut if cut > 0 else limit]) + " [&#8230;]"


def full_html(text: str) -> str:
    """The article as content:encoded carries it: one <p> per paragraph."""
    return "".join(f"<p>{htmllib.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def cdata(markup: str) -> str:
    return "<![CDATA[" + markup.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def feed_fields(page: Page, style: str) -> tuple[str | None, str | None]:
    """(description HTML, content:encoded HTML) of the page's item in ``style``."""
    if style == "none":
        return None, None
    summary = wp_summary(page.truth)
    return summary, (full_html(page.truth) if style == "full" else None)


def rss(style: str, items: list[tuple[Page, str]]) -> str:
    parts = []
    for page, link in items:
        description, content = feed_fields(page, style)
        parts.append(
            f"<item><title>{htmllib.escape(page.title)}</title><link>{htmllib.escape(link)}</link>"
            f'<guid isPermaLink="false">{page.key}</guid><pubDate>{PUB_DATE}</pubDate>'
            f"<dc:creator>{cdata(FEED_AUTHOR)}</dc:creator>"
            + (f"<description>{cdata(description)}</description>" if description is not None else "")
            + (f"<content:encoded>{cdata(content)}</content:encoded>" if content is not None else "")
            + "</item>"
        )
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>quality bench ({style})</title><link>http://127.0.0.1/</link>"
            f"<description>bench</description>{''.join(parts)}</channel></rss>")


@dataclass
class Published:
    text: str
    extraction: str
    reason: str | None = None


def run_pipeline(pages: list[Page], style: str) -> dict[str, Published]:
    """One real `feedstream run --burst` over the style's feed; published articles by page key."""
    import redis

    from tests.site import Site
    from worker.ops.embedded import EmbeddedRedis

    site = Site()
    site._server.handle_error = lambda *_: None  # type: ignore[method-assign]  # a client hanging up is no news
    site.start()
    try:
        # the page's own bytes, with no charset in the header: the pipeline decodes them as it would any page
        items = [(page, site.add(f"/{style}/{page.key}/", page.body, "text/html")) for page in pages]
        feed_url = site.add(f"/{style}/feed.xml", rss(style, items), "application/rss+xml; charset=utf-8")
        with tempfile.TemporaryDirectory() as tmp:
            feeds_toml = Path(tmp) / "feeds.toml"
            feeds_toml.write_text(f'[[feeds]]\nname = "quality-{style}"\nurl = "{feed_url}"\n')
            server = EmbeddedRedis(Path(tmp) / "redis")
            redis_url = server.start()
            try:
                env = {**os.environ, "REDIS_URL": redis_url, "FEEDSTREAM_FEEDS": str(feeds_toml),
                       "FEEDSTREAM_ALLOW_PRIVATE": "1", "FEEDSTREAM_STREAM": "articles"}
                result = subprocess.run([sys.executable, "-m", "worker", "run", "--burst"], env=env, cwd=tmp,
                                        capture_output=True, text=True, timeout=1800)
                if result.returncode != 0:
                    raise SystemExit(f"bench/quality.py: the burst failed:\n{result.stdout}\n{result.stderr}")
                client = redis.Redis.from_url(redis_url)
                out = {}
                for _id, fields in client.xrange("articles"):
                    doc = json.loads(fields[b"article"])
                    out[doc["guid"]] = Published(doc["text"], doc["extraction"], doc.get("fallback_reason"))
                return out
            finally:
                server.stop()
    finally:
        site.stop()


def run_direct(pages: list[Page], style: str) -> dict[str, Published]:
    """``extract_article`` called as the pipeline calls it (content:encoded, else the summary, as feed_html)."""
    out = {}
    for page in pages:
        description, content = feed_fields(page, style)
        try:
            article = extract_article(page.html, url=page.url, entry_title=page.title, entry_author=FEED_AUTHOR,
                                      entry_published=PUBLISHED, feed_html=content or description)
        except ExtractError as exc:
            out[page.key] = Published("", "none", str(exc))
            continue
        out[page.key] = Published(article.text, article.extraction)
    return out


def page_words(page: Page) -> int:
    """Words of the page's own extraction (ours without a feed to choose from, or plain trafilatura's)."""
    try:
        ours = extract_article(page.html, url=page.url, entry_title=page.title, entry_author=FEED_AUTHOR,
                               entry_published=PUBLISHED).text
    except ExtractError:
        ours = ""
    return max(word_count(ours), word_count(plain(page.html, page.url)))


def averages(prs: list[tuple[float, float]]) -> tuple[float, float, float]:
    if not prs:
        return 0.0, 0.0, 0.0
    p = sum(x for x, _ in prs) / len(prs)
    r = sum(y for _, y in prs) / len(prs)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--direct", action="store_true", help="call extract_article in-process (no burst)")
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated: summary,full,none")
    parser.add_argument("--list", action="store_true", help="list pages scoring below plain trafilatura")
    args = parser.parse_args()
    if not (CORPUS / "ground-truth.json").is_file():
        print(f"corpus not found at {CORPUS}; nothing to benchmark")
        return 0
    styles = [s for s in args.styles.split(",") if s]
    if unknown := set(styles) - set(STYLES):
        parser.error(f"unknown style(s): {', '.join(sorted(unknown))}")
    logging.disable(logging.CRITICAL)

    pages = load_pages()
    plain_pr = {page.key: page_pr(plain(page.html, page.url), page.truth) for page in pages}
    words = {page.key: page_words(page) for page in pages}
    halves = {h: [p for p in pages if p.half == h] for h in ("tune", "held-out")}
    mode = "extract_article in-process (--direct)" if args.direct else "feedstream run --burst"
    print(f"aeb-dev: {len(pages)} pages ({len(halves['tune'])} tune, {len(halves['held-out'])} held-out); {mode}")
    print(f"{'style':8s} {'half':9s} {'n':>3s}  {'ours P':>6s} {'R':>6s} {'F1':>6s}   {'plain P':>7s} {'R':>6s} "
          f"{'F1':>6s}   {'F1 diff':>7s}")
    failed = False
    for style in styles:
        started = time.perf_counter()
        published = run_direct(pages, style) if args.direct else run_pipeline(pages, style)
        elapsed = time.perf_counter() - started
        ours_pr = {page.key: page_pr(published[page.key].text, page.truth) if page.key in published else (0.0, 0.0)
                   for page in pages}
        for name, group in (("tune", halves["tune"]), ("held-out", halves["held-out"]), ("all", pages)):
            op, orr, of1 = averages([ours_pr[p.key] for p in group])
            pp, pr, pf1 = averages([plain_pr[p.key] for p in group])
            print(f"{style:8s} {name:9s} {len(group):3d}  {op:6.3f} {orr:6.3f} {of1:6.3f}   {pp:7.3f} {pr:6.3f} "
                  f"{pf1:6.3f}   {of1 - pf1:+7.4f}")
        missing = [p.key for p in pages if p.key not in published]
        kinds = Counter(item.extraction for item in published.values())
        reasons = Counter(
            (f"the page was not used: {item.reason}" if item.reason else FEED_WON[style])
            for item in published.values() if item.extraction == "feed"
        )
        teasers = [p.key for p in pages if p.key in published and published[p.key].extraction == "feed"
                   and words[p.key] >= LONG_PAGE_WORDS and word_count(published[p.key].text) < words[p.key]]
        print(f"  {style}: {len(published)} published in {elapsed:.1f} s; bodies: "
              + ", ".join(f"{k} {v}" for k, v in kinds.most_common())
              + (f"; missing {len(missing)}" if missing else ""))
        for reason, count in reasons.most_common():
            print(f"    from the feed, {count}: {reason}")
        print(f"  {style}: page extraction >= {LONG_PAGE_WORDS} words but published from a shorter feed text: "
              f"{len(teasers)}" + (f" ({', '.join(k[:10] for k in teasers)})" if teasers else ""))
        failed |= bool(teasers)
        if args.list:
            for page in pages:
                o, p = ours_pr[page.key], plain_pr[page.key]
                if averages([o])[2] < averages([p])[2] - 1e-9:
                    print(f"    {page.key[:10]} {page.half:8s} F1 {averages([p])[2]:.3f} -> {averages([o])[2]:.3f} "
                          f"({published[page.key].extraction if page.key in published else 'missing'}) {page.url[:60]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
