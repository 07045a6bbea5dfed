"""Newsletter emails written for the tests (stdlib email builds them)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

STORY = [
    "Operators across Europe agreed on Tuesday to pool their rural mast sites, a deal that regulators "
    "had asked for since the spectrum auction closed last spring.",
    "The agreement covers roughly four thousand towers and will let each operator switch on new radio "
    "equipment without building a second mast beside an existing one.",
    "Analysts said the savings could reach several hundred million euros over the decade, although the "
    "timetable depends on local planning approvals that have often stalled similar projects.",
]


def story_html(paragraphs: list[str] = STORY, title: str = "Operators pool rural masts") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<h1>{title}</h1>{body}"


def newsletter_html(paragraphs: list[str] = STORY, *, extra: str = "") -> str:
    """A typical newsletter: preheader, view-in-browser bar, story, footer with unsubscribe."""
    return f"""<!doctype html><html><head><title>Newsletter</title>
<style>.x{{color:red}}</style></head><body>
<div style="display:none;max-height:0">Today's top story and more inside</div>
<table><tr><td><a href="https://news.example.com/view/123?u=abc">View this email in your browser</a></td></tr></table>
<table><tr><td>
{"".join(f"<p>{p}</p>" for p in paragraphs)}
{extra}
</td></tr></table>
<table><tr><td>
<p>You are receiving this email because you subscribed to Telecoms Daily.</p>
<p><a href="https://news.example.com/unsubscribe?u=abc">Unsubscribe</a> |
<a href="https://news.example.com/preferences?u=abc">Update your preferences</a> |
<a href="https://news.example.com/fwd">Forward to a friend</a></p>
<p>Our mailing address is: 1 Example Street, London</p>
</td></tr></table>
<img src="https://track.example.com/open.gif?u=abc" width="1" height="1" alt="">
</body></html>"""


def newsletter_text(paragraphs: list[str] = STORY) -> str:
    return ("View this email in your browser: https://news.example.com/view/123\n\n"
            + "\n\n".join(paragraphs)
            + "\n\n--\nYou are receiving this email because you subscribed.\n"
              "Unsubscribe: https://news.example.com/unsubscribe?u=abc\n")


def make_mail(*, subject: str = "Operators pool rural masts", sender: str = "Telecoms Daily <news@telecoms.example>",
              to: str = "telecoms@feeds.example", message_id: str = "<story-1@telecoms.example>",
              html: str | None = None, text: str | None = None,
              list_id: str = "Telecoms Daily <daily.telecoms.example>",
              date: datetime | None = None, headers: dict[str, str] | None = None) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(date or datetime(2026, 11, 24, 7, 30, tzinfo=UTC))
    if message_id:
        message["Message-ID"] = message_id
    if list_id:
        message["List-Id"] = list_id
    message["List-Unsubscribe"] = "<https://news.example.com/unsubscribe?u=abc>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text if text is not None else newsletter_text())
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def mail_bytes(**kwargs: object) -> bytes:
    """The mail as sent over SMTP: CRLF line ends (smtplib sends bytes as they are)."""
    return make_mail(**kwargs).as_bytes(policy=policy.SMTP)  # type: ignore[arg-type]
