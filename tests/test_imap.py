"""IMAP newsletters against a real dovecot: read once by UID, marked \\Seen, UIDVALIDITY kept in Redis."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.dovecot import PASSWORD, USER, Dovecot
from tests.mailgen import STORY, mail_bytes, newsletter_html
from tests.pipeline_helpers import articles, make_context
from tests.test_mail_sources import assert_clean_newsletter, make_attachment_mail, work, write_config
from worker.jobs import poll_mailbox
from worker.mail.mailboxes import ImapState, MailboxError, poll_imap
from worker.models import NewsletterSource
from worker.pipeline.context import Context


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path).start()
    yield server
    server.stop()


def imap(server: Dovecot) -> imaplib.IMAP4:
    conn = imaplib.IMAP4("127.0.0.1", server.port)
    conn.login(USER, PASSWORD)
    return conn


def append(server: Dovecot, *messages: bytes, folder: str = "INBOX") -> None:
    conn = imap(server)
    if folder != "INBOX":
        conn.create(folder)
    for raw in messages:
        status, _ = conn.append(folder, None, None, raw)
        assert status == "OK"
    conn.logout()


def flags(server: Dovecot, folder: str = "INBOX") -> list[bytes]:
    conn = imap(server)
    conn.select(folder, readonly=True)
    _, data = conn.uid("FETCH", "1:*", "(FLAGS)")
    conn.logout()
    return [item for item in data if item]


def imap_context(redis_url: str, feeds_file: Path, server: Dovecot, monkeypatch: pytest.MonkeyPatch,
                 **extra: object) -> Context:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    config = write_config(feeds_file, newsletters=[{
        "name": "imap-letters", "kind": "imap", "host": "127.0.0.1", "port": server.port, "user": USER,
        "password_env": "TEST_IMAP_PASSWORD", "security": "plain", "max_bytes": 16384, **extra}])
    return make_context(redis_url, config)


def test_imap_newsletters_publish_once_and_are_marked_seen(
        dovecot: Dovecot, redis_url: str, redis_client: redis.Redis, feeds_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = mail_bytes(subject="Second letter", html=newsletter_html(list(reversed(STORY))),
                       message_id="<story-2@telecoms.example>")
    append(dovecot, mail_bytes(html=newsletter_html()), other)
    context = imap_context(redis_url, feeds_file, dovecot, monkeypatch)
    assert poll_mailbox("imap-letters") == {"source": "imap-letters", "outcome": "ok", "new": 2}
    work(context)
    docs = articles(redis_client)
    assert [d["title"] for d in docs] == ["Operators pool rural masts", "Second letter"]
    assert_clean_newsletter(docs[0], "imap-letters")
    assert all(b"\\Seen" in line for line in flags(dovecot))
    validity, last = context.store.imap_state("imap-letters")
    assert validity and last == 2
    # nothing is read twice, even if the user marks the mail unread again
    conn = imap(dovecot)
    conn.select("INBOX")
    conn.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
    conn.logout()
    assert poll_mailbox("imap-letters")["new"] == 0
    append(dovecot, mail_bytes(subject="Third", html=newsletter_html(STORY[:2]), message_id="<story-3@x>"))
    assert poll_mailbox("imap-letters")["new"] == 1
    work(context)
    assert [d["title"] for d in articles(redis_client)][-1] == "Third"


def test_new_uidvalidity_rereads_but_message_ids_keep_it_once(
        dovecot: Dovecot, redis_url: str, redis_client: redis.Redis, feeds_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    append(dovecot, mail_bytes(html=newsletter_html()))
    context = imap_context(redis_url, feeds_file, dovecot, monkeypatch)
    poll_mailbox("imap-letters")
    validity, _ = context.store.imap_state("imap-letters")
    context.store.set_imap_state("imap-letters", validity - 1, 1)  # as if the folder had been recreated
    assert poll_mailbox("imap-letters")["new"] == 1
    work(context)
    assert len(articles(redis_client)) == 1


def test_imap_bad_mail_is_refused_on_the_status_and_the_rest_lands(
        dovecot: Dovecot, redis_url: str, redis_client: redis.Redis, feeds_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    append(dovecot, make_attachment_mail(40_000),
           mail_bytes(html=newsletter_html(), message_id="<loop@x>", headers={"X-Loop": "feedstream"}),
           mail_bytes(html=newsletter_html()))
    context = imap_context(redis_url, feeds_file, dovecot, monkeypatch)
    assert poll_mailbox("imap-letters")["new"] == 3
    # the huge one is refused by its IMAP size before its body is fetched
    assert context.store.feed_status("imap-letters")["last_refused"].startswith("mail: message is ")
    assert "over the 16384-byte limit (imap:INBOX/" in context.store.feed_status("imap-letters")["last_refused"]
    work(context)
    [doc] = articles(redis_client)
    assert_clean_newsletter(doc, "imap-letters")
    status = context.store.feed_status("imap-letters")
    assert status["mails_refused"] == "2"
    assert status["last_refused"] == "mail: mail loop: the message carries our own X-Loop: feedstream header"
    assert all(b"\\Seen" in line for line in flags(dovecot))  # all three handled, none left behind


def test_wrong_password_is_a_clear_error_on_the_status(
        dovecot: Dovecot, redis_url: str, redis_client: redis.Redis, feeds_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    context = imap_context(redis_url, feeds_file, dovecot, monkeypatch)
    context.mail_passwords["imap-letters"] = "wrong"
    result = poll_mailbox("imap-letters")
    assert result["outcome"].startswith("fetch: imap 127.0.0.1")
    status = context.store.feed_status("imap-letters")
    assert "AUTHENTICATIONFAILED" in status["last_error"] or "failed" in status["last_error"].lower()


def test_imaps_with_certificate_verification(tmp_path: Path) -> None:
    server = Dovecot(tmp_path, tls=True).start()
    try:
        append(server, mail_bytes(html=newsletter_html()))
        source = NewsletterSource(name="tls", kind="imap", host="127.0.0.1", port=server.tls_port, user=USER,
                                  security="tls")
        trusted = ssl.create_default_context(cafile=str(server.cert))
        got: list[bytes | None] = []
        states: list[ImapState] = []
        count = poll_imap(source, PASSWORD, ImapState(None, 0), lambda raw, size, origin: got.append(raw),
                          states.append, ssl_context=trusted)
        assert count == 1 and got[0] and b"story-1@telecoms.example" in got[0]
        assert states[-1].last_uid == 1
        # STARTTLS on the plain port reads the same mailbox (nothing new: the state says UID 1 was read)
        starttls = NewsletterSource(name="starttls", kind="imap", host="127.0.0.1", port=server.port, user=USER,
                                    security="starttls")
        assert poll_imap(starttls, PASSWORD, states[-1], lambda *a: got.append(None), states.append,
                         ssl_context=trusted) == 0
        assert poll_imap(starttls, PASSWORD, ImapState(None, 0), lambda raw, size, origin: got.append(raw),
                         states.append, ssl_context=trusted) == 1
        assert got[-1] == got[0]
        # an untrusted certificate is refused, not read
        with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
            poll_imap(source, PASSWORD, ImapState(None, 0), lambda *a: None, lambda s: None)
    finally:
        server.stop()
