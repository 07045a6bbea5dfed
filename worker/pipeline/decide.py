"""What a poll's (or an extract batch's) outcome means, decided before anything is written. Pure.

A job reads the state it needs, fetches, then asks :func:`decide_poll` what the
outcome changes; the answer (a :class:`~worker.models.PollIntent`) is written by
one store call (``Store.apply_poll``). Nothing here touches Redis, the network or
the clock: ``now`` and the random source are arguments, so every rule (301 adopt,
410 retire, 429 and backoff, success reset) is a unit test away.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from worker.models import Feed, NewsletterSource, PollIntent, PublishResult
from worker.pipeline.schedule import Limits, backoff_interval, next_interval, permanent_target, rhythm_interval
from worker.sources.rules import filter_counts
from worker.timefmt import iso_from_epoch, seconds_since

# Cleared by any poll that reaches the feed: a retirement for an older URL no longer holds.
RETIRED_FIELDS = ("retired", "retired_url", "retired_at")
MOVED_FIELDS = ("moved_to", "moved_polls")
# A host's wait is spread over a few seconds so feeds deferred together do not all return at once.
DEFER_JITTER = 5.0

Redirects = tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class PollRules:
    """The settings a poll decision needs, for one feed (its own limits over the global ones)."""

    limits: Limits
    redirect_adopt_after: int  # polls in a row a permanent redirect must hold before its target is adopted


# -- what a poll can come back with -------------------------------------------------

@dataclass(frozen=True)
class StillRetired:
    """The feed was retired (HTTP 410) at the URL it would be polled at: no request was made."""


@dataclass(frozen=True)
class HostBusy:
    """Not fetched: the host asked us to wait, or has no free slot, until ``until``. Not the feed's fault."""

    message: str
    until: float


@dataclass(frozen=True)
class Unchanged:
    """HTTP 304: what we hold is current."""

    redirects: Redirects = ()


@dataclass(frozen=True)
class PollFailed:
    """The fetch or the parse failed (``message`` says which, ``fetch: ...`` or ``parse: ...``)."""

    message: str
    status: int | None = None  # the HTTP status of a failed fetch
    retry_after: float | None = None  # seconds the server asked us to wait (429, 503)
    http: int | str | None = None  # the feed response to count ("error": none came); None: nothing to count


@dataclass(frozen=True)
class Listed:
    """Fetched and parsed: the feed lists ``len(seen)`` entries, ``new`` of them not listed before."""

    status: int
    seen: tuple[str, ...]  # hashed GUIDs of every entry listed
    new: int
    published: tuple[str | None, ...] = ()  # the entries' publication times (ISO 8601)
    title: str = ""
    warning: str | None = None  # what the parser put up with
    etag: str | None = None
    last_modified: str | None = None
    max_age: int | None = None  # the response's Cache-Control max-age
    ttl_minutes: int | None = None  # the feed's own <ttl>
    redirects: Redirects = ()
    marks: tuple[tuple[str, bytes], ...] | None = None  # the entries' marks to keep (None: leave them)
    push: tuple[str, str] | None = None  # the WebSub (hub, topic) the feed announces (worker/push/)
    filtered: Mapping[str, int] = field(default_factory=dict)  # new entries the source's rules dropped, per rule


PollOutcome = StillRetired | HostBusy | Unchanged | PollFailed | Listed


def poll_url(feed: Feed, status: Mapping[str, str]) -> str:
    """The URL to poll: an adopted permanent redirect's, while the configured URL is unchanged."""
    if status.get("adopted_url") and status.get("adopted_from") == feed.url:
        return status["adopted_url"]
    return feed.url


def is_retired(status: Mapping[str, str], url: str) -> bool:
    """Whether the feed was retired at ``url`` (a changed URL gets a fresh chance)."""
    return bool(status.get("retired")) and status.get("retired_url") == url


def decide_poll(feed: Feed, status: Mapping[str, str], rules: PollRules, outcome: PollOutcome, now: float, *,
                rng: random.Random | None = None) -> PollIntent:
    """What the poll's ``outcome`` changes for ``feed``, given its stored ``status`` (the hash's fields)."""
    rng = rng or random.Random()
    url = poll_url(feed, status)
    stamp = iso_from_epoch(now)
    base: dict[str, str | int | float] = {"url": url, "last_poll": stamp}
    match outcome:
        case StillRetired():
            return PollIntent(feed.name, next_poll=float("inf"), report={"feed": feed.name, "outcome": "retired"})
        case HostBusy(message=message, until=until):
            at = until + rng.uniform(0, DEFER_JITTER)
            return PollIntent(feed.name, fields={"deferred": message, "next_poll": iso_from_epoch(at)}, next_poll=at,
                              counters={"polls_deferred": 1}, report={"feed": feed.name, "outcome": message})
        case Unchanged(redirects=redirects):
            fields = {**base, "last_status": 304, "last_success": stamp, "last_new": 0}
            moved, clear, note = _track_redirect(feed, status, url, redirects, rules.redirect_adopt_after, stamp)
            limits = rules.limits
            interval = int(status.get("interval") or rhythm_interval([], now, limits))
            interval = min(max(interval, limits.min_interval), limits.max_interval)
            fields.update(moved)
            fields["next_poll"] = iso_from_epoch(now + interval)
            return PollIntent(feed.name, fields=fields, clear=(*clear, *RETIRED_FIELDS, "deferred"), error=False,
                              next_poll=now + interval, counters={"polls_not_modified": 1}, http=("feed", 304),
                              report={"feed": feed.name, "outcome": "not modified"}, log=note)
        case PollFailed(message=message, status=410):
            http = ("feed", outcome.http) if outcome.http is not None else None
            return PollIntent(
                feed.name, fields={**base, "last_status": 410, "last_error": message, "retired": f"gone: {message}",
                                   "retired_url": url, "retired_at": stamp},
                error=True, next_poll=float("inf"), counters={"polls_failed": 1, "feeds_retired": 1}, http=http,
                report={"feed": feed.name, "outcome": f"retired: {message}"},
                log=(logging.WARNING, f"{feed.name}: retired: {message}"))
        case PollFailed(message=message):
            errors = int(status.get("consecutive_errors", "0")) + 1
            delay = backoff_interval(rules.limits, errors, outcome.retry_after, rng=rng)
            http = ("feed", outcome.http) if outcome.http is not None else None
            return PollIntent(
                feed.name, fields={**base, "last_status": outcome.status or "error", "last_error": message,
                                   "next_poll": iso_from_epoch(now + delay)},
                clear=("deferred",), error=True, next_poll=now + delay, counters={"polls_failed": 1}, http=http,
                report={"feed": feed.name, "outcome": message}, log=(logging.WARNING, f"{feed.name}: {message}"))
        case Listed():
            return _decide_listed(feed, status, rules, outcome, now, url)
    raise TypeError(f"not a poll outcome: {outcome!r}")


def _decide_listed(feed: Feed, status: Mapping[str, str], rules: PollRules, listed: Listed, now: float,
                   url: str) -> PollIntent:
    stamp = iso_from_epoch(now)
    interval = next_interval(listed.published, now, rules.limits, max_age=listed.max_age,
                             ttl_minutes=listed.ttl_minutes)
    fields: dict[str, str | int | float] = {
        "url": url, "last_poll": stamp, "last_status": listed.status, "last_success": stamp, "last_new": listed.new,
        "next_poll": iso_from_epoch(now + interval), "interval": interval, "title": listed.title or "",
    }
    moved, clear, note = _track_redirect(feed, status, url, listed.redirects, rules.redirect_adopt_after, stamp)
    fields.update(moved)
    if listed.warning:
        fields["last_warning"] = f"parse: {listed.warning}"
    optional = {"etag": listed.etag, "last_modified": listed.last_modified}
    fields.update({k: v for k, v in optional.items() if v})
    absent = [k for k, v in (*optional.items(), ("last_warning", listed.warning)) if not v]
    return PollIntent(
        feed.name, fields=fields, clear=(*clear, *RETIRED_FIELDS, "deferred", *absent), error=False,
        next_poll=now + interval,
        counters={"polls_ok": 1, "entries_new": listed.new,
                  **({"entries_filtered": sum(listed.filtered.values())} if listed.filtered else {})},
        source_counts={"entries_seen": listed.new, **filter_counts(listed.filtered)}, http=("feed", listed.status),
        seen=listed.seen, seen_at=now, marks=listed.marks, filtered=listed.filtered,
        report={"feed": feed.name, "outcome": "ok", "entries": len(listed.seen), "new": listed.new}, log=note)


def _track_redirect(feed: Feed, status: Mapping[str, str], url: str, redirects: Redirects, adopt_after: int,
                    stamp: str) -> tuple[dict[str, str | int], tuple[str, ...], tuple[int, str] | None]:
    """A permanent redirect seen by this poll: (fields to set, fields to clear, a note for the log).

    Its target is adopted once it has held ``adopt_after`` polls in a row.
    """
    target = permanent_target(redirects)
    if target is None or target == url:
        return {}, MOVED_FIELDS, None
    held = int(status.get("moved_polls", "0")) + 1 if status.get("moved_to") == target else 1
    if held >= adopt_after:
        note = (logging.INFO, f"{feed.name}: moved permanently to {target} (seen {held} polls in a row): adopted")
        return {"adopted_url": target, "adopted_from": feed.url, "adopted_at": stamp}, MOVED_FIELDS, note
    return {"moved_to": target, "moved_polls": held}, (), None


# -- newsletters ----------------------------------------------------------------------

def decide_mail_refused(source: NewsletterSource, message: str, now: float, origin: str | None = None) -> PollIntent:
    """A mail refused (unreadable, too large, a loop): an error on the source. ``origin`` None: refused before
    it was read (at SMTP or in a mailbox). ``last_refused`` stays when later mail succeeds."""
    fields: dict[str, str | int | float] = {"kind": source.kind, "last_mail": iso_from_epoch(now)}
    if origin is not None:
        fields["last_origin"] = origin or "smtp"
    fields.update({"last_status": "refused", "last_error": message, "last_refused": message})
    return PollIntent(source.name, fields=fields, error=True, counters={"mails_refused": 1},
                      source_counts={"mails_refused": 1}, report={"source": source.name, "outcome": message},
                      log=(logging.WARNING, f"{source.name}: {message} ({origin})") if origin is not None else None)


def decide_mail_read(source: NewsletterSource, result: PublishResult, title: str, origin: str, now: float, *,
                     seen: tuple[str, ...] = (), links_queued: int = 0) -> PollIntent:
    """A mail read and offered to the stream (``result``); ``seen``: the digest links it listed (hashed)."""
    published = result.outcome == "published"
    return PollIntent(
        source.name, fields={"kind": source.kind, "last_mail": iso_from_epoch(now), "last_origin": origin or "smtp",
                             "last_status": result.outcome, "last_success": iso_from_epoch(now), "title": title},
        error=False, counters={"mails_ok": 1}, source_counts={"mails_published": int(published)},
        seen=seen, seen_at=now if seen else None,
        report={"source": source.name, "outcome": result.outcome, "id": result.article_id,
                "duplicate_of": result.duplicate_of, "links_queued": links_queued})


def decide_mailbox_polled(source: NewsletterSource, now: float, *, new: int = 0,
                          error: str | None = None) -> PollIntent:
    """A mailbox poll that handed ``new`` messages to the queue, or failed with ``error``."""
    fields: dict[str, str | int | float] = {"kind": source.kind, "last_poll": iso_from_epoch(now)}
    if error is not None:
        fields.update({"last_status": "error", "last_error": error})
        report: dict[str, str | int] = {"source": source.name, "outcome": error}
    else:
        fields["last_new"] = new
        report = {"source": source.name, "outcome": "ok", "new": new}
    return PollIntent(source.name, fields=fields, error=error is not None, next_poll=now + source.interval,
                      report=report)


# -- an extract batch's bookkeeping --------------------------------------------------

@dataclass
class ExtractTally:
    """What an extract batch did, for its counters and its job's result."""

    report: dict[str, int]  # what the job returns
    counters: dict[str, int]
    http: Counter[tuple[str, int | str]] = field(default_factory=Counter)  # page responses
    delays: list[float] = field(default_factory=list)  # seconds from each published article's date to now
    retry: str | None = None  # why the job must run again (pages that may come later), or None


def tally_extract(*, entries: int, already: int, fallbacks: int, page_http: Sequence[int | str],
                  retried: Sequence[str], held: int, published: Sequence[tuple[PublishResult, str | None]],
                  now: float) -> ExtractTally:
    """Sum up a batch of ``entries``: ``already`` published before it began, ``fallbacks`` from the feed's
    content, ``page_http`` statuses of its page requests, ``retried`` pages ("url: reason") left to RQ's
    retry, ``held`` entries queued again for their host, and each publish's result with the article's
    ``published`` time."""
    report = {"published": 0, "already": already, "duplicates": 0, "near_duplicates": 0,
              "fallbacks": fallbacks, "deferred": 0}
    delays: list[float] = []
    for result, published_at in published:
        if result.outcome == "published":
            report["published"] += 1
            if result.duplicate_of:
                report["near_duplicates"] += 1
            delay = seconds_since(published_at, now)
            if delay is not None:
                delays.append(delay)
        elif result.outcome == "near_dropped":
            report["near_duplicates"] += 1
        elif result.outcome == "already":
            report["already"] += 1
        else:
            report["duplicates"] += 1
    if held:
        report["held"] = held
    retry = None
    if retried:
        report["deferred"] = len(retried)
        retry = f"fetch: {len(retried)} page(s) will be retried: " + "; ".join(retried[:3])
    # entries_done: finished one way or another (published, already there, duplicate), for progress
    counters = {"fallbacks": fallbacks, "retried_pages": len(retried), "held_pages": held,
                "entries_done": entries - len(retried) - held}
    return ExtractTally(report, counters, Counter(("page", status) for status in page_http), delays, retry)


# -- the outbox sweeper ---------------------------------------------------------------

# RQ job states in which a job will never run its entries again.
JOB_DONE_STATES = frozenset({"finished", "failed", "stopped", "canceled"})


def sweep_verdict(job_status: str | None, in_queue: bool) -> str:
    """What to do with the pending entries of a job, from its RQ state, for the outbox sweeper.

    ``"wait"``: the job will still run them (queued in its queue, started, scheduled for a retry or a
    host's Retry-After, deferred); ``"revive"``: the job says queued but sits in no queue (popped by a
    worker that died, or whose start transaction Redis refused): put it back; ``"requeue"``: the job is
    gone (deleted, expired) or finished without settling them (failed for good): queue the entries anew.
    """
    if job_status is None or job_status in JOB_DONE_STATES:
        return "requeue"
    if job_status == "queued" and not in_queue:
        return "revive"
    return "wait"
