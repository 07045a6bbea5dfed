"""The pure email -> newsletter stage: clean text, metadata, and a typed error for bad mail."""

from __future__ import annotations

import pytest

from tests.mailgen import STORY, mail_bytes, newsletter_html
from worker.errors import MailError, MailLoop, MailTooLarge
from worker.mail import parse_newsletter

FURNITURE = ("unsubscribe", "view this email", "in your browser", "preferences", "forward to a friend",
             "you are receiving", "mailing address", "top story and more inside", "open.gif")


def assert_clean(text: str) -> None:
    folded = text.casefold()
    for word in FURNITURE:
        assert word not in folded, f"{word!r} left in {text!r}"


def test_html_newsletter_becomes_the_story_alone_with_metadata() -> None:
    letter = parse_newsletter(mail_bytes(html=newsletter_html()))
    assert letter.text == "\n\n".join(STORY)
    assert letter.title == "Operators pool rural masts"
    assert letter.author == "Telecoms Daily"
    assert letter.author_address == "news@telecoms.example"
    assert letter.published == "2026-11-24T07:30:00Z"
    assert letter.message_id == "story-1@telecoms.example"
    assert letter.list_id == "Telecoms Daily <daily.telecoms.example>"


def test_text_only_newsletter_loses_its_view_online_line_and_signature_footer() -> None:
    letter = parse_newsletter(mail_bytes())
    assert letter.text == "\n\n".join(STORY)
    assert_clean(letter.text)


def test_date_in_another_zone_is_published_in_utc() -> None:
    raw = mail_bytes(html=newsletter_html()).replace(b"Tue, 24 Nov 2026 07:30:00 +0000",
                                                     b"Tue, 24 Nov 2026 09:30:00 +0200")
    assert parse_newsletter(raw).published == "2026-11-24T07:30:00Z"


def test_scripts_and_styles_are_stripped() -> None:
    html = newsletter_html(extra="<script>alert('owned')</script><p onclick=\"x()\">A closing line about masts "
                                 "and towers for readers.</p><style>p{}</style>")
    letter = parse_newsletter(mail_bytes(html=html))
    assert "alert" not in letter.text and "owned" not in letter.text and "p{}" not in letter.text
    assert letter.text.endswith("A closing line about masts and towers for readers.")


def test_digest_links_exclude_furniture_links() -> None:
    extra = ('<p><a href="https://www.telecoms.example/news/masts-deal">Read the full story on masts</a></p>'
             '<p><a href="https://www.telecoms.example/news/fibre-plan">Fibre plan approved</a></p>')
    letter = parse_newsletter(mail_bytes(html=newsletter_html(extra=extra)))
    assert letter.links == ["https://www.telecoms.example/news/masts-deal",
                            "https://www.telecoms.example/news/fibre-plan"]


def test_malformed_mime_is_a_typed_error() -> None:
    raw = (b"From: a@example.com\r\nSubject: broken\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="nowhere"\r\n\r\n'
           b"This body never opens the boundary it declared.\r\n")
    with pytest.raises(MailError, match=r"^mail: malformed MIME: .*Boundary"):
        parse_newsletter(raw)


@pytest.mark.parametrize("raw", [b"", b"\x00\xff\xfe garbage", b"Subject: only headers\r\n\r\n",
                                 b"Content-Type: image/png\r\n\r\n\x89PNG", "not bytes"])
def test_junk_is_a_mail_error_never_a_crash(raw: bytes) -> None:
    with pytest.raises(MailError):
        parse_newsletter(raw)  # type: ignore[arg-type]


def test_huge_message_is_refused_by_size() -> None:
    message = mail_bytes(html=newsletter_html())
    with pytest.raises(MailTooLarge, match="over the 2000-byte limit"):
        parse_newsletter(message, max_bytes=2000)


def test_wrong_charset_label_is_decoded_safely() -> None:
    text = "Les opérateurs européens mettent en commun leurs pylônes ruraux après l'enchère. " * 3
    html = f"<html><body><p>{text}</p></body></html>"
    header = (b"From: Lettre <l@example.fr>\r\nSubject: =?utf-8?q?Pyl=C3=B4nes?=\r\nMIME-Version: 1.0\r\n"
              b"Message-ID: <fr-1@example.fr>\r\n")
    # declared UTF-8, actually windows-1252
    latin = header + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html.encode("cp1252")
    assert "opérateurs européens" in parse_newsletter(latin).text
    # a charset no codec knows
    unknown = header + b"Content-Type: text/html; charset=x-no-such-charset\r\n\r\n" + html.encode("utf-8")
    letter = parse_newsletter(unknown)
    assert "pylônes" in letter.text and letter.title == "Pylônes"


def test_our_own_loop_header_is_refused() -> None:
    with pytest.raises(MailLoop, match="X-Loop"):
        parse_newsletter(mail_bytes(html=newsletter_html(), headers={"X-Loop": "feedstream"}))


def test_too_many_relays_is_a_loop() -> None:
    raw = mail_bytes(html=newsletter_html())
    hops = b"".join(b"Received: from relay%d.example by relay%d.example; Tue, 24 Nov 2026 07:30:00 +0000\r\n"
                    % (i, i + 1) for i in range(40))
    with pytest.raises(MailLoop, match="40 Received headers"):
        parse_newsletter(hops + raw)


def test_mangled_mail_gives_a_newsletter_or_a_mail_error_and_nothing_else() -> None:
    import random

    seed = mail_bytes(html=newsletter_html(), headers={"Cc": "A <a@x>, broken <<@@>>, =?utf-8?b?!!?= <c@y>"})
    rng = random.Random(8)
    junk = [b"\x00", b"\xff", b"\r\n", b"--", b"=?", b"?=", b"<", b">", b"@", b"\"", b":", b";", b"boundary=",
            b"Content-Type: multipart/mixed; boundary=\"b\"\r\n", b"=\r\n", b"charset=x-unknown"]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        raw = bytearray(seed)
        for _ in range(rng.randint(1, 12)):
            at = rng.randrange(len(raw))
            if rng.random() < 0.5:
                raw[at:at] = rng.choice(junk)
            else:
                del raw[at:at + rng.randint(1, 40)]
        try:
            parse_newsletter(bytes(raw))
            outcomes["ok"] += 1
        except MailError:
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]  # both paths were exercised


def test_article_links_that_merely_look_like_account_pages_are_kept() -> None:
    extra = ('<p><a href="https://www.telecoms.example/profile/ceo-interview">Profile: the CEO who bet on '
             'rural masts</a></p><p><a href="https://www.telecoms.example/manage/network-ops">Managing network '
             'operations at scale</a></p>')
    letter = parse_newsletter(mail_bytes(html=newsletter_html(extra=extra)))
    assert "Profile: the CEO who bet on rural masts" in letter.text
    assert "Managing network operations at scale" in letter.text
    assert len(letter.links) == 2


MAILCHIMP_LIKE = """<html><body><center><table class="bodyTable"><tr><td>
<table><tr><td class="preheader"><span class="mcnPreviewText" style="display:none !important;">This week: masts,
fibre and more</span></td><td><a href="https://us1.campaign-archive.com/?u=1&id=2">View this email in your
browser</a></td></tr></table>
<table><tr><td class="mcnTextContent"><h1>This week in telecoms</h1>
{body}
</td></tr></table>
<table><tr><td class="footerContent"><em>Copyright © 2026 Telecoms Weekly, All rights reserved.</em><br>
You are receiving this email because you opted in via our website.<br><br>
<strong>Our mailing address is:</strong><br>Telecoms Weekly, 1 Example Street, London<br><br>
Want to change how you receive these emails?<br>You can <a href="https://x.us1.list-manage.com/profile?u=1">update
your preferences</a> or <a href="https://x.us1.list-manage.com/unsubscribe?u=1">unsubscribe from this list</a>.
</td></tr></table>
<img src="https://x.us1.list-manage.com/track/open.php?u=1" height="1" width="1">
</td></tr></table></center></body></html>"""

SUBSTACK_LIKE = """<html><body><div class="preview" style="display:none">masts, fibre</div>
<table><tr><td><a href="https://telecoms.substack.com/p/masts?utm_source=email">Open in app</a></td>
<td><a href="https://telecoms.substack.com/p/masts?r=1">Read online</a></td></tr></table>
<div class="post"><h1>This week in telecoms</h1><h3>Masts, fibre and more</h3>
{body}
</div>
<div class="footer"><p>Thanks for reading Telecoms Weekly! Subscribe for free to receive new posts.</p>
<p>© 2026 Telecoms Weekly<br>548 Market Street, San Francisco</p>
<p><a href="https://telecoms.substack.com/action/disable_email">Unsubscribe</a></p></div>
</body></html>"""


@pytest.mark.parametrize("template", [MAILCHIMP_LIKE, SUBSTACK_LIKE], ids=["mailchimp-like", "substack-like"])
def test_common_newsletter_layouts_come_out_clean(template: str) -> None:
    body = "".join(f"<p>{p}</p>" for p in STORY)
    letter = parse_newsletter(mail_bytes(subject="This week in telecoms", html=template.format(body=body)))
    assert_clean(letter.text)
    for word in ("open in app", "read online", "copyright", "©", "rights reserved", "market street",
                 "thanks for reading", "masts, fibre and more inside"):
        assert word not in letter.text.casefold(), word
    assert all(p in letter.text for p in STORY)
    assert letter.text.endswith(STORY[-1])
    assert not letter.text.startswith("This week in telecoms")
