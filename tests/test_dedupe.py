"""Keys that decide whether two articles are one."""

from __future__ import annotations

import pytest

from worker.dedupe.keys import article_id, canonical_url, guid_key, normalise_text, text_key, url_key

BASE = "https://www.telecoms.com/networks/operator-hits-milestone/"


@pytest.mark.parametrize("variant", [
    BASE + "?utm_source=rss&utm_medium=feed",
    BASE + "#comments",
    BASE + "?fbclid=IwAR0abc&gclid=xyz",
    "http://www.telecoms.com/networks/operator-hits-milestone/",
    "https://telecoms.com/networks/operator-hits-milestone",
    "HTTPS://WWW.TELECOMS.COM/networks/operator-hits-milestone/?mc_cid=1&mc_eid=2",
])
def test_tracking_parameters_fragments_scheme_and_www_do_not_make_a_new_article(variant: str) -> None:
    assert url_key(variant) == url_key(BASE)
    assert article_id(variant) == article_id(BASE)


def test_meaningful_query_and_path_make_different_articles() -> None:
    assert url_key("https://example.com/article?p=1") != url_key("https://example.com/article?p=2")
    assert url_key("https://example.com/a/") != url_key("https://example.com/b/")
    assert url_key("https://a.example.com/x") != url_key("https://b.example.com/x")


def test_canonical_url_keeps_the_link_readable() -> None:
    assert canonical_url(BASE + "?utm_source=rss#top") == BASE
    assert canonical_url("https://example.com/a?b=2&a=1") == "https://example.com/a?a=1&b=2"


def test_guid_keys_are_scoped_to_their_feed() -> None:
    assert guid_key("a", "123") != guid_key("b", "123")
    assert guid_key("a", "123") == guid_key("a", "123")


def test_text_key_ignores_case_punctuation_and_spacing() -> None:
    text = " ".join(f"Word{i} and, more;" for i in range(30))
    assert text_key(text) == text_key(text.upper().replace(",", "  "))
    assert text_key(text) != text_key(text + " extra")
    assert normalise_text("Hello,   World!") == "hello world"


def test_text_key_refuses_texts_too_short_to_identify_an_article() -> None:
    assert text_key("Read more") is None
    assert text_key("") is None
