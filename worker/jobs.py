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
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError

from worker.dedupe import boilerplate
from worker.dedupe.keys import (
    article_id,
    canonical_url,
    guid_key,
    message_id_key,
    normalise_text,
    same_site,
    text_key,
    url_key,
)
from worker.dedupe.minhash import PERMUTATIONS, THRESHOLD, signature
from worker.errors import ExtractError, FetchError, HostDeferred, MailError, NotModified, ParseError, RobotsDisallowed
from worker.extract import decode_html, detect_language, extract_article, text_from_html_fragment
from worker.feeds import parse_feed
from worker.fetch import HttpClient, PoliteFetcher, host_of
from worker.mail import parse_newsletter
from worker.mail.mailboxes import ImapState, poll_imap, poll_maildir
from worker.models import Article, Entry, Feed, Fetched, Newsletter, NewsletterSource
from worker.pipeline.schedule import (
    Limits,
    backoff_interval,
    cache_max_age,
    next_interval,
    permanent_target,
    rhythm_interval,
)
from worker.settings import Settings, load_sources
from worker.store import NearKey, PublishRequest, Store, connect
from worker.text import word_count
from worker.timefmt import iso_from_epoch, seconds_since

T = TypeVar("T")
log = logging.getLogger("feedstream.jobs")

POLL_QUEUE = "poll"
EXTRACT_QUEUE = "extract"
# Articles per extract job: large enough that RQ's per-job cost (a few Redis round
# trips) is small next to extraction, small enough that a retry redoes little.
EXTRACT_BATCH = 8
# Page downloads in flight per extract job; a batch's pages (at most EXTRACT_BATCH bodies,
# each under the size cap) may be held in memory at once.
PAGE_PREFETCH = 3
POLL_BATCH = 16
POLL_THREADS = 8
POLL_TIMEOUT = 120
# Each poll ends within its HTTP deadline; a batch runs POLL_THREADS at a time.
POLL_BATCH_TIMEOUT = POLL_TIMEOUT + 60
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
RETIRED_FIELDS = ("retired", "retired_url", "retired_at")
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
    fetcher: PoliteFetcher
    newsletters: dict[str, NewsletterSource] = field(default_factory=dict)
    # IMAP passwords by source name, read from the env vars the sources name when the process starts
    mail_passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, redis_url: str) -> Context:
        """Connect to Redis and read the feeds file; raises ConfigError."""
        client = connect(redis_url)
        sources = load_sources(settings.feeds_path)
        store = Store(client, **settings.store_options())
        http = HttpClient(settings.http)
        fetcher = PoliteFetcher(http, store, host_concurrency=settings.host_concurrency,
                                robots=settings.robots, robots_ttl=settings.robots_ttl)
        return cls(settings, {feed.name: feed for feed in sources.feeds}, store, http,
                   Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client), fetcher,
                   {source.name: source for source in sources.newsletters}, dict(sources.mail_passwords))


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


def enqueue_polls(queue: Queue, feed_names: Sequence[str]) -> int:
    """Queue polls of many due feeds, POLL_BATCH per job, in one round trip; returns the jobs queued.

    One job per feed would spend more on RQ's own bookkeeping (~25 Redis commands
    per job) than a 304 poll costs; :func:`poll_feeds` keeps a feed from being
    polled twice at once with a per-feed lock instead of RQ's unique job id.
    """
    jobs = [
        Queue.prepare_data(
            poll_feeds, args=(list(batch),), timeout=POLL_BATCH_TIMEOUT, result_ttl=0, failure_ttl=60,
            description=f"poll {len(batch)} feed(s): {', '.join(batch[:3])}{', ...' if len(batch) > 3 else ''}",
        )
        for batch in _batches(list(feed_names), POLL_BATCH)
    ]
    if jobs:
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
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
            # A crashed or killed worker counts against these too (RQ retries abandoned jobs),
            # so there are enough that a few crashes in a row still publish the batch. The first
            # retry is immediate: a delayed one waits for RQ's scheduler, whose lock outlives a
            # killed worker that held it by up to 61 s (see worker/rqworker.py).
            retry=Retry(max=4, interval=[0, 10, 30, 60]),
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

def _limits(settings: Settings, feed: Feed) -> Limits:
    low = feed.min_interval or settings.min_interval
    high = max(feed.max_interval or settings.max_interval, low)
    return Limits(min_interval=low, max_interval=high, fallback=feed.interval,
                  max_backoff=max(settings.max_backoff, low))


def _poll_url(feed: Feed, status: dict[str, str]) -> str:
    """The URL to poll: an adopted permanent redirect's, while the configured URL is unchanged."""
    if status.get("adopted_url") and status.get("adopted_from") == feed.url:
        return status["adopted_url"]
    return feed.url


def _track_redirect(context: Context, feed: Feed, status: dict[str, str], url: str,
                    redirects: tuple[tuple[int, str], ...], fields: dict[str, str | int | float]) -> list[str]:
    """Record a permanent redirect seen by this poll; adopt its target once it has held long enough.

    Adds to ``fields`` what to store; returns the status fields to clear.
    """
    target = permanent_target(redirects)
    if target is None or target == url:
        return ["moved_to", "moved_polls"]
    held = int(status.get("moved_polls", "0")) + 1 if status.get("moved_to") == target else 1
    if held >= context.settings.redirect_adopt_after:
        fields.update({"adopted_url": target, "adopted_from": feed.url, "adopted_at": fields["last_poll"]})
        log.info("%s: moved permanently to %s (seen %d polls in a row): adopted", feed.name, target, held)
        return ["moved_to", "moved_polls"]
    fields.update({"moved_to": target, "moved_polls": held})
    return []


def poll_feeds(feed_names: list[str]) -> list[dict[str, Any]]:
    """Poll several feeds at once (threads: the waits overlap); skips any another poll holds."""
    store = current_context().store
    held = store.acquire_polls(feed_names, POLL_BATCH_TIMEOUT + 30)
    try:
        with ThreadPoolExecutor(max_workers=POLL_THREADS, thread_name_prefix="poll") as pool:
            return list(pool.map(_poll_one, held))
    finally:
        store.release_polls(held)


def _poll_one(feed_name: str) -> dict[str, Any]:
    try:
        return poll_feed(feed_name)
    except Exception as exc:  # one feed's bug must not cost the others in the batch their poll
        log.exception("polling %s", feed_name)
        return {"feed": feed_name, "outcome": f"poll: unexpected {type(exc).__name__}: {exc}"}


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
    status = store.feed_status(feed.name)
    url = _poll_url(feed, status)
    if status.get("retired") and status.get("retired_url") == url:
        store.retire(feed.name, {})
        return {"feed": feed.name, "outcome": "retired"}
    limits = _limits(context.settings, feed)
    etag, last_modified = status.get("etag") or None, status.get("last_modified") or None
    base: dict[str, str | int | float] = {"url": url, "last_poll": iso_from_epoch(now)}
    try:
        fetched = context.fetcher.get(url, etag=etag, last_modified=last_modified, accept=FEED_ACCEPT)
        store.count_http("feed", fetched.status)
        parsed = parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
    except HostDeferred as exc:
        # Not the feed's fault: no error counted, just a later slot.
        at = exc.until + random.uniform(0, 5)
        store.record_deferral(feed.name, {"deferred": str(exc), "next_poll": iso_from_epoch(at)})
        store.schedule(feed.name, at)
        store.count({"polls_deferred": 1})
        return {"feed": feed.name, "outcome": str(exc)}
    except NotModified as exc:
        fields = {**base, "last_status": 304, "last_success": iso_from_epoch(now), "last_new": 0}
        clear = _track_redirect(context, feed, status, url, exc.redirects, fields)
        interval = int(status.get("interval") or rhythm_interval([], now, limits))
        interval = min(max(interval, limits.min_interval), limits.max_interval)
        fields["next_poll"] = iso_from_epoch(now + interval)
        store.finish_poll(feed.name, fields, error=False, clear=[*clear, *RETIRED_FIELDS, "deferred"],
                          next_poll=now + interval, counts={"polls_not_modified": 1}, http=("feed", 304))
        return {"feed": feed.name, "outcome": "not modified"}
    except (FetchError, ParseError) as exc:
        http_status = getattr(exc, "status", None)
        if isinstance(exc, FetchError):
            store.count_http("feed", http_status or "error")
        if http_status == 410:
            store.record_poll(feed.name, {**base, "last_status": 410, "last_error": str(exc),
                                          "retired": f"gone: {exc}", "retired_url": url,
                                          "retired_at": iso_from_epoch(now)},
                              error=True)
            store.retire(feed.name, {})
            store.count({"polls_failed": 1, "feeds_retired": 1})
            log.warning("%s: retired: %s", feed.name, exc)
            return {"feed": feed.name, "outcome": f"retired: {exc}"}
        errors = int(status.get("consecutive_errors", "0")) + 1
        delay = backoff_interval(limits, errors, getattr(exc, "retry_after", None))
        store.record_poll(feed.name, {**base, "last_status": http_status or "error", "last_error": str(exc),
                                      "next_poll": iso_from_epoch(now + delay)}, error=True, clear=["deferred"])
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
    interval = next_interval([entry.published for entry in entries], now, limits,
                             max_age=cache_max_age(fetched.headers), ttl_minutes=parsed.ttl_minutes)
    fields: dict[str, str | int | float] = {
        **base, "last_status": fetched.status, "last_success": iso_from_epoch(now), "last_new": len(new),
        "next_poll": iso_from_epoch(now + interval), "interval": interval, "title": parsed.title or "",
    }
    clear = _track_redirect(context, feed, status, url, fetched.redirects, fields)
    if parsed.warning:
        fields["last_warning"] = f"parse: {parsed.warning}"
    fields.update({k: v for k, v in (("etag", fetched.etag), ("last_modified", fetched.last_modified)) if v})
    store.add_feed_count(feed.name, "entries_seen", len(new))
    store.finish_poll(feed.name, fields, error=False,
                      clear=[*clear, *RETIRED_FIELDS, "deferred",
                             *(k for k, v in (("etag", fetched.etag), ("last_modified", fetched.last_modified),
                                              ("last_warning", parsed.warning)) if not v)],
                      next_poll=now + interval, counts={"polls_ok": 1, "entries_new": len(new)})
    return {"feed": feed.name, "outcome": "ok", "entries": len(entries), "new": len(new)}


# -- extract and publish --------------------------------------------------------------

class PagesUnavailable(Exception):
    """Some pages failed for reasons that may pass; RQ retries the job (published ones are skipped)."""


def _fetch_page(context: Context, entry: Entry) -> Fetched:
    return context.fetcher.get(entry.url, accept=PAGE_ACCEPT, page=True)


def _article_from_page(entry: Entry, fetched: Fetched) -> tuple[Article, str | None]:
    """The article from its page, and the page's own canonical link when it names one on the same site."""
    html = decode_html(fetched.body, fetched.content_type)
    page = extract_article(html, url=fetched.url, entry_title=entry.title, entry_tags=entry.tags,
                           entry_author=entry.author, entry_published=entry.published,
                           feed_html=entry.content_html or entry.summary_html)
    url = canonical_url(fetched.url)
    article = Article(
        id=article_id(url), url=url, title=page.title or entry.title, text=page.text, feed=entry.feed,
        published=page.published or entry.published, author=page.author or entry.author,
        language=page.language, guid=entry.guid, tags=list(dict.fromkeys([*entry.tags, *page.tags])),
        extraction=page.extraction, authors=page.authors or ([entry.author] if entry.author else []),
        updated=page.updated, categories=page.categories, image=page.image, sitename=page.sitename,
        description=page.description, word_count=page.word_count, markdown=page.markdown,
    )
    # A page's rel=canonical/og:url is another name for the same article, but only
    # when it points at its own site: a syndicated copy naming the original's
    # site must not take over (or be blocked by) the original's URL claim.
    own = page.canonical_url if page.canonical_url and same_site(page.canonical_url, fetched.url) else None
    return article, own


def near_key(text: str, *, normalised: str | None = None) -> NearKey | None:
    """The article text's entry in the near-duplicate index; None for texts too short to judge."""
    sig = signature(text, normalised=normalised)
    if sig is None:
        return None
    return NearKey(sig.packed(), sig.bands(), min_agree=round(THRESHOLD * PERMUTATIONS))


def _article_from_feed(entry: Entry, reason: str | None) -> Article:
    url = canonical_url(entry.url)
    text = text_from_html_fragment(entry.content_html or entry.summary_html or "")
    return Article(
        id=article_id(url), url=url, title=entry.title, text=text, feed=entry.feed,
        published=entry.published, author=entry.author, guid=entry.guid, tags=entry.tags,
        extraction="feed", fallback_reason=reason,
        authors=[entry.author] if entry.author else [], word_count=word_count(text), markdown=text,
        language=detect_language(text),
    )


def _strip_learned_boilerplate(store: Store, articles: Sequence[Article]) -> list[list[str]]:
    """Drop paragraphs each feed's earlier published articles carried too (publisher boilerplate).

    Reads the counts for all of ``articles`` in one round trip and returns each article's
    fingerprints, which its publish counts (so only published articles teach the feed).
    """
    paragraphs = [article.text.split("\n\n") for article in articles]
    fingerprints = [boilerplate.fingerprints(paras) for paras in paragraphs]
    counts = store.boilerplate_counts_many([(article.feed, fps) for article, fps in zip(articles, fingerprints,
                                                                                          strict=True)])
    for article, paras, known in zip(articles, paragraphs, counts, strict=True):
        kept, removed = boilerplate.strip_paragraphs(paras, known)
        if removed:
            article.text = "\n\n".join(kept)
            article.markdown = boilerplate.strip_markdown(article.markdown, removed)
            article.word_count = word_count(article.text)
            article.boilerplate_removed = len(removed)
    return fingerprints


@dataclass
class _PageOutcome:
    article: Article | None = None
    canonical: str | None = None  # the page's own canonical URL, when on the same site
    reason: str | None = None  # why there is no article from the page
    retry: bool = False  # the page may come later: leave the entry to RQ's retry
    http: int | str | None = None  # the page request's HTTP status ("error": no answer); None: no request


def _page_outcome(entry: Entry, download: Future[Fetched] | None, final_attempt: bool) -> _PageOutcome:
    """The article from the downloaded page, or why there is none (HostDeferred passes through)."""
    if download is None:  # the feed is configured to publish its own content
        return _PageOutcome()
    try:
        fetched = download.result()
    except HostDeferred:
        raise  # the caller queues the entry again for when the host lets us back
    except RobotsDisallowed as exc:  # no request was made
        return _PageOutcome(reason=str(exc))
    except FetchError as exc:
        return _PageOutcome(reason=str(exc), retry=exc.transient and not final_attempt, http=exc.status or "error")
    except Exception as exc:  # a bug in the fetch path must not lose the entry either
        log.exception("fetching %s", entry.url)
        return _PageOutcome(reason=f"fetch: unexpected {type(exc).__name__}: {exc}")
    try:
        article, canonical = _article_from_page(entry, fetched)
        return _PageOutcome(article=article, canonical=canonical, http=fetched.status)
    except ExtractError as exc:
        return _PageOutcome(reason=str(exc), http=fetched.status)
    except Exception as exc:  # a bug or a pathological page must not lose the entry
        log.exception("extracting %s", entry.url)
        return _PageOutcome(reason=f"extract: unexpected {type(exc).__name__}: {exc}", http=fetched.status)


def _hold_extracts(context: Context, entries: list[dict[str, Any]], until: float) -> None:
    """Queue entries again for when their host lets us back (RQ's scheduler moves the job at ``until``)."""
    deadline = context.settings.http.deadline
    hosts = sorted({host_of(raw.get("url", "")) for raw in entries})
    context.extract_queue.enqueue_at(
        datetime.fromtimestamp(until + random.uniform(0, 5), UTC), extract_entries, entries,
        job_timeout=int(len(entries) * (deadline + 10) + 30), result_ttl=0, failure_ttl=7 * 86400,
        retry=Retry(max=2, interval=[5, 30]),
        description=f"extract {len(entries)} held back by {', '.join(hosts)[:80]}",
    )


_prefetch: tuple[int, ThreadPoolExecutor] | None = None


def _prefetch_pool() -> ThreadPoolExecutor:
    """This process's page-download threads, kept from job to job (a pool per job cost ~1% of a worker's time).

    Made on first use in each process: threads do not survive the fork that starts a worker.
    """
    global _prefetch
    if _prefetch is None or _prefetch[0] != os.getpid():
        _prefetch = (os.getpid(), ThreadPoolExecutor(max_workers=PAGE_PREFETCH, thread_name_prefix="prefetch"))
    return _prefetch[1]


def extract_entries(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Fetch, extract and publish each entry exactly once; fall back to the feed's content."""
    context = current_context()
    job = get_current_job()
    final_attempt = job is None or not job.retries_left
    counts = {"published": 0, "already": 0, "duplicates": 0, "near_duplicates": 0, "fallbacks": 0, "deferred": 0}
    deferred: list[str] = []
    pending: list[tuple[Entry, str]] = []
    ready: list[tuple[Article, list[str]]] = []  # extracted (or from the feed), with their URL claims
    held: list[dict[str, Any]] = []  # entries whose host asked us to wait: queued again for later
    held_until = 0.0
    http: Counter[tuple[str, int | str]] = Counter()
    delays: list[float] = []
    batch = [Entry.from_dict(raw) for raw in entries]
    keys = [url_key(entry.url) for entry in batch]
    for entry, entry_key, owner in zip(batch, keys, context.store.published_ids(keys), strict=True):
        if owner:
            counts["already"] += 1
        else:
            pending.append((entry, entry_key))
    # Pages download in background threads while this one extracts: the network wait
    # hides behind the CPU-bound extraction instead of idling the core (issue 7).
    fetcher = _prefetch_pool()
    downloads = {
        entry_key: fetcher.submit(_fetch_page, context, entry)
        for entry, entry_key in pending
        if (feed := context.feeds.get(entry.feed)) is None or feed.full_text
    }
    try:
        for entry, entry_key in pending:
            try:
                outcome = _page_outcome(entry, downloads.get(entry_key), final_attempt)
            except HostDeferred as exc:
                held.append(entry.to_dict())
                held_until = max(held_until, exc.until)
                continue
            if outcome.http is not None:
                http[("page", outcome.http)] += 1
            if outcome.retry:
                deferred.append(f"{entry.url}: {outcome.reason}")
                continue
            article = outcome.article
            if article is None:
                article = _article_from_feed(entry, outcome.reason)
                counts["fallbacks"] += 1
            ready.append((article, [url_key(article.url), entry_key, *([url_key(outcome.canonical)]
                                                                        if outcome.canonical else [])]))
    finally:
        # the job ends with no download of its own left running (only a bug gets here with some)
        for download in downloads.values():
            download.cancel()
        wait(downloads.values())
    # The batch's boilerplate counts, then its publishing: one round trip each, not one per article.
    fingerprints = _strip_learned_boilerplate(context.store, [article for article, _ in ready])
    requests = []
    for (article, keys), fps in zip(ready, fingerprints, strict=True):
        article.fetched_at = iso_from_epoch(time.time())
        normal = normalise_text(article.text)  # once for both keys
        near = near_key(article.text, normalised=normal) if context.settings.near_duplicates != "off" else None
        requests.append(PublishRequest(article, list(dict.fromkeys(keys)), text_key(article.text, normalised=normal),
                                       near, boilerplate=fps))
    for request, result in zip(requests, context.store.publish_many(requests), strict=True):
        if result.outcome == "published":
            counts["published"] += 1
            if result.duplicate_of:
                counts["near_duplicates"] += 1
            delay = seconds_since(request.article.published)
            if delay is not None:
                delays.append(delay)
        elif result.outcome == "near_dropped":
            counts["near_duplicates"] += 1
        elif result.outcome == "already":
            counts["already"] += 1
        else:
            counts["duplicates"] += 1
    if held:
        _hold_extracts(context, held, held_until)
        counts["held"] = len(held)
    # entries_done: finished one way or another (published, already there, duplicate), for progress.
    # the batch's counters, page statuses and publish delays in one round trip, not one per page
    context.store.count({"fallbacks": counts["fallbacks"], "retried_pages": len(deferred),
                         "held_pages": len(held), "entries_done": len(entries) - len(deferred) - len(held)},
                        http=http, delays=delays)
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
        authors=[letter.author] if letter.author else [], word_count=word_count(letter.text),
        markdown=letter.text, language=detect_language(letter.text),
    )


def ingest_mail(source_name: str, raw: bytes, origin: str = "") -> dict[str, Any]:
    """Read one email, publish it once (Message-ID and text claims), record the outcome on the source."""
    context = current_context()
    store = context.store
    source = context.newsletters.get(source_name)
    if source is None:
        return {"source": source_name, "outcome": "unknown newsletter source (removed from the feeds file?)"}
    now = time.time()
    base = {"kind": source.kind, "last_mail": iso_from_epoch(now), "last_origin": origin or "smtp"}
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
    article.fetched_at = iso_from_epoch(now)
    # a newsletter's own recurring lines (a sponsor slot, "read online" pleas) are learned per source
    [fingerprints] = _strip_learned_boilerplate(store, [article])
    near = near_key(article.text) if context.settings.near_duplicates != "off" else None
    result = store.publish(article, url_keys=[], text_key=text_key(article.text), near=near,
                           message_key=message_id_key(letter.message_id) if letter.message_id else article.id,
                           boilerplate=fingerprints)
    store.record_poll(source.name, {**base, "last_status": result.outcome, "last_success": iso_from_epoch(now),
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
    store.record_poll(source.name, {"kind": source.kind, "last_mail": iso_from_epoch(time.time()),
                                    "last_status": "refused",
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
        store.record_poll(source.name, {"kind": source.kind, "last_poll": iso_from_epoch(now), "last_status": "error",
                                        "last_error": str(exc)}, error=True)
        store.schedule(source.name, now + source.interval)
        return {"source": source.name, "outcome": str(exc)}
    store.record_poll(source.name, {"kind": source.kind, "last_poll": iso_from_epoch(now), "last_new": count},
                      error=False,
                      clear=["last_error"])
    store.schedule(source.name, now + source.interval)
    return {"source": source.name, "outcome": "ok", "new": count}
