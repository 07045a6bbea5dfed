"""worker.text: words, usable text, byte-order marks and language codes, each defined once."""

import codecs

from worker.text import bom_encoding, is_usable, language_code, word_count


def test_words_and_usable_text() -> None:
    assert word_count("Hello, world: it's 2026.") == 5
    assert not is_usable("<p>x</p> ok")
    assert is_usable("A sentence long enough to be worth keeping.")


def test_boms_prefer_utf32_over_the_utf16_prefix() -> None:
    assert bom_encoding(codecs.BOM_UTF32_LE + b"\x00" * 4) == ("utf-32-le", 4)
    assert bom_encoding(codecs.BOM_UTF16_LE + b"a\x00") == ("utf-16-le", 2)
    assert bom_encoding(codecs.BOM_UTF8 + b"a") == ("utf-8", 3)
    assert bom_encoding(b"<html>") is None


def test_language_codes() -> None:
    for value in ("en-GB", "en_US", " EN", "en, fr", "en"):
        assert language_code(value) == "en", value
    for value in ("english", "e", "", None, 42, "123"):
        assert language_code(value) is None, value
