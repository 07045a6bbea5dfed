"""Keys that decide whether two articles are one."""

from __future__ import annotations

import hashlib

import pytest

from worker.dedupe.boilerplate import fingerprints
from worker.dedupe.changes import baseline, is_volatile
from worker.dedupe.keys import article_id, canonical_url, guid_key, normalise_text, text_key, url_key
from worker.dedupe.minhash import signature

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


# Every value below is stored in Redis and compared with values other processes and earlier releases
# stored: a change to how one is computed must be deliberate (a new key version), never a side effect
# of making it faster. Pinned from the code as first released; the text has a word too long for
# the MinHash's word cache (minhash._CACHED_WORD_CHARS).
PINNED_TITLE = "Harbour council approves the runway budget"
PINNED_TEXT = "\n\n".join([
    "Updated 30 November 2026, 10:32 GMT",
    "The harbour council in Zürich approved the runway budget on Tuesday after a long debate, "
    "the mayor's office said; the naïve ﬁnance plan of 2019 was dropped.",
    "Twelve people were injured when the old footbridge collapsed in March, and the council's "
    "inquiry found that repairs promised in 2021 had never begun. The new budget sets aside "
    "40 million for a replacement, to open in 2028, and a further 3 million for the inspectors "
    "who will check every bridge in the district twice a year. Residents of the İstanbul road "
    "estate, cut off for six weeks, asked for a ferry until then (pneumonoultramicroscopicsilicovolcanoconiosis "
    "from the quarry dust, they said); the council said it would "
    "consider one at its next meeting, on 12 January.",
    "Sign up for our daily_briefing newsletter.",
    "1,234 views",
])


def test_stored_keys_digests_and_signatures_are_pinned() -> None:
    paragraphs = PINNED_TEXT.split("\n\n")
    assert [is_volatile(p) for p in paragraphs] == [True, False, False, False, True]
    assert fingerprints(paragraphs) == ["c4e72e98fbe3c908", "b1fc6db89a592979", "fb64e2a7fd6b0faa",
                                        "3001747ff598994a"]  # the long paragraph is no boilerplate
    base = baseline(PINNED_TITLE, PINNED_TEXT)  # volatile lines left out, the long paragraph in
    assert (base.title, base.packed().hex()) == (
        "3f9b6bc16ae4cda0", "b1fc6db89a5929795d5cfec3a801fbc6fb64e2a7fd6b0faa")
    assert text_key(PINNED_TEXT) == "5530c8dd1e4a2da3898f9a88"
    assert url_key("https://www.example.com/news/runway-budget/?utm_source=rss#top") == "2b3d64f499b8fb91337253e4"
    sig = signature(PINNED_TEXT)
    assert sig is not None
    assert sig.packed()[:8].hex() == "0f758ff855353a8b"
    assert hashlib.blake2b(sig.packed(), digest_size=8).hexdigest() == "b385a612510104ee"
    assert [band.hex() for band in sig.bands()[:3]] == ["8cde2d134d09d0", "c54408d25ea0ec", "2068fb34e7bcb4"]
    assert hashlib.blake2b(b"".join(sig.bands()), digest_size=8).hexdigest() == "8d01c6ce5abb06c9"
