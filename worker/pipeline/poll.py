"""The poll job: fetch a feed (conditional GET), find entries it has not listed before, queue their
extraction, and record what came of it: read state, fetch, decide (pipeline/decide.py), apply once."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from worker.dedupe.keys import guid_key
from worker.errors import FetchError, HostDeferred, NotModified, ParseError
from worker.models import Entry, Feed, Fetched
from worker.pipeline.context import Context
from worker.pipeline.decide import (
    HostBusy,
    Listed,
    PollFailed,
    PollOutcome,
    PollRules,
    StillRetired,
    Unchanged,
    decide_poll,
    is_retired,
    poll_url,
)
from worker.pipeline.mail import poll_mailbox
from worker.pipeline.push import after_poll
from worker.pipeline.queues import POLL_BATCH_TIMEOUT, enqueue_extracts, pending_entries, plan_extracts
from worker.pipeline.schedule import Limits, cache_max_age
from worker.pipeline.sitemaps import read_listing
from worker.pipeline.updates import track_changes
from worker.push.websub import push_links
from worker.settings import Settings
from worker.store.refusals import Refusals

log = logging.getLogger("feedstream.jobs")

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, "
    "text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
POLL_THREADS = 8


def poll_rules(settings: Settings, feed: Feed) -> PollRules:
    """The feed's own limits over the global ones."""
    low = feed.min_interval or settings.min_interval
    high = max(feed.max_interval or settings.max_interval, low)
    limits = Limits(min_interval=low, max_interval=high, fallback=feed.interval,
                    max_backoff=max(settings.max_backoff, low))
    return PollRules(limits, settings.redirect_adopt_after)


def poll_feeds(context: Context, feed_names: list[str]) -> list[dict[str, Any]]:
    """Poll several feeds at once (threads: the waits overlap); skips any another poll holds."""
    store = context.store
    held = store.acquire_polls(feed_names, POLL_BATCH_TIMEOUT + 30)
    try:
        context.sources.refresh(force=True)  # once for the batch: a source paused or changed before it ran counts
        with ThreadPoolExecutor(max_workers=POLL_THREADS, thread_name_prefix="poll") as pool:
            return list(pool.map(lambda name: _poll_one(context, name), held))
    finally:
        store.release_polls(held)


_refusals = Refusals(log, "poll")


def _poll_one(context: Context, feed_name: str) -> dict[str, Any]:
    try:
        result = poll_feed(context, feed_name, check_sources=False)
    except Exception as exc:  # one feed's bug must not cost the others in the batch their poll
        if _refusals.note(exc):  # Redis refusing writes: nothing was marked seen, the feed is polled again
            return {"feed": feed_name, "outcome": f"poll: Redis refused: {exc}"}
        log.exception("polling %s", feed_name)
        return {"feed": feed_name, "outcome": f"poll: unexpected {type(exc).__name__}: {exc}"}
    _refusals.clear()
    return result


def poll_feed(context: Context, feed_name: str, check_sources: bool = True) -> dict[str, Any]:
    """Fetch one feed, find entries it has not listed before, queue their extraction.

    ``check_sources``: compare the sources' version first (one GET), so a source paused, changed or
    removed before this poll ran is seen as it is now.
    """
    if check_sources:
        context.sources.refresh(force=True)
    record = context.sources.record(feed_name)
    if record is None:
        return {"feed": feed_name, "outcome": "unknown source (removed?): not polled"}
    if record.paused:  # paused after this poll was queued: its state stays as it was
        return {"feed": feed_name, "outcome": "paused: not polled"}
    feed = record.source
    if not isinstance(feed, Feed):  # a mailbox shares the feeds' schedule
        return poll_mailbox(context, feed_name)
    now = time.time()
    status = context.store.feed_status(feed.name)
    url = poll_url(feed, status)
    outcome, new = (StillRetired(), []) if is_retired(status, url) else _fetch(context, feed, url, status)
    intent = decide_poll(feed, status, poll_rules(context.settings, feed), outcome, now)
    intent = after_poll(context.store, feed.name, outcome, intent, poll_rules(context.settings, feed), now)
    # The new entries are recorded in the outbox in the same step as their GUIDs are marked seen, then
    # queued: if the queueing (or its RQ job) is lost, the outbox sweeper queues them again.
    plan = plan_extracts(new)
    context.store.apply_poll(intent, pending_entries(plan), now + context.settings.outbox_sweep_after)
    enqueue_extracts(context, plan)
    if intent.log:
        log.log(*intent.log)
    return dict(intent.report)


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
    return list_entries(context, feed, fetched)


def list_entries(context: Context, feed: Feed, fetched: Fetched) -> tuple[PollOutcome, list[Entry]]:
    """What a feed's (or sitemap's) fetched bytes list, and its entries not listed before.

    A WebSub push (worker/push/) hands its body here as a fetch that was not made.
    """
    try:
        parsed = read_listing(context, feed, fetched)
    except HostDeferred as exc:  # an index's child sitemap on a host that asked us to wait
        return HostBusy(str(exc), exc.until), []
    except (ParseError, FetchError) as exc:
        return PollFailed(str(exc), http=fetched.status), []
    entries = parsed.entries
    for entry in entries:
        entry.feed = feed.name
        entry.tags = list(dict.fromkeys([*entry.tags, *feed.tags]))
    keys = [guid_key(feed.name, entry.guid) for entry in entries]
    unseen = context.store.unseen(feed.name, keys)
    new = [entry for entry, fresh in zip(entries, unseen, strict=True) if fresh]
    # entries seen before that changed: their articles' re-checks are queued before apply_poll records the
    # new marks, so a crash in between finds the change again on the next poll
    marks = track_changes(context, feed.name, entries, keys, unseen, time.time())
    listed = Listed(status=fetched.status, seen=tuple(keys), new=len(new),
                    published=tuple(entry.published for entry in entries), title=parsed.title or "",
                    warning=parsed.warning, etag=fetched.etag, last_modified=fetched.last_modified,
                    max_age=cache_max_age(fetched.headers), ttl_minutes=parsed.ttl_minutes,
                    redirects=fetched.redirects, marks=marks,
                    push=push_links(parsed, fetched.headers, fetched.url))
    return listed, new
