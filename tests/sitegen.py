"""Feeds and article pages written for the tests, in the shapes publishers use."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape


@dataclass
class Story:
    slug: str
    title: str
    paragraphs: list[str]
    category: str = "Networks"
    author: str = "Jamie Davies"
    published: str = "Mon, 23 Nov 2026 09:30:00 +0000"
    iso: str = "2026-11-23T09:30:00Z"
    tags: list[str] = field(default_factory=list)

    @property
    def body_text(self) -> str:
        return "\n\n".join(self.paragraphs)


def story(n: int, words: int = 60) -> Story:
    """A distinct story whose paragraphs share no sentence with other stories."""
    topics = ["spectrum", "fibre", "roaming", "satellite", "edge", "tower", "billing", "handset",
              "core", "backhaul", "cable", "wholesale"]
    topic = topics[n % len(topics)]
    paragraphs = []
    for p in range(4):
        sentence = (f"Operator number {n} reported that its {topic} programme reached milestone {p + 1} "
                    f"this quarter, according to figures shared with analysts on call {n * 7 + p}.")
        filler = (f" The {topic} rollout in region {p + n} covered {1000 + n * 13 + p} sites while "
                  f"regulators reviewed plan {n}-{p} and investors weighed the cost of phase {p + 2}.")
        paragraphs.append(sentence + filler)
    return Story(slug=f"story-{n}-{topic}", title=f"Operator {n} hits {topic} milestone",
                 paragraphs=paragraphs[: max(2, words // 30)] if words < 60 else paragraphs)


def telecoms_page(s: Story, site_name: str = "Telecoms.com") -> str:
    """An article page built like a Telecoms.com (WordPress) article, with all its furniture."""
    body = "\n".join(f"<p>{escape(p)}</p>" for p in s.paragraphs)
    related = "\n".join(
        f'<li><a href="/news/related-{i}/">Related headline number {i} about networks</a></li>' for i in range(4)
    )
    return f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8">
<title>{escape(s.title)} - {site_name}</title>
<meta property="og:title" content="{escape(s.title)}">
<meta property="og:site_name" content="{site_name}">
<meta property="article:section" content="{escape(s.category)}">
<meta name="author" content="{escape(s.author)}">
<meta property="article:published_time" content="{s.iso}">
</head><body class="post-template-default single single-post">
<header class="site-header"><div class="logo"><a href="/">{site_name}</a></div>
<nav class="main-navigation"><ul><li><a href="/news/">News</a></li><li><a href="/networks/">Networks</a></li>
<li><a href="/5g-6g/">5G &amp; 6G</a></li><li><a href="/security/">Security</a></li>
<li><a href="/newsletter/">Newsletter</a></li></ul></nav>
<form class="search-form"><input type="search" placeholder="Search"><button>Search</button></form></header>
<div class="breadcrumbs"><a href="/">Home</a> &raquo; <a href="/networks/">{escape(s.category)}</a></div>
<main id="main" class="site-main"><article class="post type-post status-publish">
<div class="entry-header"><span class="cat-label"><a href="/networks/">{escape(s.category)}</a></span>
<h1 class="entry-title">{escape(s.title)}</h1>
<div class="byline">By <a rel="author" href="/author/jamie/">{escape(s.author)}</a>
<time datetime="{s.iso}">23 November 2026</time></div></div>
<div class="share-buttons"><a href="#">Share on Twitter</a> <a href="#">Share on LinkedIn</a></div>
<div class="entry-content">
{body}
<div class="newsletter-promo"><p>Get the latest news straight to your inbox.
<a href="/newsletter/">Register for the {site_name} newsletter here.</a></p></div>
</div>
<section class="related-posts"><h3>Articles You May Like</h3><ul>{related}</ul></section>
<div id="comments" class="comments-area"><h3 id="reply-title">Leave a comment</h3>
<form id="commentform"><p><label>Comment</label><textarea name="comment"></textarea></p>
<p><label>Name</label><input name="author"></p><p><input type="submit" value="Post Comment"></p></form></div>
</article></main>
<aside class="sidebar"><h3>Most popular</h3><ul><li><a href="/a/">Popular story one</a></li>
<li><a href="/b/">Popular story two</a></li></ul></aside>
<footer class="site-footer"><p>&copy; 2026 {site_name}. All rights reserved.</p>
<ul><li><a href="/privacy/">Privacy</a></li><li><a href="/terms/">Terms</a></li></ul></footer>
</body></html>"""


def rss2(title: str, items: list[tuple[Story, str]], with_content: bool = True) -> str:
    """RSS 2.0; ``items`` are (story, link). content:encoded carries the body when asked."""
    parts = []
    for s, link in items:
        content = ("<content:encoded><![CDATA[" + "".join(f"<p>{escape(p)}</p>" for p in s.paragraphs)
                   + "]]></content:encoded>") if with_content else ""
        parts.append(f"""<item><title>{escape(s.title)}</title><link>{escape(link)}</link>
<guid isPermaLink="false">{escape(link)}</guid><pubDate>{s.published}</pubDate>
<dc:creator><![CDATA[{s.author}]]></dc:creator><category><![CDATA[{s.category}]]></category>
<description><![CDATA[{escape(s.paragraphs[0][:120])}…]]></description>{content}</item>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>{escape(title)}</title>
<link>https://example.test/</link><description>Test feed</description><language>en-GB</language>
{"".join(parts)}</channel></rss>"""


def atom(title: str, items: list[tuple[Story, str]]) -> str:
    entries = "".join(
        f"""<entry><title>{escape(s.title)}</title><link rel="alternate" href="{escape(link)}"/>
<id>urn:test:{escape(s.slug)}</id><updated>{s.iso}</updated><published>{s.iso}</published>
<author><name>{escape(s.author)}</name></author>
<summary>{escape(s.paragraphs[0][:100])}</summary></entry>"""
        for s, link in items
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{escape(title)}</title><id>urn:test:{escape(title)}</id>
<updated>2026-11-23T10:00:00Z</updated>{entries}</feed>"""


def rss1(title: str, items: list[tuple[Story, str]]) -> str:
    seq = "".join(f'<rdf:li rdf:resource="{escape(link)}"/>' for _, link in items)
    entries = "".join(
        f"""<item rdf:about="{escape(link)}"><title>{escape(s.title)}</title><link>{escape(link)}</link>
<description>{escape(s.paragraphs[0][:100])}</description><dc:date>{s.iso}</dc:date>
<dc:creator>{escape(s.author)}</dc:creator></item>"""
        for s, link in items
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://example.test/"><title>{escape(title)}</title><link>https://example.test/</link>
<description>Test</description><items><rdf:Seq>{seq}</rdf:Seq></items></channel>{entries}</rdf:RDF>"""


_WORD_TEXT = (
    "council budget river harbour minister election school hospital railway bridge museum festival "
    "drought farmers vaccine court ruling strike union airport runway tariff exports factory mayor "
    "senate reform housing rents storm flood coastline fishery energy grid solar wind turbine pension "
    "inflation lender bank merger startup chip satellite launch orbit telescope glacier wildfire forest "
    "police inquiry witness verdict appeal charity donor stadium league transfer coach injury referee "
    "ministry embassy border treaty summit ceasefire refugees shelter aid convoy harvest wheat prices "
    "tourism hotel airline fares cruise port cargo shipping canal toll motorway cyclists pedestrians"
)
_WORDS = tuple(_WORD_TEXT.split())
_LINKS = ("said on", "told reporters that", "warned that", "expects", "announced", "confirmed after",
          "is reviewing", "rejected claims that", "will debate", "plans to expand")


def wire_story(n: int, paragraphs: int = 6) -> Story:
    """A news story whose wording is drawn at random (seeded by ``n``), so different stories share no phrasing."""
    import random

    rng = random.Random(n * 7919 + 13)
    paras = []
    for p in range(paragraphs):
        sentences = []
        for _ in range(3):
            subject = " ".join(rng.sample(_WORDS, 3))
            rest = " ".join(rng.sample(_WORDS, 6))
            sentences.append(f"The {subject} {rng.choice(_LINKS)} {rest} in week {rng.randint(1, 52)}.")
        paras.append(" ".join(sentences) + f" (Part {p + 1}.)")
    return Story(slug=f"wire-{n}", title=f"Story {n}: {' '.join(rng.sample(_WORDS, 4))}",
                 paragraphs=paras, author="Wire Staff")


def partner_page(s: Story, *, dateline: str = "", canonical: str | None = None, cut_last: bool = True,
                 headline: str | None = None) -> str:
    """Another publisher's page carrying a syndicated copy: own template, dateline, last paragraph cut."""
    paras = s.paragraphs[:-1] if cut_last and len(s.paragraphs) > 1 else list(s.paragraphs)
    if dateline:
        paras[0] = f"{dateline} — {paras[0]}"
    body = "\n".join(f"<p>{escape(p)}</p>" for p in paras)
    link = f'<link rel="canonical" href="{escape(canonical)}">' if canonical else ""
    title = headline or s.title
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} | Partner Daily</title>
{link}<meta property="og:title" content="{escape(title)}"><meta property="og:site_name" content="Partner Daily">
</head><body><div id="top"><a href="/subscribe">Subscribe</a></div>
<header><h2><a href="/">Partner Daily</a></h2><nav><a href="/world">World</a> <a href="/money">Money</a></nav></header>
<div class="wrap"><div class="content"><h1 class="headline">{escape(title)}</h1>
<p class="meta">From our wire partners</p><div class="story-body">{body}</div>
<div class="more"><h4>More from Partner Daily</h4><ul><li><a href="/s/1">Weekend weather outlook</a></li></ul></div>
</div><aside><h4>Trending</h4><ol><li><a href="/s/2">Five things to know today</a></li></ol></aside></div>
<footer><p>&copy; 2026 Partner Daily.</p></footer></body></html>"""
