"""Reading mail from a Maildir or an IMAP mailbox, each message exactly once.

No Redis here: the caller hands each message's bytes to a callback (the job
enqueues it) and, for IMAP, keeps the UID state (worker/store.py). A message
is marked read only after the callback returned, so a crash in between reads
it again next time and the Message-ID claim keeps that from publishing twice.

Messages over the source's size limit are not read at all: the callback gets
``None`` and the size, and the message is marked read like the others (it stays
in the mailbox; nothing is deleted).
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.errors import FetchError
from worker.models import NewsletterSource

# (raw bytes or None when over the limit, size in bytes, where it came from)
Handler = Callable[[bytes | None, int, str], None]


class MailboxError(FetchError):
    """The mailbox could not be reached or read (connection, login, folder)."""


# -- Maildir ---------------------------------------------------------------------------

def poll_maildir(source: NewsletterSource, handle: Handler, limit: int = 500) -> int:
    """Hand every unread message of the Maildir to ``handle``, then file it as read; returns how many.

    Unread: in ``new/``, or in ``cur/`` without the ``S`` (seen) flag. Read
    messages move to ``cur/`` with ``S`` added to their info, the Maildir way
    of saying "seen" that every mail client understands. The stdlib ``mailbox``
    lists and reads the messages; the move is a plain ``os.rename`` because
    ``Maildir.__setitem__`` (the only flag update in Python 3.11) rewrites the
    whole file, and a rename is atomic.
    """
    root = Path(source.path or "")
    try:
        box = mailbox.Maildir(root, factory=None, create=False)
        names = [("new", n) for n in sorted(os.listdir(root / "new"))]
        names += [("cur", n) for n in sorted(os.listdir(root / "cur")) if "S" not in _flags(n)]
    except (OSError, mailbox.Error) as exc:
        raise MailboxError(f"cannot read Maildir {root}: {exc}") from None
    done = 0
    for subdir, name in names[:limit]:
        if name.startswith("."):
            continue
        current = root / subdir / name
        try:
            size = current.stat().st_size
        except FileNotFoundError:  # another poller took it
            continue
        raw = None
        if size <= source.max_bytes:
            try:
                raw = box.get_bytes(name.split(":", 1)[0])  # re-lists the folders when the key is new to it
            except KeyError:  # taken by another poller meanwhile
                continue
        handle(raw, size, f"maildir:{subdir}/{name}")
        base = name.split(":", 1)[0]
        try:
            os.rename(current, root / "cur" / f"{base}:2,{''.join(sorted(set(_flags(name)) | {'S'}))}")
        except FileNotFoundError:  # another poller filed it first; the Message-ID claim keeps it once
            continue
        done += 1
    return done


def _flags(name: str) -> str:
    _, sep, info = name.partition(":2,")
    return info if sep else ""


# -- IMAP ------------------------------------------------------------------------------

@dataclass
class ImapState:
    """Where the last poll stopped: UIDs are only comparable under one UIDVALIDITY."""

    uidvalidity: int | None
    last_uid: int


_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UID = re.compile(rb"UID (\d+)")
IMAP_TIMEOUT = 30.0


def _connect(source: NewsletterSource, password: str, ssl_context: ssl.SSLContext | None) -> imaplib.IMAP4:
    host, port = source.host or "", source.port or (993 if source.security == "tls" else 143)
    context = ssl_context or ssl.create_default_context()
    if source.security == "tls":
        conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=IMAP_TIMEOUT)
    else:
        conn = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT)
        if source.security == "starttls":
            conn.starttls(ssl_context=context)
    conn.login(source.user or "", password)
    return conn


def poll_imap(source: NewsletterSource, password: str, state: ImapState, handle: Handler,
              save: Callable[[ImapState], None], *, limit: int = 500,
              ssl_context: ssl.SSLContext | None = None) -> int:
    """Hand each message with a UID above ``state.last_uid`` to ``handle``; mark it \\Seen; returns how many.

    After each message ``save`` gets the new state, so what was handed over is
    never read again. A new UIDVALIDITY (the folder was recreated) starts again
    from UID 1; the Message-ID claim drops what was already published.
    """
    try:
        conn = _connect(source, password, ssl_context)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise MailboxError(f"imap {source.host}:{source.port}: {exc}", transient=True) from None
    try:
        status, _ = conn.select(_quote(source.folder))
        if status != "OK":
            raise MailboxError(f"imap: cannot select folder {source.folder!r}")
        validity_raw = conn.response("UIDVALIDITY")[1]
        validity = int(validity_raw[0]) if validity_raw and validity_raw[0] else 0
        last = state.last_uid if state.uidvalidity == validity else 0
        status, data = conn.uid("SEARCH", None, f"UID {last + 1}:*")
        if status != "OK":
            raise MailboxError(f"imap: UID SEARCH failed: {data!r}")
        # "n:*" always matches the highest UID even when it is below n
        uids = sorted(u for u in (int(x) for x in (data[0] or b"").split()) if u > last)[:limit]
        done = 0
        for uid in uids:
            size = _fetch_size(conn, uid)
            raw = _fetch_body(conn, uid) if size <= source.max_bytes else None
            handle(raw, size, f"imap:{source.folder}/{validity}/{uid}")
            conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
            save(ImapState(validity, uid))
            done += 1
        return done
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise MailboxError(f"imap {source.host}: {exc}", transient=True) from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fetch_size(conn: imaplib.IMAP4, uid: int) -> int:
    status, data = conn.uid("FETCH", str(uid), "(RFC822.SIZE)")
    for item in data or []:
        line = item[0] if isinstance(item, tuple) else item
        match = _SIZE.search(line or b"")
        if status == "OK" and match:
            return int(match.group(1))
    raise MailboxError(f"imap: no size for UID {uid}: {data!r}")


def _fetch_body(conn: imaplib.IMAP4, uid: int) -> bytes:
    # BODY.PEEK: reading does not set \Seen; we set it ourselves once the message is queued
    status, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
    for item in data or []:
        if isinstance(item, tuple) and len(item) >= 2 and isinstance(item[1], bytes):
            return item[1]
    raise MailboxError(f"imap: no body for UID {uid}: {status} {data!r}")
