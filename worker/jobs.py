"""RQ entry points. The only place the stages are wired together.

Job arguments are plain values (feed names, entry dicts). Each worker process
builds one ``Context`` from its settings when it starts (``install_context``)
and every job in that process uses it.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError

from . import boilerplate
from .dedupe import article_id, canonical_url, guid_key, text_key, url_key
from .errors import ExtractError, FetchError, NotModified, ParseError
from .extract import decode_html, detect_language, extract_article, text_from_html_fragment
from .feeds import parse_feed
from .http import HttpClient
from .models import Article, Entry, Feed, Fetched
from .settings import Settings, load_feeds
from .store import Store, connect

log = logging.getLogger("feedstream.jobs")
_WORDS = re.compile(r"\w+")  # word_count counts as extract does

POLL_QUEUE = "poll"
EXTRACT_QUEUE = "extract"
# Articles per extract job: large enough that RQ's per-job cost (a few Redis round
# trips) is small next to extraction, small enough that a retry redoes little.
EXTRACT_BATCH = 8
# Page downloads in flight per extract job; a batch's pages (at most EXTRACT_BATCH bodies,
# each under the size cap) may be held in memory at once.
PAGE_PREFETCH = 3
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

    @classmethod
    def build(cls, settings: Settings, redis_url: str) -> Context:
        """Connect to Redis and read the feeds file; raises ConfigError."""
        client = connect(redis_url)
        feeds = {feed.name: feed for feed in load_feeds(settings.feeds_path)}
        store = Store(client, stream=settings.stream, prefix=settings.prefix,
                      claim_ttl=settings.dedupe_days * 86400, stream_maxlen=settings.stream_maxlen)
        return cls(settings, feeds, store, HttpClient(settings.http),
                   Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client))


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
            result_ttl=0,  # a finished batch leaves nothing behind: its counts are in the counters
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


def _fetch_page(context: Context, entry: Entry) -> Fetched:
    return context.http.get(entry.url, accept=PAGE_ACCEPT)


def _article_from_page(entry: Entry, fetched: Fetched) -> Article:
    html = decode_html(fetched.body, fetched.content_type)
    page = extract_article(html, url=fetched.url, entry_title=entry.title, entry_tags=entry.tags,
                           entry_author=entry.author, entry_published=entry.published,
                           feed_html=entry.content_html or entry.summary_html)
    url = canonical_url(fetched.url)
    return Article(
        id=article_id(url), url=url, title=page.title or entry.title, text=page.text, feed=entry.feed,
        published=page.published or entry.published, author=page.author or entry.author,
        language=page.language, guid=entry.guid, tags=list(dict.fromkeys([*entry.tags, *page.tags])),
        extraction=page.extraction, authors=page.authors or ([entry.author] if entry.author else []),
        updated=page.updated, categories=page.categories, image=page.image, sitename=page.sitename,
        description=page.description, word_count=page.word_count, markdown=page.markdown,
    )


def _article_from_feed(entry: Entry, reason: str | None) -> Article:
    url = canonical_url(entry.url)
    text = text_from_html_fragment(entry.content_html or entry.summary_html or "")
    return Article(
        id=article_id(url), url=url, title=entry.title, text=text, feed=entry.feed,
        published=entry.published, author=entry.author, guid=entry.guid, tags=entry.tags,
        extraction="feed", fallback_reason=reason,
        authors=[entry.author] if entry.author else [], word_count=len(_WORDS.findall(text)), markdown=text,
        language=detect_language(text),
    )


def _strip_learned_boilerplate(store: Store, article: Article) -> None:
    """Drop paragraphs this feed's earlier articles carried too (publisher boilerplate); learn this one's."""
    paragraphs = article.text.split("\n\n")
    fps = boilerplate.fingerprints(paragraphs)
    kept, removed = boilerplate.strip_paragraphs(paragraphs, store.learn_boilerplate(article.feed, article.id, fps,
                                                                                     time.time()))
    if removed:
        article.text = "\n\n".join(kept)
        article.markdown = boilerplate.strip_markdown(article.markdown, removed)
        article.word_count = len(_WORDS.findall(article.text))
        article.boilerplate_removed = len(removed)


def _article_or_reason(
    entry: Entry, download: Future[Fetched] | None, final_attempt: bool
) -> tuple[Article | None, str | None, bool]:
    """(article from the page, or None and why not, and whether to retry the page later)."""
    if download is None:  # the feed is configured to publish its own content
        return None, None, False
    try:
        return _article_from_page(entry, download.result()), None, False
    except FetchError as exc:
        return None, str(exc), exc.transient and not final_attempt
    except ExtractError as exc:
        return None, str(exc), False
    except Exception as exc:  # a bug or a pathological page must not lose the entry
        log.exception("extracting %s", entry.url)
        return None, f"extract: unexpected {type(exc).__name__}: {exc}", False


def extract_entries(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Fetch, extract and publish each entry exactly once; fall back to the feed's content."""
    context = current_context()
    job = get_current_job()
    final_attempt = job is None or not job.retries_left
    counts = {"published": 0, "already": 0, "duplicates": 0, "fallbacks": 0, "deferred": 0}
    deferred: list[str] = []
    pending: list[tuple[Entry, str]] = []
    batch = [Entry.from_dict(raw) for raw in entries]
    keys = [url_key(entry.url) for entry in batch]
    for entry, entry_key, owner in zip(batch, keys, context.store.published_ids(keys), strict=True):
        if owner:
            counts["already"] += 1
        else:
            pending.append((entry, entry_key))
    # Pages download in background threads while this one extracts: the network wait
    # hides behind the CPU-bound extraction instead of idling the core (issue 7).
    with ThreadPoolExecutor(max_workers=PAGE_PREFETCH, thread_name_prefix="prefetch") as fetcher:
        downloads = {
            entry_key: fetcher.submit(_fetch_page, context, entry)
            for entry, entry_key in pending
            if (feed := context.feeds.get(entry.feed)) is None or feed.full_text
        }
        for entry, entry_key in pending:
            article, reason, transient = _article_or_reason(entry, downloads.get(entry_key), final_attempt)
            if transient:
                deferred.append(f"{entry.url}: {reason}")
                continue
            if article is None:
                article = _article_from_feed(entry, reason)
                counts["fallbacks"] += 1
            _strip_learned_boilerplate(context.store, article)
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
