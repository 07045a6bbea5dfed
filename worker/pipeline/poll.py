"""The poll job: fetch a feed (conditional GET), find entries it has not listed before, queue their
extraction, and record what came of it: read state, fetch, decide (pipeline/decide.py), apply once."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from typing import Any

from worker.dedupe.keys import guid_key
from worker.errors import FetchError, HostDeferred, NotModified, ParseError
from worker.feeds import parse_feed
from worker.models import Entry, Feed
from worker.pipeline.context import Context
from worker.pipeline.decide import (
    HostBusy,
    Listed,
    PollFailed,
    PollIntent,
    PollOutcome,
    PollRules,
    StillRetired,
    Unchanged,
    decide_poll,
    is_retired,
    poll_url,
)
from worker.pipeline.mail import poll_mailbox
from worker.pipeline.queues import POLL_BATCH_TIMEOUT, enqueue_extracts
from worker.pipeline.schedule import Limits, cache_max_age
from worker.settings import Settings

log = logging.getLogger("feedstream.jobs")

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
POLL_THREADS = 8
# Seconds a poll job waits for all of its feeds before queueing the entries of those done.
POLL_GATHER = 1.0


def poll_rules(settings: Settings, feed: Feed) -> PollRules:
    """The feed's own limits over the global ones."""
    low = feed.min_interval or settings.min_interval
    high = max(feed.max_interval or settings.max_interval, low)
    limits = Limits(min_interval=low, max_interval=high, fallback=feed.interval,
                    max_backoff=max(settings.max_backoff, low))
    return PollRules(limits, settings.redirect_adopt_after)


def poll_feeds(context: Context, feed_names: list[str]) -> list[dict[str, Any]]:
    """Poll several feeds at once (threads: the waits overlap); skips any another poll holds.

    The entries of the feeds polled within POLL_GATHER seconds are queued together, their
    hosts interleaved (queues.host_batches), so workers spread over many hosts; a poll still
    running after that queues its entries when it ends.
    """
    store = context.store
    held = store.acquire_polls(feed_names, POLL_BATCH_TIMEOUT + 30)
    reports: dict[str, dict[str, Any]] = {}
    try:
        with ThreadPoolExecutor(max_workers=POLL_THREADS, thread_name_prefix="poll") as pool:
            running = {pool.submit(_look, context, name): name for name in held}
            done, running_on = wait(running, timeout=POLL_GATHER)
            # in the batch's order: hosts then take turns in the order the feeds were listed
            reports.update(_record(context, [(name, future.result()) for future, name in running.items()
                                             if future in done]))
            for future in as_completed(running_on):
                reports.update(_record(context, [(running[future], future.result())]))
    finally:
        store.release_polls(held)
    return [reports[name] for name in held]


def poll_feed(context: Context, feed_name: str) -> dict[str, Any]:
    """Fetch one feed, find entries it has not listed before, queue their extraction."""
    return _record(context, [(feed_name, _look(context, feed_name))])[feed_name]


@dataclass
class _Looked:
    """What a poll found before anything is written: the feed's intent and its new entries, or a report."""

    report: dict[str, Any] | None = None  # the poll is over (a mailbox, an unknown feed, a bug)
    intent: PollIntent | None = None
    new: list[Entry] = field(default_factory=list)


def _look(context: Context, feed_name: str) -> _Looked:
    """Fetch and parse the feed, and decide what to record; nothing is written yet."""
    try:
        feed = context.feeds.get(feed_name)
        if feed is None and feed_name in context.newsletters:  # a mailbox shares the feeds' schedule
            return _Looked(report=poll_mailbox(context, feed_name))
        if feed is None:
            return _Looked(report={"feed": feed_name, "outcome": "unknown feed (removed from the feeds file?)"})
        now = time.time()
        status = context.store.feed_status(feed.name)
        url = poll_url(feed, status)
        outcome, new = (StillRetired(), []) if is_retired(status, url) else _fetch(context, feed, url, status)
        return _Looked(intent=decide_poll(feed, status, poll_rules(context.settings, feed), outcome, now), new=new)
    except Exception as exc:  # one feed's bug must not cost the others in the batch their poll
        return _Looked(report=_unexpected(feed_name, exc))


def _record(context: Context, looked: list[tuple[str, _Looked]]) -> dict[str, dict[str, Any]]:
    """Queue the polls' new entries (hosts interleaved), then write each poll's intent; their reports."""
    reports = {name: poll.report for name, poll in looked if poll.report is not None}
    writes = [(name, poll.intent) for name, poll in looked if poll.intent is not None]
    try:
        # Queue the work before marking the GUIDs seen (apply_poll): a crash in between
        # re-queues them on the next poll, and the publish claim keeps that from doubling.
        enqueue_extracts(context, [entry for _, poll in looked for entry in poll.new])
    except Exception as exc:
        return {**reports, **{name: _unexpected(name, exc) for name, _ in writes}}
    for name, intent in writes:
        try:
            context.store.apply_poll(intent)
        except Exception as exc:
            reports[name] = _unexpected(name, exc)
            continue
        if intent.log:
            log.log(*intent.log)
        reports[name] = dict(intent.report)
    return reports


def _unexpected(feed_name: str, exc: Exception) -> dict[str, Any]:
    log.error("polling %s", feed_name, exc_info=exc)
    return {"feed": feed_name, "outcome": f"poll: unexpected {type(exc).__name__}: {exc}"}


def _fetch(context: Context, feed: Feed, url: str, status: dict[str, str]) -> tuple[PollOutcome, list[Entry]]:
    """What fetching and parsing the feed came to, and its entries not listed before."""
    try:
        fetched = context.fetcher.get(url, etag=status.get("etag") or None,
                                      last_modified=status.get("last_modified") or None, accept=FEED_ACCEPT)
    except HostDeferred as exc:
        return HostBusy(str(exc), exc.until), []
    except NotModified as exc:
        return Unchanged(exc.redirects), []
    except FetchError as exc:
        return PollFailed(str(exc), status=exc.status, retry_after=exc.retry_after, http=exc.status or "error"), []
    try:
        parsed = parse_feed(fetched.body, url=fetched.url, headers=fetched.headers)
    except ParseError as exc:
        return PollFailed(str(exc), http=fetched.status), []
    entries = parsed.entries
    for entry in entries:
        entry.feed = feed.name
        entry.tags = list(dict.fromkeys([*entry.tags, *feed.tags]))
    keys = [guid_key(feed.name, entry.guid) for entry in entries]
    new = [entry for entry, unseen in zip(entries, context.store.unseen(feed.name, keys), strict=True) if unseen]
    listed = Listed(status=fetched.status, seen=tuple(keys), new=len(new),
                    published=tuple(entry.published for entry in entries), title=parsed.title or "",
                    warning=parsed.warning, etag=fetched.etag, last_modified=fetched.last_modified,
                    max_age=cache_max_age(fetched.headers), ttl_minutes=parsed.ttl_minutes,
                    redirects=fetched.redirects)
    return listed, new
