"""RQ entry points. The only place the stages are wired together.

Job arguments are plain values (feed names, entry dicts). Each worker process
builds one ``Context`` from its settings when it starts (``install_context``)
and every job in that process uses it.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError

from .dedupe import article_id, canonical_url, guid_key, message_id_key, text_key, url_key
from .errors import ExtractError, FetchError, MailError, NotModified, ParseError
from .extract import decode_html, extract_article, text_from_html_fragment
from .feeds import parse_feed
from .http import HttpClient
from .mailsources import ImapState, poll_imap, poll_maildir
from .models import Article, Entry, Feed, Newsletter, NewsletterSource
from .newsletter import parse_newsletter
from .settings import Settings, load_feeds, load_newsletters
from .store import Store, connect

log = logging.getLogger("feedstream.jobs")

POLL_QUEUE = "poll"
EXTRACT_QUEUE = "extract"
# Articles per extract job: large enough that RQ's per-job cost (a few Redis round
# trips) is small next to extraction, small enough that a retry redoes little.
EXTRACT_BATCH = 8
POLL_TIMEOUT = 120
MAX_BACKOFF = 6 * 3600
# A server's Retry-After is honoured up to a day; beyond that it is more likely a
# mistake than a plan, and the feed would silently stop.
MAX_RETRY_AFTER = 24 * 3600
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclass
class Context:
    """What jobs in one worker process share: settings, feeds, Redis, HTTP."""

    settings: Settings
    feeds: dict[str, Feed]
    store: Store
    http: HttpClient
    poll_queue: Queue
    extract_queue: Queue
    newsletters: dict[str, NewsletterSource] = field(default_factory=dict)
    # IMAP passwords by source name, read from the env vars the sources name when the process starts
    mail_passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, redis_url: str) -> Context:
        """Connect to Redis and read the feeds file; raises ConfigError."""
        client = connect(redis_url)
        feeds = {feed.name: feed for feed in load_feeds(settings.feeds_path)}
        store = Store(client, stream=settings.stream, prefix=settings.prefix,
                      claim_ttl=settings.dedupe_days * 86400, stream_maxlen=settings.stream_maxlen)
        newsletters = {source.name: source for source in load_newsletters(settings.feeds_path)}
        passwords = {source.name: os.environ.get(source.password_env, "")
                     for source in newsletters.values() if source.password_env}
        return cls(settings, feeds, store, HttpClient(settings.http),
                   Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client),
                   newsletters, passwords)


_context: Context | None = None


def install_context(context: Context) -> None:
    """Make ``context`` the one every job in this process uses."""
    global _context
    _context = context


def current_context() -> Context:
    """The process's context; built from the environment once if no one installed it."""
    global _context
    if _context is None:
        settings = Settings.from_env()
        if not settings.redis_url:
            raise RuntimeError("REDIS_URL must be set for a worker started outside feedstream")
        _context = Context.build(settings, settings.redis_url)
    return _context


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- enqueueing ---------------------------------------------------------------------

def enqueue_poll(queue: Queue, feed_name: str) -> bool:
    """Queue a poll of the feed unless one is already queued or running (RQ unique job id)."""
    try:
        queue.enqueue(
            poll_feed, feed_name, job_id=f"poll-{feed_name}", unique=True,
            job_timeout=POLL_TIMEOUT, result_ttl=0, failure_ttl=60,
            description=f"poll {feed_name}",
        )
    except DuplicateJobError:
        return False
    return True


def _batches(items: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def enqueue_extracts(context: Context, entries: Sequence[Entry]) -> int:
    """Queue extract jobs for new entries, several per job, in one round trip."""
    deadline = context.settings.http.deadline
    jobs = [
        Queue.prepare_data(
            extract_entries,
            args=([entry.to_dict() for entry in batch],),
            timeout=int(len(batch) * (deadline + 10) + 30),
            result_ttl=3600,
            failure_ttl=7 * 86400,
            retry=Retry(max=2, interval=[5, 30]),
            description=f"extract {len(batch)} from {batch[0].feed}",
        )
        for batch in _batches(entries, EXTRACT_BATCH)
    ]
    if jobs:
        with context.store.redis.pipeline() as pipe:
            context.extract_queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


# -- poll ---------------------------------------------------------------------------

def _next_poll_after_error(feed: Feed, errors: int, retry_after: float | None) -> float:
    backoff = min(feed.interval * (2 ** max(errors - 1, 0)), MAX_BACKOFF) * random.uniform(0.9, 1.1)
    return max(backoff, min(retry_after or 0.0, MAX_RETRY_AFTER))


def poll_feed(feed_name: str) -> dict[str, Any]:
    """Fetch one feed, find entries it has not listed before, queue their extraction."""
    context = current_context()
    store = context.store
    feed = context.feeds.get(feed_name)
    if feed is None and feed_name in context.newsletters:  # a mailbox shares the feeds' schedule
        return poll_mailbox(feed_name)
    if feed is None:
        return {"feed": feed_name, "outcome": "unknown feed (removed from the feeds file?)"}
    now = time.time()
    etag, last_modified = store.validators(feed.name)
    base = {"url": feed.url, "last_poll": _iso(now)}
    try:
        fetched = context.http.get(feed.url, etag=etag, last_modified=last_modified, accept=FEED_ACCEPT)
        parsed = parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
    except NotModified:
        store.record_poll(feed.name, {**base, "last_status": 304, "last_success": _iso(now),
                                      "last_new": 0}, error=False)
        store.schedule(feed.name, now + feed.interval)
        store.count({"polls_not_modified": 1})
        return {"feed": feed.name, "outcome": "not modified"}
    except (FetchError, ParseError) as exc:
        errors = int(store.feed_status(feed.name).get("consecutive_errors", "0")) + 1
        status = getattr(exc, "status", None)
        delay = _next_poll_after_error(feed, errors, getattr(exc, "retry_after", None))
        store.record_poll(feed.name, {**base, "last_status": status or "error", "last_error": str(exc),
                                      "next_poll": _iso(now + delay)}, error=True)
        store.schedule(feed.name, now + delay)
        store.count({"polls_failed": 1})
        log.warning("%s: %s", feed.name, exc)
        return {"feed": feed.name, "outcome": str(exc)}

    entries = parsed.entries
    for entry in entries:
        entry.feed = feed.name
        entry.tags = list(dict.fromkeys([*entry.tags, *feed.tags]))
    keys = [guid_key(feed.name, entry.guid) for entry in entries]
    new = [entry for entry, unseen in zip(entries, store.unseen(feed.name, keys), strict=True) if unseen]
    # Queue the work before marking the GUIDs seen: a crash in between re-queues
    # them on the next poll, and the publish claim keeps that from doubling.
    enqueue_extracts(context, new)
    store.mark_seen(feed.name, keys, now)
    fields: dict[str, str | int | float] = {
        **base, "last_status": fetched.status, "last_success": _iso(now), "last_new": len(new),
        "next_poll": _iso(now + feed.interval), "title": parsed.title or "",
    }
    if parsed.warning:
        fields["last_warning"] = f"parse: {parsed.warning}"
    fields.update({k: v for k, v in (("etag", fetched.etag), ("last_modified", fetched.last_modified)) if v})
    store.record_poll(feed.name, fields, error=False,
                      clear=[k for k, v in (("etag", fetched.etag), ("last_modified", fetched.last_modified),
                                            ("last_warning", parsed.warning)) if not v])
    store.add_feed_count(feed.name, "entries_seen", len(new))
    store.schedule(feed.name, now + feed.interval)
    store.count({"polls_ok": 1, "entries_new": len(new)})
    return {"feed": feed.name, "outcome": "ok", "entries": len(entries), "new": len(new)}


# -- extract and publish --------------------------------------------------------------

class PagesUnavailable(Exception):
    """Some pages failed for reasons that may pass; RQ retries the job (published ones are skipped)."""


def _article_from_page(context: Context, entry: Entry) -> Article:
    fetched = context.http.get(entry.url, accept=PAGE_ACCEPT)
    html = decode_html(fetched.body, fetched.content_type)
    page = extract_article(html, url=fetched.url, entry_title=entry.title, entry_tags=entry.tags)
    url = canonical_url(fetched.url)
    return Article(
        id=article_id(url), url=url, title=page.title or entry.title, text=page.text, feed=entry.feed,
        published=entry.published or page.published, author=page.author or entry.author,
        language=page.language, guid=entry.guid, tags=entry.tags, extraction="page",
    )


def _article_from_feed(entry: Entry, reason: str | None) -> Article:
    url = canonical_url(entry.url)
    text = text_from_html_fragment(entry.content_html or entry.summary_html or "")
    return Article(
        id=article_id(url), url=url, title=entry.title, text=text, feed=entry.feed,
        published=entry.published, author=entry.author, guid=entry.guid, tags=entry.tags,
        extraction="feed", fallback_reason=reason,
    )


def extract_entries(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Fetch, extract and publish each entry exactly once; fall back to the feed's content."""
    context = current_context()
    job = get_current_job()
    final_attempt = job is None or not job.retries_left
    counts = {"published": 0, "already": 0, "duplicates": 0, "fallbacks": 0, "deferred": 0}
    deferred: list[str] = []
    for raw in entries:
        entry = Entry.from_dict(raw)
        entry_key = url_key(entry.url)
        if context.store.published_id(entry_key):
            counts["already"] += 1
            continue
        feed = context.feeds.get(entry.feed)
        reason: str | None = None
        article: Article | None = None
        if feed is None or feed.full_text:
            try:
                article = _article_from_page(context, entry)
            except FetchError as exc:
                if exc.transient and not final_attempt:
                    deferred.append(f"{entry.url}: {exc}")
                    continue
                reason = str(exc)
            except ExtractError as exc:
                reason = str(exc)
            except Exception as exc:  # a bug or a pathological page must not lose the entry
                log.exception("extracting %s", entry.url)
                reason = f"extract: unexpected {type(exc).__name__}: {exc}"
        if article is None:
            article = _article_from_feed(entry, reason)
            counts["fallbacks"] += 1
        keys = list(dict.fromkeys([url_key(article.url), entry_key]))
        article.fetched_at = _iso(time.time())
        result = context.store.publish(article, url_keys=keys, text_key=text_key(article.text))
        if result.outcome == "published":
            counts["published"] += 1
        elif result.outcome == "already":
            counts["already"] += 1
        else:
            counts["duplicates"] += 1
    context.store.count({"fallbacks": counts["fallbacks"], "retried_pages": len(deferred)})
    if deferred:
        counts["deferred"] = len(deferred)
        raise PagesUnavailable(f"fetch: {len(deferred)} page(s) will be retried: " + "; ".join(deferred[:3]))
    return counts


# -- newsletters --------------------------------------------------------------------

MAIL_QUEUE = EXTRACT_QUEUE  # mail jobs ride the extract queue, which every worker already serves


def enqueue_mail(queue: Queue, source_name: str, raw: bytes, origin: str = "") -> str:
    """Queue one received email (its bytes) for :func:`ingest_mail`; returns the job id."""
    job = queue.enqueue(
        ingest_mail, source_name, raw, origin, job_timeout=120, result_ttl=3600, failure_ttl=7 * 86400,
        retry=Retry(max=2, interval=[5, 30]), description=f"mail for {source_name} ({origin or 'smtp'})",
    )
    return job.id


def newsletter_article(source: NewsletterSource, letter: Newsletter) -> Article:
    """The stream's article for a newsletter: id from its Message-ID, url ``mid:<Message-ID>`` (RFC 2392)."""
    mid = letter.message_id or f"{letter.author_address}/{letter.published}/{letter.title}"
    key = message_id_key(mid)
    return Article(
        id=key, url=f"mid:{quote(mid, safe='@.-_!$&*+=^`{|}~')}", title=letter.title, text=letter.text,
        feed=source.name, published=letter.published, author=letter.author, guid=letter.message_id,
        tags=list(source.tags), extraction="newsletter", list_id=letter.list_id,
    )


def ingest_mail(source_name: str, raw: bytes, origin: str = "") -> dict[str, Any]:
    """Read one email, publish it once (Message-ID and text claims), record the outcome on the source."""
    context = current_context()
    store = context.store
    source = context.newsletters.get(source_name)
    if source is None:
        return {"source": source_name, "outcome": "unknown newsletter source (removed from the feeds file?)"}
    now = time.time()
    base = {"kind": source.kind, "last_mail": _iso(now), "last_origin": origin or "smtp"}
    try:
        letter = parse_newsletter(raw, max_bytes=source.max_bytes)
    except MailError as exc:
        # last_refused stays when later mail succeeds (last_error is cleared then, as for feeds)
        store.record_poll(source.name, {**base, "last_status": "refused", "last_error": str(exc),
                                        "last_refused": str(exc)}, error=True)
        store.add_feed_count(source.name, "mails_refused", 1)
        store.count({"mails_refused": 1})
        log.warning("%s: %s (%s)", source.name, exc, origin)
        return {"source": source.name, "outcome": str(exc)}
    article = newsletter_article(source, letter)
    article.fetched_at = _iso(now)
    result = store.publish(article, url_keys=[], text_key=text_key(article.text),
                           message_key=message_id_key(letter.message_id) if letter.message_id else article.id)
    store.record_poll(source.name, {**base, "last_status": result.outcome, "last_success": _iso(now),
                                    "title": letter.list_id or source.name}, error=False)
    store.count({"mails_ok": 1})
    if result.outcome == "published":
        store.add_feed_count(source.name, "mails_published", 1)
    followed = 0
    if source.follow_links and letter.links and result.outcome == "published":
        # a digest: each linked article becomes an entry of this source, extracted like a feed's
        entries = [Entry(guid=link, url=link, feed=source.name, tags=list(source.tags)) for link in letter.links]
        keys = [guid_key(source.name, entry.guid) for entry in entries]
        new = [e for e, unseen in zip(entries, store.unseen(source.name, keys), strict=True) if unseen]
        enqueue_extracts(context, new)
        store.mark_seen(source.name, keys, now)
        followed = len(new)
    return {"source": source.name, "outcome": result.outcome, "id": article.id,
            "duplicate_of": result.duplicate_of, "links_queued": followed}


def record_mail_refused(store: Store, source: NewsletterSource, message: str) -> None:
    """Record on the source's status a message refused before it was read (too large at SMTP or in a mailbox)."""
    store.record_poll(source.name, {"kind": source.kind, "last_mail": _iso(time.time()), "last_status": "refused",
                                    "last_error": message, "last_refused": message}, error=True)
    store.add_feed_count(source.name, "mails_refused", 1)
    store.count({"mails_refused": 1})


def _queue_or_refuse(context: Context, source: NewsletterSource, raw: bytes | None, size: int, origin: str) -> None:
    if raw is None:  # over the limit: never read, so the refusal is recorded here
        message = f"mail: message is {size} bytes, over the {source.max_bytes}-byte limit ({origin})"
        record_mail_refused(context.store, source, message)
        return
    enqueue_mail(context.extract_queue, source.name, raw, origin)


def poll_mailbox(source_name: str) -> dict[str, Any]:
    """Read the new mail of an IMAP or Maildir source and queue each message for :func:`ingest_mail`."""
    context = current_context()
    store = context.store
    source = context.newsletters[source_name]
    now = time.time()

    def handle(raw: bytes | None, size: int, origin: str) -> None:
        _queue_or_refuse(context, source, raw, size, origin)

    try:
        if source.kind == "maildir":
            count = poll_maildir(source, handle)
        elif source.kind == "imap":
            validity, last = store.imap_state(source.name)
            count = poll_imap(source, context.mail_passwords.get(source.name, ""), ImapState(validity, last), handle,
                              lambda state: store.set_imap_state(source.name, state.uidvalidity or 0, state.last_uid))
        else:
            return {"source": source.name, "outcome": f"{source.kind} sources are not polled"}
    except FetchError as exc:
        store.record_poll(source.name, {"kind": source.kind, "last_poll": _iso(now), "last_status": "error",
                                        "last_error": str(exc)}, error=True)
        store.schedule(source.name, now + source.interval)
        return {"source": source.name, "outcome": str(exc)}
    store.record_poll(source.name, {"kind": source.kind, "last_poll": _iso(now), "last_new": count}, error=False,
                      clear=["last_error"])
    store.schedule(source.name, now + source.interval)
    return {"source": source.name, "outcome": "ok", "new": count}
