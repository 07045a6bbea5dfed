"""Feed bytes -> ParsedFeed: formats, hostile input, and what counts as "not a feed"."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from worker.errors import ParseError
from worker.extract import text_from_html_fragment
from worker.feeds import parse_feed
from worker.models import ParsedFeed

FEEDS = Path(__file__).parent / "feeds"
URL = "https://site.example.test/blog/feed.xml"


def read(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def parse(name: str, **kwargs: Any) -> ParsedFeed:
    return parse_feed(read(name), url=kwargs.pop("url", URL), **kwargs)


def rss(items: str, head: str = "", prolog: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>{prolog}\n<rss version="2.0"><channel><title>T</title>'
            f"<link>https://t.example.test/</link>{head}{items}</channel></rss>").encode()


# -- formats ------------------------------------------------------------------------------


def test_rss20_content_encoded_categories_creator_and_relative_links() -> None:
    feed = parse("rss20.xml", headers={"Content-Type": "application/rss+xml; charset=utf-8"})
    assert feed.title == "Example Blog"
    assert feed.link == "https://site.example.test/"
    assert feed.language == "en"
    assert feed.ttl_minutes == 45
    assert feed.warning is None
    assert [e.guid for e in feed.entries] == [
        "post-1", "https://blog.example.test/posts/second", "https://other.example.test/third?a=1&b=2",
    ]
    first, second, third = feed.entries
    assert first.url == "https://site.example.test/posts/first"  # relative <link> made absolute
    assert first.title == "First post: AT&T & friends"  # plain text, whitespace collapsed
    assert first.author == "Jane Doe"
    assert first.published == "2025-06-10T12:30:00Z"  # +0200 converted to UTC
    assert first.tags == ["Tech", "Open Source"]
    assert first.content_html is not None and "The full text" in first.content_html
    # raw as the feed gave it (sanitising is redone by the text conversion, cheaper)...
    assert 'href="/about"' in first.content_html
    # ...and what reaches the article is text, without the script
    text = text_from_html_fragment(first.content_html)
    assert "The full text" in text and "<" not in text and "alert" not in text
    assert first.summary_html == "<p>A short summary.</p>"
    assert first.feed == ""
    # isPermaLink guid stands in for the link; "email (name)" yields the name.
    assert second.url == "https://blog.example.test/posts/second"
    assert second.author == "Bob Smith"
    assert second.content_html is None and second.summary_html == "Only a summary here."
    assert third.published is None  # unparseable pubDate
    assert third.title == "Third post" and third.author is None and third.tags == []


def test_atom10_content_summary_language_and_inherited_author() -> None:
    feed = parse("atom10.xml", headers={"content-type": "application/atom+xml"})
    assert feed.title == "Beispiel Blog"  # type="html" title: markup stripped
    assert feed.link == "https://atom.example.test/"
    assert feed.language == "de"  # from xml:lang="de-DE"
    assert feed.ttl_minutes is None
    one, two = feed.entries
    assert one.guid == "tag:atom.example.test,2025:1"
    assert one.url == "https://site.example.test/blog/entries/1"
    assert one.published == "2025-06-09T06:15:00Z"  # <published> wins over <updated>
    assert one.updated == "2025-06-10T09:00:00Z"  # kept apart: a later one asks for a re-check (issue 17)
    assert one.author == "Erika Mustermann"
    assert one.content_html == "<p>Der ganze Text des Eintrags.</p>"
    assert one.summary_html == "<p>Kurzfassung des Eintrags.</p>"
    assert one.tags == ["politik", "welt"]
    assert two.title == "A <tag> in a text title"  # type="text": the text is literal
    assert two.published == "2025-06-08T10:00:00Z"  # falls back to <updated>
    assert two.updated == "2025-06-08T10:00:00Z"
    assert two.author == "Feed Author"  # atom:entry inherits the feed's author
    assert two.content_html == "<p>Plain text content.</p>\n<p>Second paragraph &amp; more.</p>"
    assert two.summary_html is None  # feedparser's copy of the content is not a summary


def test_rss10_rdf() -> None:
    feed = parse("rss10.rdf")
    assert feed.title == "RDF Site" and feed.language == "fr"
    assert [e.url for e in feed.entries] == ["https://rdf.example.test/a", "https://rdf.example.test/b"]
    a = feed.entries[0]
    assert a.author == "Claire" and a.published == "2025-05-01T10:00:00Z" and a.tags == ["science"]
    assert a.summary_html == "About A."


def test_rss091_with_netscape_doctype() -> None:
    feed = parse("rss091.xml")
    assert feed.title == "Old School" and feed.language == "en"
    assert [(e.title, e.url) for e in feed.entries] == [
        ("Hello from 1999", "http://old.example.test/1999/hello.html"),
    ]


def test_json_feed_11() -> None:
    feed = parse("feed11.json", headers={"Content-Type": "application/feed+json"})
    assert feed.title == "JSON Example"
    assert feed.link == "https://json.example.test/"
    assert feed.language == "pt"
    assert feed.warning == "1 entry without an http(s) link skipped"  # the javascript: item
    one, two = feed.entries
    assert one.guid == "1" and one.url == "https://json.example.test/posts/1"
    assert one.title == "Hello JSON"
    assert one.author == "Ana"  # authors[0]
    assert one.published == "2025-06-10T12:30:00Z"
    assert one.updated is None  # no date_modified
    assert one.tags == ["hello", "json"]
    assert one.content_html == '<p>Hello <a href="/about">world</a></p><script>alert(1)</script>'
    assert text_from_html_fragment(one.content_html) == "Hello world"
    assert one.summary_html == "<p>A greeting &amp; more</p>"  # JSON Feed summaries are plain text
    assert two.url == "https://site.example.test/posts/2"  # external_url, made absolute
    assert two.author == "Feed Author"  # top-level authors apply to items without their own
    assert two.content_html == (
        "<p>Line one &lt;b&gt;not bold&lt;/b&gt;</p>\n<p>Second paragraph<br>with a break.</p>"
    )


def test_json_feed_10() -> None:
    feed = parse("feed10.json")  # no content-type: recognised by its body
    assert feed.title == "JSON One"
    a, b = feed.entries
    assert a.author == "Item Author" and a.title == "" and a.content_html == "<p>Just text.</p>"
    assert a.published == "2025-01-02T03:04:05Z"
    assert b.author == "Old Author" and b.guid == "b" and b.published is None


def test_json_feed_behind_bom_and_whitespace_with_json_content_type() -> None:
    body = b"\xef\xbb\xbf \n" + read("feed10.json")
    assert len(parse_feed(body, url=URL, headers={"content-type": "application/json"}).entries) == 2


# -- links --------------------------------------------------------------------------------


def test_non_http_links_are_dropped_and_counted() -> None:
    feed = parse("unsafe_links.xml")
    assert [e.url for e in feed.entries] == ["https://links.example.test/good"]
    assert feed.warning == "3 entries without an http(s) link skipped"


def test_links_resolved_against_a_file_xml_base_are_dropped() -> None:
    body = (b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="file:///etc/"><title>x</title>'
            b'<entry><id>1</id><title>p</title><link href="passwd"/></entry></feed>')
    feed = parse_feed(body, url=URL)
    assert feed.entries == [] and feed.warning == "1 entry without an http(s) link skipped"


def test_entries_without_any_link_are_skipped_and_guid_falls_back_to_link() -> None:
    body = rss("<item><title>no link</title></item>"
               "<item><title>link only</title><link>https://t.example.test/x</link></item>")
    feed = parse_feed(body, url=URL)
    assert [(e.guid, e.url) for e in feed.entries] == [("https://t.example.test/x", "https://t.example.test/x")]
    assert feed.warning == "1 entry without an http(s) link skipped"


def test_repeated_guids_keep_the_first() -> None:
    body = rss("<item><guid>same</guid><link>https://t.example.test/1</link></item>"
               "<item><guid>same</guid><link>https://t.example.test/2</link></item>")
    feed = parse_feed(body, url=URL)
    assert [e.url for e in feed.entries] == ["https://t.example.test/1"]
    assert feed.warning == "1 entry repeating an earlier id skipped"


# -- not a feed ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   \n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf  \r\n"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^parse: empty body$"):
        parse_feed(body, url=URL)


@pytest.mark.parametrize("headers", [None, {"Content-Type": "text/html; charset=utf-8"}])
def test_html_page(headers: dict[str, str] | None) -> None:
    with pytest.raises(ParseError, match=r"^parse: got an HTML page, not a feed$"):
        parse("page.html", headers=headers)


def test_a_feed_served_as_text_html_is_still_a_feed() -> None:
    feed = parse("rss20.xml", headers={"content-type": "text/html"})
    assert len(feed.entries) == 3


def test_malformed_xml_without_entries() -> None:
    with pytest.raises(ParseError, match=r"^parse: not a feed \(malformed XML: .+\)$"):
        parse("malformed.xml")


def test_xml_that_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match=r"root element <config>"):
        parse("not_a_feed.xml")


@pytest.mark.parametrize("body", [b"/etc/passwd", b"https://example.com/feed.xml", b"plain text, no markup"])
def test_strings_that_look_like_paths_or_urls_are_only_bytes(body: bytes) -> None:
    # feedparser.parse(str) would open the path or fetch the URL; we never hand it one.
    with pytest.raises(ParseError, match=r"^parse: not a feed"):
        parse_feed(body, url=URL)


def test_slightly_broken_feed_keeps_its_entries_and_the_warning() -> None:
    feed = parse("broken.xml")
    assert [e.title for e in feed.entries] == ["Fish & Chips", "Second"]
    assert feed.warning is not None and "not well-formed" in feed.warning


def test_valid_feed_with_zero_items_is_not_an_error() -> None:
    feed = parse("empty_channel.xml")
    assert feed == ParsedFeed(title="Nothing yet", link="https://empty.example.test/", ttl_minutes=120)


def test_empty_atom_feed_is_not_an_error() -> None:
    body = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>Quiet</title></feed>'
    assert parse_feed(body, url=URL) == ParsedFeed(title="Quiet")


# -- entity expansion ---------------------------------------------------------------------


def _assert_fast_and_unexpanded(body: bytes) -> None:
    started = time.perf_counter()
    try:
        feed = parse_feed(body, url=URL)
    except ParseError as exc:
        assert "entity" in str(exc)
    else:
        for entry in feed.entries:
            for value in (entry.title, entry.content_html or "", entry.summary_html or ""):
                assert len(value) < 10_000 and "lollollol" not in value
    assert time.perf_counter() - started < 2.0


def test_billion_laughs_is_refused_quickly() -> None:
    body = read("billion_laughs.xml")
    _assert_fast_and_unexpanded(body)
    with pytest.raises(ParseError, match="entity"):
        parse_feed(body, url=URL)


def test_billion_laughs_on_one_line_and_in_utf16_is_refused() -> None:
    one_line = read("billion_laughs.xml").replace(b"\n", b" ")
    _assert_fast_and_unexpanded(one_line)
    utf16 = "\ufeff".encode("utf-16-le") + read("billion_laughs.xml").decode().encode("utf-16-le")
    _assert_fast_and_unexpanded(utf16)
    for body in (one_line, utf16):
        with pytest.raises(ParseError, match="entity"):
            parse_feed(body, url=URL)


def test_quadratic_blowup_is_refused_quickly() -> None:
    # One long "safe" entity referenced many times: feedparser's loose parser would
    # expand a 200 KB body into a 400 MB string.
    body = rss("<item><title>q</title><link>https://t.example.test/q</link><description>"
               + "&a;" * 2000 + "</description></item>",
               prolog='\n<!DOCTYPE rss [\n<!ENTITY a "' + "A" * 200_000 + '">\n]>')
    _assert_fast_and_unexpanded(body)
    with pytest.raises(ParseError, match="entity"):
        parse_feed(body, url=URL)


def test_external_entity_is_refused_and_never_read() -> None:
    with pytest.raises(ParseError, match="entity") as caught:
        parse("xxe.xml")
    assert "root:" not in str(caught.value)


def test_entity_hidden_in_a_prolog_comment_is_refused() -> None:
    # feedparser lifts <!ENTITY at the start of any prolog line, comments included.
    prolog = '\n<!DOCTYPE rss [ ]>\n<!--\n<!ENTITY a "' + "A" * 1000 + '">\n-->'
    with pytest.raises(ParseError, match="entity"):
        parse_feed(rss("<item><link>https://t.example.test/</link><title>&a;</title></item>", prolog=prolog),
                   url=URL)


def test_short_literal_entities_are_allowed_and_quoted_declarations_in_cdata_ignored() -> None:
    feed = parse("safe_entities.xml")
    assert feed.title == "Example News"
    (entry,) = feed.entries
    assert entry.title == "Hello world"  # &nbsp; declared as &#160;, then collapsed
    assert entry.content_html is not None and "How an attack looks" in entry.content_html


# -- charsets -----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [None, {"content-type": "application/rss+xml; charset=utf-8"},
                                     {"content-type": "text/xml"}])
def test_latin1_bytes_declared_utf8(headers: dict[str, str] | None) -> None:
    feed = parse("latin1_declared_utf8.xml", headers=headers)
    assert feed.title == "Café Crème"
    assert feed.entries[0].title == "Crème brûlée à la carte"
    assert feed.warning is not None and "declared as utf-8" in feed.warning


@pytest.mark.parametrize("headers", [None, {"content-type": "text/xml; charset=ISO-8859-1"}])
def test_utf8_bytes_declared_latin1(headers: dict[str, str] | None) -> None:
    feed = parse("utf8_declared_latin1.xml", headers=headers)
    assert feed.entries[0].title == "Crème brûlée à la carte"  # not "CrÃ¨me"
    assert feed.warning is not None and "read as UTF-8" in feed.warning


def test_genuine_latin1_is_read_as_declared() -> None:
    body = read("utf8_declared_latin1.xml").decode("utf-8").encode("latin-1")
    feed = parse_feed(body, url=URL)
    assert feed.entries[0].title == "Crème brûlée à la carte" and feed.warning is None


@pytest.mark.parametrize("headers", [None, {"content-type": "text/xml"}, {"content-type": "text/plain"},
                                     {"content-type": "application/octet-stream"}])
def test_utf8_without_charset_is_read_quietly(headers: dict[str, str] | None) -> None:
    feed = parse("atom10.xml", headers=headers)
    assert feed.entries[0].title == "Eintrag eins" and feed.warning is None


@pytest.mark.parametrize("declaration", ['encoding="utf-16"', ""])
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom(codec: str, declaration: str) -> None:
    text = read("rss20.xml").decode().replace('encoding="utf-8"', declaration.replace("16", codec[4:6]))
    body = text.encode(codec) if codec != "utf-16-be" else b"\xfe\xff" + text.encode(codec)
    feed = parse_feed(body, url=URL, headers={"content-type": "application/rss+xml"})
    assert feed.title == "Example Blog" and len(feed.entries) == 3
    assert feed.entries[0].title == "First post: AT&T & friends"


def test_undecodable_declared_charset_does_not_crash() -> None:
    body = rss("<item><title>x\xff\xfe</title><link>https://t.example.test/</link></item>")
    feed = parse_feed(body.replace(b"utf-8", b"no-such-charset"), url=URL,
                      headers={"content-type": "application/xml; charset=bogus"})
    assert len(feed.entries) == 1


# -- small fields -------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "expected"), [
    ("60", 60), (" 15 ", 15), ("0", None), ("-5", None), ("1.5", None), ("soon", None), ("", None),
    ("99999999", None),
])
def test_ttl(ttl: str, expected: int | None) -> None:
    assert parse_feed(rss("", head=f"<ttl>{ttl}</ttl>"), url=URL).ttl_minutes == expected


@pytest.mark.parametrize(("language", "expected"), [
    ("en-us", "en"), ("EN_GB", "en"), ("fr", "fr"), ("eng", None), ("x", None), ("  de-AT ", "de"),
])
def test_language_normalised(language: str, expected: str | None) -> None:
    assert parse_feed(rss("", head=f"<language>{language}</language>"), url=URL).language == expected


# -- JSON junk ----------------------------------------------------------------------------


def jsonfeed(**fields: Any) -> bytes:
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", **fields}).encode()


@pytest.mark.parametrize("body", [
    b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
    b"{not json}",
    b"[1, 2, 3]",
    b'{"title": "no version", "items": []}',
    b'{"version": 1, "items": []}',
    b'{"version": null}',
    b'{"version": "https://example.com/version/1"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"version": "https://jsonfeed.org/version/1", "x": ' + b"9" * 5000 + b"}",
    b"\xff\xfe{junk",
])
def test_json_that_is_not_a_json_feed(body: bytes) -> None:
    with pytest.raises(ParseError, match=r"^parse: (not a feed \(invalid JSON|got JSON, but not a JSON Feed)"):
        parse_feed(body, url=URL, headers={"content-type": "application/json"})


def test_json_content_type_on_a_non_json_body() -> None:
    with pytest.raises(ParseError, match=r"invalid JSON"):
        parse_feed(b"hello", url=URL, headers={"content-type": "application/feed+json"})


@pytest.mark.parametrize("fields", [
    {"items": None},
    {"items": "nope"},
    {"items": {"id": 1}},
    {"items": [None, 1, "x", [], {}]},
    {"title": ["a"], "home_page_url": 5, "language": {"x": 1}, "authors": "Someone", "items": []},
    {"items": [{"id": None, "url": 12, "external_url": ["https://x.test/"]}]},
    {"items": [{"id": {"a": 1}, "url": "https://x.test/1", "title": None, "content_html": 5,
                "content_text": ["x"], "summary": {"a": 1}, "date_published": 20250101,
                "date_modified": "yesterday", "authors": [None, 3, {"name": {"x": 1}}],
                "author": ["x"], "tags": "a,b"}]},
    {"items": [{"url": "https://x.test/2", "tags": [1, None, "ok", ["nested"], {"k": "v"}, " ok "],
                "date_published": "0001-01-01T00:00:00+14:00", "authors": [{"name": 7}]}]},
    {"items": [{"url": "https://[::1/oops"}, {"url": "http:///nohost"}]},
])
def test_json_junk_types_never_raise(fields: dict[str, Any]) -> None:
    feed = parse_feed(jsonfeed(**fields), url=URL)
    for entry in feed.entries:
        assert entry.url.startswith("https://") and entry.guid
        assert isinstance(entry.title, str) and isinstance(entry.tags, list)
        assert all(isinstance(tag, str) for tag in entry.tags)


def test_json_numbers_where_strings_belong() -> None:
    feed = parse_feed(jsonfeed(title=2025, items=[
        {"id": 42, "url": "https://x.test/42", "title": 3.5, "tags": [1, None, "ok", " ok "],
         "authors": [{"name": 7}], "date_published": "Tue, 10 Jun 2025 14:30:00 +0200"},
    ]), url=URL)
    assert feed.title == "2025"
    (entry,) = feed.entries
    assert (entry.guid, entry.title, entry.author, entry.tags) == ("42", "3.5", "7", ["1", "ok"])
    assert entry.published == "2025-06-10T12:30:00Z"  # RFC 822 where RFC 3339 belongs


def test_json_items_not_a_list_is_an_empty_feed_with_a_warning() -> None:
    feed = parse_feed(jsonfeed(items="nope"), url=URL)
    assert feed.entries == [] and feed.warning == '"items" is str, not a list'


def test_an_items_own_modification_time_is_kept_apart_from_its_publication() -> None:
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
        {"id": "1", "url": "https://j.example.test/1", "content_text": "x", "date_published": "2026-11-23T09:30:00Z",
         "date_modified": "2026-11-30T10:00:00+01:00"}]}
    [item] = parse_feed(json.dumps(doc).encode(), url=URL).entries
    assert (item.published, item.updated) == ("2026-11-23T09:30:00Z", "2026-11-30T09:00:00Z")
    [plain] = parse_feed(rss("<item><link>https://t.example.test/a</link><pubDate>Mon, 23 Nov 2026 09:30:00 GMT"
                             "</pubDate></item>"), url=URL).entries
    assert plain.updated is None  # RSS 2.0 has no item modification time: only its content moves the mark
