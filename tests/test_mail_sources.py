"""Newsletters in through real protocol peers: smtplib to our SMTP endpoint, and a Maildir.

Each newsletter lands on the stream once, clean, with its metadata; bad mail is
refused with a clear error on the source's status and loses nothing else.
"""

from __future__ import annotations

import json
import mailbox
import smtplib
import socket
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker

from tests.mailgen import STORY, mail_bytes, newsletter_html
from tests.pipeline_helpers import articles, make_context, run_burst
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.jobs import poll_mailbox
from worker.mail.smtp import start_smtp
from worker.pipeline.context import Context
from worker.pipeline.mail import record_mail_refused
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_mail, enqueue_poll

FURNITURE = ("unsubscribe", "view this email", "browser", "preferences", "forward to a friend",
             "you are receiving", "mailing address")


def write_config(path: Path, *, feeds: dict[str, str] | None = None, newsletters: list[dict] | None = None) -> Path:
    lines = []
    for name, url in (feeds or {}).items():
        lines += ["[[feeds]]", f'name = "{name}"', f'url = "{url}"', ""]
    for table in newsletters or []:
        lines.append("[[newsletters]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def work(context: Context) -> None:
    client = context.store.redis
    worker = SimpleWorker([Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client)],
                          connection=client)
    worker.work(burst=True, logging_level="WARNING")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_clean_newsletter(doc: dict, feed: str) -> None:
    assert doc["text"] == "\n\n".join(STORY)
    folded = doc["text"].casefold()
    for word in FURNITURE:
        assert word not in folded
    assert doc["title"] == "Operators pool rural masts"
    assert doc["author"] == "Telecoms Daily"
    assert doc["published"] == "2026-11-24T07:30:00Z"
    assert doc["guid"] == "story-1@telecoms.example"
    assert doc["list_id"] == "Telecoms Daily <daily.telecoms.example>"
    assert doc["extraction"] == "newsletter"
    assert doc["feed"] == feed
    assert doc["url"] == "mid:story-1@telecoms.example"


@pytest.fixture
def smtp_context(redis_url: str, redis_client: redis.Redis, feeds_file: Path) -> Iterator[tuple[Context, int]]:
    config = write_config(feeds_file, newsletters=[
        {"name": "telecoms-daily", "kind": "smtp", "address": "telecoms@feeds.example", "tags": ["telecoms"]},
        {"name": "small", "kind": "smtp", "address": "small@feeds.example", "max_bytes": 4096},
    ])
    context = make_context(redis_url, config)
    port = free_port()

    def deliver(name: str, raw: bytes) -> None:
        enqueue_mail(context.extract_queue, name, raw, "smtp")

    def refused(name: str, reason: str) -> None:
        record_mail_refused(context.store, context.newsletters[name], reason)

    controller = start_smtp(list(context.newsletters.values()), deliver, host="127.0.0.1", port=port,
                            refused=refused)
    yield context, port
    controller.stop()


def test_smtp_newsletter_lands_once_clean_with_metadata(smtp_context: tuple[Context, int],
                                                        redis_client: redis.Redis) -> None:
    context, port = smtp_context
    raw = mail_bytes(html=newsletter_html())
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("news@telecoms.example", ["telecoms@feeds.example"], raw)
        client.sendmail("news@telecoms.example", ["Telecoms@feeds.example"], raw)  # the same mail again
    work(context)
    [doc] = articles(redis_client)
    assert_clean_newsletter(doc, "telecoms-daily")
    assert doc["tags"] == ["telecoms"]
    status = context.store.feed_status("telecoms-daily")
    assert status["consecutive_errors"] == "0" and status["kind"] == "smtp"


def test_smtp_refuses_unknown_recipients_at_rcpt(smtp_context: tuple[Context, int]) -> None:
    _context, port = smtp_context
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("news@telecoms.example")
        code, message = client.rcpt("nobody@feeds.example")
    assert code == 550 and b"no newsletter" in message
    with smtplib.SMTP("127.0.0.1", port) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail("news@telecoms.example", ["nobody@feeds.example"], mail_bytes())


def test_smtp_refuses_a_message_over_its_sources_limit_and_records_why(
        smtp_context: tuple[Context, int], redis_client: redis.Redis) -> None:
    context, port = smtp_context
    big = make_attachment_mail(20_000)
    with smtplib.SMTP("127.0.0.1", port) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("news@telecoms.example", ["small@feeds.example"], big)
        assert refused.value.smtp_code == 552
        client.sendmail("news@telecoms.example", ["telecoms@feeds.example"], mail_bytes(html=newsletter_html()))
    work(context)
    assert len(articles(redis_client)) == 1  # the other source's mail is not lost
    status = context.store.feed_status("small")
    assert status["last_error"].startswith("mail: message is") and "over the 4096-byte limit" in status["last_error"]


def make_attachment_mail(size: int) -> bytes:
    from tests.mailgen import make_mail

    message = make_mail(html=newsletter_html(), message_id="<big@telecoms.example>")
    message.add_attachment(b"\x00" * size, maintype="application", subtype="octet-stream", filename="big.bin")
    return message.as_bytes(policy=policy.SMTP)


# -- Maildir ------------------------------------------------------------------------------

def maildir_context(redis_url: str, feeds_file: Path, root: Path, **extra: object) -> Context:
    config = write_config(feeds_file, newsletters=[
        {"name": "maildir-letters", "kind": "maildir", "path": str(root), "max_bytes": 16384, **extra}])
    return make_context(redis_url, config)


def test_maildir_newsletters_publish_once_and_are_filed_as_seen(
        redis_url: str, redis_client: redis.Redis, feeds_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    box = mailbox.Maildir(root, create=True)
    box.add(mail_bytes(html=newsletter_html()))
    context = maildir_context(redis_url, feeds_file, root)
    assert poll_mailbox("maildir-letters")["new"] == 1
    work(context)
    [doc] = articles(redis_client)
    assert_clean_newsletter(doc, "maildir-letters")
    assert not list((root / "new").iterdir())
    [filed] = list((root / "cur").iterdir())
    assert filed.name.endswith(":2,S")
    # a second poll reads nothing; a redelivered copy (new file, same Message-ID) is not published again
    assert poll_mailbox("maildir-letters")["new"] == 0
    box.add(mail_bytes(html=newsletter_html()))
    assert poll_mailbox("maildir-letters")["new"] == 1
    work(context)
    assert len(articles(redis_client)) == 1


def test_maildir_bad_mail_is_refused_with_a_clear_error_and_loses_nothing_else(
        redis_url: str, redis_client: redis.Redis, feeds_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    box = mailbox.Maildir(root, create=True)
    bad = {
        "malformed": (b"From: a@example.com\r\nSubject: broken\r\nMIME-Version: 1.0\r\n"
                      b'Content-Type: multipart/mixed; boundary="nowhere"\r\n\r\nno boundary here\r\n'),
        "loop": mail_bytes(html=newsletter_html(), message_id="<loop@x>", headers={"X-Loop": "feedstream"}),
        "huge": make_attachment_mail(40_000),
    }
    for raw in bad.values():
        box.add(raw)
    script = newsletter_html(extra="<script>document.write('injected words here')</script>")
    box.add(mail_bytes(html=script, message_id="<scripted@telecoms.example>"))
    context = maildir_context(redis_url, feeds_file, root)
    assert poll_mailbox("maildir-letters")["new"] == 4
    work(context)
    [doc] = articles(redis_client)
    assert doc["guid"] == "scripted@telecoms.example" and "injected" not in doc["text"]
    status = context.store.feed_status("maildir-letters")
    assert status["mails_refused"] == "3"
    failed = context.store.redis.hgetall(f"{context.store.prefix}:counters")
    assert int(failed[b"mails_refused"]) == 3
    # every message stays in the Maildir, filed as seen
    assert len(list((root / "cur").iterdir())) == 4


def test_maildir_errors_reach_the_status(redis_url: str, redis_client: redis.Redis, feeds_file: Path,
                                         tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    mailbox.Maildir(root, create=True).add(
        mail_bytes(html=newsletter_html(), message_id="<loop@x>", headers={"X-Loop": "feedstream"}))
    context = maildir_context(redis_url, feeds_file, root)
    poll_mailbox("maildir-letters")
    work(context)
    status = context.store.feed_status("maildir-letters")
    assert status["last_error"] == "mail: mail loop: the message carries our own X-Loop: feedstream header"
    assert status["consecutive_errors"] == "1"


# -- the same story by feed and by newsletter ----------------------------------------------

def test_the_same_story_by_feed_and_by_newsletter_is_published_once(
        site: Site, redis_url: str, redis_client: redis.Redis, feeds_file: Path, tmp_path: Path) -> None:
    s = story(7)
    link = site.add(f"/news/{s.slug}/", telecoms_page(s))
    feed = site.add("/feed/", rss2("Telecoms.com", [(s, link)]), "application/rss+xml")
    root = tmp_path / "Maildir"
    paragraphs = s.body_text.split("\n\n")
    mailbox.Maildir(root, create=True).add(
        mail_bytes(subject=s.title, html=newsletter_html(paragraphs), message_id="<same-story@telecoms.example>"))
    config = write_config(feeds_file, feeds={"telecoms": feed}, newsletters=[
        {"name": "telecoms-letter", "kind": "maildir", "path": str(root)}])
    context = make_context(redis_url, config)
    run_burst(context)  # the feed first
    enqueue_poll(context.poll_queue, "telecoms-letter")  # a mailbox's poll job is the feeds' one
    work(context)
    docs = articles(redis_client)
    assert len(docs) == 1, [d["feed"] for d in docs]
    counters = context.store.counters()
    assert counters["duplicates_exact"] == 1
    assert counters["mails_ok"] == 1


def test_a_digest_of_links_queues_each_linked_article_when_configured(
        site: Site, redis_url: str, redis_client: redis.Redis, feeds_file: Path, tmp_path: Path) -> None:
    stories = [story(n) for n in (31, 32)]
    links = [site.add(f"/news/{s.slug}/", telecoms_page(s)) for s in stories]
    extra = "".join(f'<p><a href="{link}">{s.title}</a></p>' for s, link in zip(stories, links, strict=True))
    root = tmp_path / "Maildir"
    mailbox.Maildir(root, create=True).add(mail_bytes(html=newsletter_html(extra=extra)))
    context = maildir_context(redis_url, feeds_file, root, follow_links=True)
    poll_mailbox("maildir-letters")
    work(context)
    docs = articles(redis_client)
    assert [d["extraction"] for d in docs] == ["newsletter", "precision", "precision"]
    assert [d["text"] for d in docs[1:]] == [s.body_text for s in stories]
    assert all(d["feed"] == "maildir-letters" for d in docs)


def test_a_lightly_edited_newsletter_copy_of_a_feed_story_is_published_marked_duplicate(
        site: Site, redis_url: str, redis_client: redis.Redis, feeds_file: Path, tmp_path: Path) -> None:
    s = story(8)
    link = site.add(f"/news/{s.slug}/", telecoms_page(s))
    feed = site.add("/feed/", rss2("Telecoms.com", [(s, link)]), "application/rss+xml")
    root = tmp_path / "Maildir"
    edited = [*s.body_text.split("\n\n")]
    edited[-1] = edited[-1].replace("investors weighed", "shareholders considered")  # the newsletter's edit
    mailbox.Maildir(root, create=True).add(
        mail_bytes(subject=s.title, html=newsletter_html(edited), message_id="<edited-story@telecoms.example>"))
    config = write_config(feeds_file, feeds={"telecoms": feed}, newsletters=[
        {"name": "telecoms-letter", "kind": "maildir", "path": str(root)}])
    context = make_context(redis_url, config)
    run_burst(context)
    enqueue_poll(context.poll_queue, "telecoms-letter")
    work(context)
    original, copy = articles(redis_client)
    assert (original["feed"], original["duplicate_of"]) == ("telecoms", None)
    assert copy["feed"] == "telecoms-letter" and copy["extraction"] == "newsletter"
    assert copy["duplicate_of"] == original["id"]
    assert "shareholders considered" in copy["text"]


def test_a_newsletters_recurring_paragraph_is_learned_and_stripped_from_later_issues(
        redis_url: str, redis_client: redis.Redis, feeds_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    box = mailbox.Maildir(root, create=True)
    context = maildir_context(redis_url, feeds_file, root)
    sponsor = "This issue is brought to you by Example Fibre: gigabit broadband for every village."
    for n in range(6):
        issue = [f"Issue {n}: operator number {n} announced its results on day {n} of the month, "
                 f"with revenue up {n} per cent.", sponsor, f"Story {n} goes on to explain why the "
                 f"regulator number {n} is reviewing the spectrum licences again this year."]
        box.add(mail_bytes(html=newsletter_html(issue), message_id=f"<issue-{n}@telecoms.example>",
                           subject=f"Daily {n}"))
        poll_mailbox("maildir-letters")
        work(context)
    docs = {doc["title"]: doc for doc in articles(redis_client)}
    assert len(docs) == 6
    for n in range(3):  # seen in fewer than three earlier issues: kept
        assert sponsor in docs[f"Daily {n}"]["text"]
    for n in range(3, 6):
        assert sponsor not in docs[f"Daily {n}"]["text"]
        assert docs[f"Daily {n}"]["boilerplate_removed"] == 1
        assert f"Issue {n}:" in docs[f"Daily {n}"]["text"]  # the story itself stays
