"""An email's bytes -> a newsletter article candidate. Pure: bytes in, data out.

Reads the message with the stdlib ``email`` package (``policy.default``), takes
the HTML part (else the text part), removes the newsletter's own furniture by
general rules (never keyed to a sender), then shapes the text exactly as feed
content is shaped (:func:`worker.extract.text_from_html_fragment`, which also
drops scripts, styles and forms, and :func:`worker.extract.clean_paragraphs`).

Furniture removed:

- tracking pixels (tiny or hidden images) and hidden preheader text
  (``display:none``);
- links (and the short block around them) whose text or address is
  unsubscribe, "view in browser"/"view online"/"web version", manage
  preferences/subscription, "forward to a friend", update profile;
- the footer: from the first line in the last part of the text that is a
  footer sentence ("You are receiving this email because...", "Unsubscribe",
  "Our mailing address is", "Copyright ...") to the end.

Errors are :class:`MailError` (``mail: ...``): malformed MIME, no readable part,
too large (:class:`MailTooLarge`), a mail loop (:class:`MailLoop`). Nothing else
escapes on any input.
"""

from __future__ import annotations

import email
import email.errors
import email.utils
import re
from email import policy
from email.message import EmailMessage

import lxml.etree
import lxml.html

from worker.errors import MailError, MailLoop, MailTooLarge
from worker.extract import clean_paragraphs, decode_html, text_from_html_fragment
from worker.models import Newsletter
from worker.text import is_usable
from worker.timefmt import iso_utc

__all__ = ["LOOP_HEADER", "LOOP_VALUE", "MAX_RECEIVED", "parse_newsletter"]

# We never send mail; a message carrying our loop header came back to us.
LOOP_HEADER = "X-Loop"
LOOP_VALUE = "feedstream"
# Postfix refuses at 50 hops, sendmail at 25: 30 Received headers is a loop, not a route.
MAX_RECEIVED = 30
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
_MAX_PART_CHARS = 2 * 1024 * 1024  # the text we shape; bigger HTML bodies are cut (furniture sits at the end)

# MIME damage that means we cannot know where the body is.
_FATAL_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.MissingHeaderBodySeparatorDefect,
)

# Link text or address of newsletter furniture.
_FURNITURE_LINK = re.compile(
    r"""unsubscri|opt[\s-]?out|\bview\s+(?:this\s+|it\s+)?(?:e-?mail\s+|newsletter\s+|message\s+)?
    (?:in\s+(?:your\s+|a\s+)?browser|online|on\s+(?:the\s+)?web)|web\s+version|online\s+version
    |(?:manage|update|change|edit)\s+(?:your\s+)?(?:e-?mail\s+)?(?:preferences|subscriptions?|profile|settings)
    |(?:e-?mail|subscription|communication)\s+(?:preferences|settings)
    |forward\s+(?:this\s+(?:e-?mail\s+)?)?to\s+a\s+friend|having\s+trouble\s+viewing
    |^\s*(?:read|view|open)\s+(?:it\s+)?(?:online|in\s+(?:your\s+|a\s+|the\s+)?(?:browser|app))\s*$
    # addresses: only words no article link uses ("/profile/ceo-interview" is news)
    |[/?&=_-]opt-?out\b|(?:e-?mail|manage|update)[_-]?preferences|list-manage\.com/(?:profile|track)""",
    re.IGNORECASE | re.VERBOSE,
)
_FURNITURE_BLOCK_MAX_CHARS = 300  # a block this short around a furniture link is furniture
_BLOCK_TAGS = ("p", "div", "td", "li", "tr", "table", "span", "center", "footer", "header", "font")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|max-height\s*:\s*0|mso-hide\s*:\s*all",
                           re.IGNORECASE)
# Lines that open a newsletter footer: everything from there on is furniture.
_FOOTER_LINE = re.compile(
    r"""^[\s\-–—_|*•#=~]*(?:you\s+(?:are\s+)?(?:were\s+)?receiv(?:ed|ing)\s+this|you(?:'re|\s+are)\s+(?:getting|receiving)\s+this
    |this\s+e-?mail\s+was\s+sent\s+to|(?:this\s+)?(?:e-?mail|message|newsletter)\s+was\s+sent\s+(?:to|by)
    |unsubscribe|to\s+unsubscribe|if\s+you\s+(?:no\s+longer\s+)?(?:wish|want)\s+to\s+(?:stop|unsubscribe|receive)
    |don'?t\s+want\s+(?:to\s+receive\s+)?these\s+e-?mails|our\s+mailing\s+address\s+is
    |(?:copyright\s*)?(?:©|\(c\)|copyright)\s*(?:\d{4}|[A-Z])|want\s+to\s+change\s+how\s+you\s+receive
    |(?:manage|update)\s+(?:your\s+)?(?:e-?mail\s+)?(?:preferences|subscription)|sent\s+(?:with|via)\s+\w+
    |forward\s+(?:this\s+(?:e-?mail\s+)?)?to\s+a\s+friend|add\s+us\s+to\s+your\s+address\s+book
    |thanks?\s+(?:you\s+)?for\s+reading\b)""",
    re.IGNORECASE | re.VERBOSE,
)
_FOOTER_ZONE = 0.5  # a footer line counts only in the second half of the text
# Single furniture lines anywhere (a plain-text newsletter's header).
_FURNITURE_TEXT_LINE = re.compile(
    r"""^(?:\[?\s*)?(?:view\s+(?:this\s+|it\s+)?(?:e-?mail\s+|newsletter\s+)?(?:in\s+(?:your\s+|a\s+)?browser|online
    |on\s+the\s+web)|(?:read|open)\s+(?:it\s+)?(?:online|in\s+(?:your\s+|a\s+|the\s+)?(?:browser|app))
    |web\s+version|having\s+trouble\s+viewing\s+this|forward\s+(?:this\s+)?to\s+a\s+friend
    |unsubscribe|manage\s+(?:your\s+)?(?:preferences|subscription))\b[^\n]{0,160}$""",
    re.IGNORECASE | re.VERBOSE,
)
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def _header(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError, LookupError, email.errors.HeaderParseError):
        return None
    if value is None:
        return None
    text = _SPACE.sub(" ", str(value)).strip()
    return text or None


def _check_loop(message: EmailMessage) -> None:
    loops = [str(v).strip().lower() for v in message.get_all(LOOP_HEADER, [])]
    if LOOP_VALUE in loops:
        raise MailLoop(f"mail loop: the message carries our own {LOOP_HEADER}: {LOOP_VALUE} header")
    received = len(message.get_all("Received", []))
    if received > MAX_RECEIVED:
        raise MailLoop(f"mail loop: {received} Received headers (more than {MAX_RECEIVED} relays)")


def _published(message: EmailMessage) -> str | None:
    raw = _header(message, "Date")
    if not raw:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        return iso_utc(moment)
    except (ValueError, OverflowError):
        return None


def _author(message: EmailMessage) -> tuple[str | None, str | None]:
    raw = message.get("From")
    if raw is None:
        return None, None
    try:
        addresses = raw.addresses
    except (AttributeError, ValueError, IndexError, email.errors.HeaderParseError):
        addresses = ()
    if addresses:
        first = addresses[0]
        address = first.addr_spec or None
        return (first.display_name or first.username or None), address
    name, address = email.utils.parseaddr(str(raw))
    return name or None, address or None


def _part_text(part: EmailMessage) -> str:
    """A leaf part's content as str, whatever its transfer encoding or (wrong) charset."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or ""
    content_type = f"{part.get_content_type()}; charset={charset}" if charset else part.get_content_type()
    return decode_html(payload, content_type)


def _body_parts(message: EmailMessage) -> tuple[EmailMessage | None, EmailMessage | None]:
    """(first text/html part, first text/plain part) that are not attachments."""
    html = plain = None
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/html" and html is None:
            html = part
        elif kind == "text/plain" and plain is None:
            plain = part
    return html, plain


def _is_furniture_link(link: lxml.html.HtmlElement) -> bool:
    label = " ".join(link.itertext())
    href = link.get("href") or ""
    return bool(_FURNITURE_LINK.search(label) or _FURNITURE_LINK.search(href))


def _strip_html_furniture(root: lxml.html.HtmlElement) -> None:
    """Remove tracking pixels, hidden preheaders and the blocks around furniture links, in place."""
    doomed = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if _HIDDEN_STYLE.search(element.get("style") or "") or element.get("hidden") is not None:
            doomed.append(element)
        elif element.tag == "img":
            doomed.append(element)  # images carry no text; tiny ones are tracking pixels
    for link in root.iter("a"):
        if not _is_furniture_link(link):
            continue
        target = link
        # Widen to the nearest short enclosing block: "Unsubscribe | Preferences" rows.
        for ancestor in link.iterancestors():
            if ancestor.tag not in _BLOCK_TAGS:
                continue
            if len(" ".join("".join(ancestor.itertext()).split())) <= _FURNITURE_BLOCK_MAX_CHARS:
                target = ancestor
            break
        doomed.append(target)
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()


def _links(root: lxml.html.HtmlElement) -> list[str]:
    found = []
    for link in root.iter("a"):
        href = (link.get("href") or "").strip()
        if href.startswith(("http://", "https://")) and not _is_furniture_link(link):
            found.append(href)
    return list(dict.fromkeys(found))


def _cut_footer(paragraphs: list[str]) -> list[str]:
    """Drop furniture lines, and everything from the first footer line in the second half."""
    # a paragraph with no word in it is a table's cell separators or a rule line
    kept = [p for p in paragraphs if _WORD.search(p) and not _FURNITURE_TEXT_LINE.match(p)]
    start = int(len(kept) * _FOOTER_ZONE)
    for index in range(max(start, 1), len(kept)):
        if _FOOTER_LINE.match(kept[index]):
            return kept[:index]
    return kept


def _html_text(html: str) -> tuple[str, list[str]]:
    html = html[:_MAX_PART_CHARS]
    try:
        root = lxml.html.document_fromstring(re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", html))
    except (lxml.etree.Error, ValueError):
        return text_from_html_fragment(html), []
    for element in list(root.iter("script", "style", "head", "noscript", "template")):
        if element.getparent() is not None:
            element.drop_tree()
    _strip_html_furniture(root)
    links = _links(root)
    body = root.find("body")
    fragment = lxml.html.tostring(body if body is not None else root, encoding="unicode")
    return text_from_html_fragment(fragment), links


def _plain_text(text: str) -> tuple[str, list[str]]:
    text = text[:_MAX_PART_CHARS]
    # RFC 3676 signature delimiter: what follows "-- " is the sender's footer
    text = re.split(r"(?m)^-- ?$", text, maxsplit=1)[0]
    blocks = re.split(r"\n\s*\n", text) if re.search(r"\n\s*\n", text) else text.split("\n")
    links = [u for u in _URL.findall(text) if not _FURNITURE_LINK.search(u)]
    # A block may hold a furniture line among others ("View online: URL\nNews..."); drop those lines.
    lines = []
    for block in blocks:
        kept = [line for line in block.split("\n") if not _FURNITURE_TEXT_LINE.match(line.strip())]
        lines.append(" ".join(kept))
    return "\n\n".join(clean_paragraphs(lines, title=None, labels=())), list(dict.fromkeys(links))


def parse_newsletter(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Newsletter:
    """An email's bytes -> :class:`Newsletter`; raises :class:`MailError` and nothing else.

    Title from Subject, author from From's display name, published from Date
    (ISO 8601 UTC), ``List-Id`` and ``Message-ID`` kept. ``links``: the body's
    http(s) links, furniture links excluded (for digests).
    """
    if not isinstance(raw, bytes | bytearray):
        raise MailError(f"expected bytes, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise MailTooLarge(f"message is {len(raw)} bytes, over the {max_bytes}-byte limit")
    if not raw.strip():
        raise MailError("empty message")
    try:
        message = email.message_from_bytes(bytes(raw), policy=policy.default)
        assert isinstance(message, EmailMessage)
        _check_loop(message)
        fatal = [d for d in message.defects if isinstance(d, _FATAL_DEFECTS)]
        for part in message.walk():
            fatal.extend(d for d in part.defects if isinstance(d, _FATAL_DEFECTS))
        if fatal:
            names = ", ".join(sorted({type(d).__name__ for d in fatal}))
            raise MailError(f"malformed MIME: {names}")
        html_part, plain_part = _body_parts(message)
        if html_part is None and plain_part is None:
            raise MailError(f"malformed MIME: no text/html or text/plain part (top type {message.get_content_type()})")
        text, links = "", []
        if html_part is not None:
            text, links = _html_text(_part_text(html_part))
        if not is_usable(text) and plain_part is not None:
            text, links = _plain_text(_part_text(plain_part))
        subject = _header(message, "Subject")
        paragraphs = _cut_footer([p for p in text.split("\n\n") if p.strip()])
        # the subject repeated as the body's first heading is the title, not the text
        text = "\n\n".join(clean_paragraphs(paragraphs, title=subject, labels=()))
        if not is_usable(text):
            raise MailError("no readable text in the message body")
        author, address = _author(message)
        message_id = _header(message, "Message-ID")
        return Newsletter(
            message_id=message_id.strip("<>") if message_id else None,
            title=subject or "(no subject)",
            text=text,
            author=author,
            author_address=address,
            published=_published(message),
            list_id=_header(message, "List-Id"),
            links=links,
            warnings=sorted({type(d).__name__ for d in message.defects}),
        )
    except MailError:
        raise
    except (ValueError, TypeError, LookupError, AttributeError, IndexError, AssertionError,
            RecursionError, lxml.etree.Error, email.errors.MessageError) as exc:
        raise MailError(f"unreadable message: {type(exc).__name__}: {exc}") from exc

