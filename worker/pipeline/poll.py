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
from worker.models import Entry, Feed, Fetched
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
from worker.pipeline.push import after_poll
from worker.pipeline.queues import (
    POLL_BATCH_TIMEOUT,
    ExtractBatch,
    enqueue_extracts,
    pending_entries,
    plan_extracts,
)
from worker.pipeline.rules import drop_new_entries, source_headers
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
        context.sources.refresh(force=True)  # once for the batch: a source paused or changed before it ran counts
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


_refusals = Refusals(log, "poll")


def poll_feed(context: Context, feed_name: str, check_sources: bool = True) -> dict[str, Any]:
    """Fetch one feed, find entries it has not listed before, queue their extraction.

    ``check_sources``: compare the sources' version first (one GET), so a source paused, changed or
    removed before this poll ran is seen as it is now.
    """
    if check_sources:
        context.sources.refresh(force=True)
    return _record(context, [(feed_name, _look(context, feed_name))])[feed_name]


@dataclass
class _Looked:
    """What a poll found before anything is written: the feed's intent and its new entries, or a report."""

    report: dict[str, Any] | None = None  # the poll is over (paused, a mailbox, an unknown source, a bug)
    intent: PollIntent | None = None
    new: list[Entry] = field(default_factory=list)
    now: float = 0.0


def _look(context: Context, feed_name: str) -> _Looked:
    """Fetch and parse the feed, and decide what to record; nothing but re-checks is written yet."""
    try:
        record = context.sources.record(feed_name)
        if record is None:
            return _Looked(report={"feed": feed_name, "outcome": "unknown source (removed?): not polled"})
        if record.paused:  # paused after this poll was queued: its state stays as it was
            return _Looked(report={"feed": feed_name, "outcome": "paused: not polled"})
        feed = record.source
        if not isinstance(feed, Feed):  # a mailbox shares the feeds' schedule
            return _Looked(report=poll_mailbox(context, feed_name))
        now = time.time()
        status = context.store.feed_status(feed.name)
        url = poll_url(feed, status)
        outcome, new = (StillRetired(), []) if is_retired(status, url) else _fetch(context, feed, url, status)
        rules = poll_rules(context.settings, feed)
        intent = decide_poll(feed, status, rules, outcome, now)
        # the hub the listing announced is noted; a live WebSub subscription stretches the schedule
        intent = after_poll(context.store, feed.name, outcome, intent, rules, now)
        return _Looked(intent=intent, new=new, now=now)
    except Exception as exc:  # one feed's bug must not cost the others in the batch their poll
        return _Looked(report=_failed(feed_name, exc))


def _record(context: Context, looked: list[tuple[str, _Looked]]) -> dict[str, dict[str, Any]]:
    """Write each poll's intent with its new entries in the outbox, then queue the entries of all of them
    (hosts interleaved); their reports."""
    reports = {name: poll.report for name, poll in looked if poll.report is not None}
    plan = plan_extracts([entry for _, poll in looked for entry in poll.new])
    planned = pending_entries(plan)
    recorded: set[str] = set()
    for name, poll in looked:
        if poll.intent is None:
            continue
        # The new entries are recorded in the outbox in the same step as their GUIDs are marked seen, then
        # queued: if the queueing (or its RQ job) is lost, the outbox sweeper queues them again.
        pending = {job_id: [(token, entry) for token, entry in items if entry.get("feed") == name]
                   for job_id, items in planned.items()}
        try:
            context.store.apply_poll(poll.intent, {job: items for job, items in pending.items() if items},
                                     poll.now + context.settings.outbox_sweep_after)
        except Exception as exc:
            reports[name] = _failed(name, exc)
            continue
        recorded.add(name)
        if poll.intent.log:
            log.log(*poll.intent.log)
        reports[name] = dict(poll.intent.report)
    # only the entries of polls that were recorded: the others are new again on the feed's next poll
    kept = [ExtractBatch(batch.job_id, [entry for entry in batch.entries if entry.feed in recorded]) for batch in plan]
    try:
        enqueue_extracts(context, [batch for batch in kept if batch.entries])
    except Exception as exc:  # recorded in the outbox: its sweeper queues them
        log.warning("queueing the new entries of %s failed (the outbox sweeper will): %s", ", ".join(recorded), exc)
    if recorded:
        _refusals.clear()
    return reports


def _failed(feed_name: str, exc: Exception) -> dict[str, Any]:
    if _refusals.note(exc):  # Redis refusing writes: nothing was marked seen, the feed is polled again
        return {"feed": feed_name, "outcome": f"poll: Redis refused: {exc}"}
    log.error("polling %s", feed_name, exc_info=exc)
    return {"feed": feed_name, "outcome": f"poll: unexpected {type(exc).__name__}: {exc}"}


def _fetch(context: Context, feed: Feed, url: str, status: dict[str, str]) -> tuple[PollOutcome, list[Entry]]:
    """What fetching and parsing the feed came to, and its entries not listed before that its rules keep."""
    try:
        headers = source_headers(context, feed)
    except ValueError as exc:  # its password's variable is unset: said on its status, nothing fetched
        return PollFailed(f"fetch: {exc}"), []
    try:
        fetched = context.fetcher.get(url, etag=status.get("etag") or None,
                                      last_modified=status.get("last_modified") or None, accept=FEED_ACCEPT,
                                      headers=headers)
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
    # the source's rules on what the feed gives: a dropped entry's page is never requested (its GUID is seen)
    kept, filtered = drop_new_entries(context, feed, new)
    listed = Listed(status=fetched.status, seen=tuple(keys), new=len(new), filtered=filtered,
                    published=tuple(entry.published for entry in entries), title=parsed.title or "",
                    warning=parsed.warning, etag=fetched.etag, last_modified=fetched.last_modified,
                    max_age=cache_max_age(fetched.headers), ttl_minutes=parsed.ttl_minutes,
                    redirects=fetched.redirects, marks=marks,
                    push=push_links(parsed, fetched.headers, fetched.url))
    return listed, kept
