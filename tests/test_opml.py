"""OPML in and out: exports as Miniflux and FreshRSS write them, our own round trip, hostile files."""

from __future__ import annotations

import time

import pytest

from worker.models import Feed
from worker.sources.opml import MAX_OUTLINES, OpmlError, outline_fields, parse_opml, render_opml
from worker.sources.spec import source_from_dict

# Written the way Miniflux's opml serializer writes an export: one folder per category, title and text.
MINIFLUX = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
    <head>
        <title>Miniflux</title>
        <dateCreated>Mon, 30 Nov 2026 04:00:00 UTC</dateCreated>
    </head>
    <body>
        <outline text="All">
            <outline title="Ars Technica" text="Ars Technica" xmlUrl="https://feeds.example.com/ars/index"
                     htmlUrl="https://ars.example.com" description=""></outline>
        </outline>
        <outline text="Telecoms">
            <outline title="Light Reading" text="Light Reading" xmlUrl="https://www.lightreading.example/rss.xml"
                     htmlUrl="https://www.lightreading.example/" description="Telecom news"></outline>
            <outline title="Fierce &amp; Co" text="Fierce &amp; Co" xmlUrl="https://fierce.example/rss/xml?a=1&amp;b=2"
                     htmlUrl="https://fierce.example/"></outline>
        </outline>
    </body>
</opml>
"""

# Written the way FreshRSS exports: its own namespace, type="rss", tabs, categories as folders.
FRESHRSS = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0" xmlns:frss="https://freshrss.org/opml">
\t<head>
\t\t<title>FreshRSS</title>
\t\t<dateCreated>Mon, 30 Nov 2026 04:00:00 +0000</dateCreated>
\t</head>
\t<body>
\t\t<outline text="Sans catégorie">
\t\t\t<outline text="Le Monde Télécoms" type="rss" xmlUrl="https://lemonde.example/telecoms/rss_full.xml"
\t\t\t\thtmlUrl="https://lemonde.example/telecoms/" description="Actualités" frss:priority="10"/>
\t\t</outline>
\t\t<outline text="Tech">
\t\t\t<outline text="The Register" type="rss" xmlUrl="https://www.theregister.example/headlines.atom"
\t\t\t\thtmlUrl="https://www.theregister.example/" description="" frss:cssFullContent="#body"/>
\t\t\t<outline text="A bookmark, not a feed" type="link" url="https://example.org/"/>
\t\t</outline>
\t</body>
</opml>
""".encode()


def test_a_miniflux_export_reads_with_folders_as_tags() -> None:
    document = parse_opml(MINIFLUX)
    assert document.title == "Miniflux"
    assert [(o.title, o.xml_url, o.tags) for o in document.feeds] == [
        ("Ars Technica", "https://feeds.example.com/ars/index", ["All"]),
        ("Light Reading", "https://www.lightreading.example/rss.xml", ["Telecoms"]),
        ("Fierce & Co", "https://fierce.example/rss/xml?a=1&b=2", ["Telecoms"]),
    ]
    assert document.feeds[0].html_url == "https://ars.example.com"
    assert document.feeds[0].line == 10  # libxml2 counts the line where the start tag ends
    assert document.others == []


def test_a_freshrss_export_reads_and_its_bookmark_is_not_a_feed() -> None:
    document = parse_opml(FRESHRSS)
    assert [(o.title, o.tags) for o in document.feeds] == [("Le Monde Télécoms", ["Sans catégorie"]),
                                                         ("The Register", ["Tech"])]
    assert [o.title for o in document.others] == ["A bookmark, not a feed"]


def test_nesting_and_categories_both_become_tags() -> None:
    data = b"""<opml version="2.0"><body><outline text="Tech"><outline text="Networks">
      <outline text="a" xmlUrl="https://a.example/f" category="/Wireless/5G,/telecoms"/>
    </outline></outline><outline text="empty"/></body></opml>"""
    document = parse_opml(data)
    assert document.feeds[0].tags == ["Tech", "Networks", "Wireless", "5G", "telecoms"]
    assert [o.title for o in document.others] == ["empty"]


def test_an_export_imports_back_to_the_same_feeds() -> None:
    feeds = [Feed(name="ars", url="https://ars.example/feed?x=1&y=<2>", tags=("tech", "news"), interval=1800),
             Feed(name="lr", url="https://lr.example/rss.xml", full_text=False, min_interval=600, max_interval=7200),
             Feed(name="bare", url="https://bare.example/atom.xml")]
    data = render_opml(feeds, titles={"ars": "Ars \"Technica\" & co"})
    document = parse_opml(data)
    back = [source_from_dict(outline_fields(outline)) for outline in document.feeds]
    assert sorted(back, key=lambda f: f.name) == sorted(feeds, key=lambda f: f.name)
    assert document.feeds[[o.own["name"] for o in document.feeds].index("ars")].title == "Ars \"Technica\" & co"


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + ']><opml version="2.0"><body><outline text="&i;" xmlUrl="https://x.example/&i;"/></body></opml>')


@pytest.mark.parametrize(("data", "message"), [
    (LAUGHS.encode(), "entity declarations are refused"),
    (LAUGHS.replace('<?xml version="1.0"?>', "").encode("utf-16"), "entity declarations are refused"),
    (b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<opml version="2.0"><body><outline text="&x;" xmlUrl="https://x.example/"/></body></opml>',
     "entity declarations are refused"),
    (b'<opml version="2.0"><body><outline text="a" xmlUrl="https://x.example/"></body></opml>', "not well-formed"),
    (b'<rss version="2.0"><channel/></rss>', "root element is <rss>"),
    (b"", "not well-formed"),
    (b'<opml version="2.0"><body>' + b"x" * (5 * 1024 * 1024) + b"</body></opml>", "byte limit"),
])
def test_hostile_and_broken_files_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message):
        parse_opml(data)


def test_too_many_outlines_stop_the_parse_early() -> None:
    many = b'<opml version="2.0"><body>' + b"<outline/>" * 100_000 + b"</body></opml>"
    started = time.perf_counter()
    with pytest.raises(OpmlError, match=f"more than {MAX_OUTLINES:,} outlines"):
        parse_opml(many)
    elapsed = time.perf_counter() - started
    print(f"\n100,000 outlines refused after {elapsed * 1000:.0f} ms")
