"""WebSub in the pipeline: a poll notes the hub its feed announces, a live subscription slows the
safety-net poll to ``max_interval``, and a pushed feed body is taken as a poll that did not fetch.

A push goes through the poll's own path (:func:`worker.pipeline.poll.list_entries`: parse, the
entries not listed before, their extraction queued, the same seen set and publish claims), so a
pushed article and a polled one are published once between them.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from worker.models import Feed, Fetched, PollIntent
from worker.pipeline.context import Context
from worker.pipeline.decide import Listed, PollOutcome, PollRules, Unchanged
from worker.pipeline.queues import POLL_BATCH_TIMEOUT, enqueue_extracts, pending_entries, plan_extracts
from worker.store import Store
from worker.timefmt import iso_from_epoch


def after_poll(store: Store, name: str, outcome: PollOutcome, intent: PollIntent, rules: PollRules,
               now: float) -> PollIntent:
    """Note the hub a listing announced; while the source's subscription is live, poll it only at
    ``max_interval`` (a safety net: pushes bring the news)."""
    if isinstance(outcome, Listed) and outcome.push:
        store.websub_note_hub(name, *outcome.push, now)
    elif not isinstance(outcome, Unchanged):
        return intent
    if intent.next_poll is None or not math.isfinite(intent.next_poll) or not store.websub_live(name, now):
        return intent
    at = now + rules.limits.max_interval
    if at <= intent.next_poll:
        return intent
    return replace(intent, next_poll=at, fields={**intent.fields, "next_poll": iso_from_epoch(at)})


def decide_push(feed: Feed, listed: Listed, now: float) -> PollIntent:
    """What a pushed listing changes: the seen set and marks, counters; not the poll schedule or validators."""
    return PollIntent(feed.name, fields={"last_push": iso_from_epoch(now), "last_new": listed.new},
                      counters={"pushes_ok": 1, "entries_new": listed.new}, source_counts={"entries_seen": listed.new},
                      seen=listed.seen, seen_at=now, marks=listed.marks,
                      report={"feed": feed.name, "outcome": "pushed", "entries": len(listed.seen), "new": listed.new})


def ingest_push(context: Context, source_name: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Take a pushed feed body (signature checked by the callback) as a poll of the source without fetching."""
    from worker.pipeline.poll import list_entries  # poll imports this module (after_poll)

    now = time.time()
    record = context.sources.record(source_name)
    if record is None or record.paused or not isinstance(record.source, Feed):
        return {"feed": source_name, "outcome": "push dropped: the source is removed or paused"}
    feed = record.source
    sub = context.store.websub_subscription(source_name)
    fetched = Fetched(url=(sub.topic if sub and sub.topic else feed.url), status=200,
                      headers={"content-type": content_type}, body=body)
    # a poll running now lists the same entries: the publish claims keep each article to one publication
    held = context.store.acquire_polls([source_name], POLL_BATCH_TIMEOUT + 30)
    try:
        outcome, new = list_entries(context, feed, fetched)
        if not isinstance(outcome, Listed):
            message = f"websub: push refused: {getattr(outcome, 'message', outcome)}"
            context.store.websub_pushed(source_name, now, refused=message)
            return {"feed": source_name, "outcome": message}
        intent = decide_push(feed, outcome, now)
        # as a poll does: the new entries enter the outbox with their GUIDs marked seen, then are queued
        plan = plan_extracts(new)
        context.store.apply_poll(intent, pending_entries(plan), now + context.settings.outbox_sweep_after)
        enqueue_extracts(context, plan)
        context.store.websub_pushed(source_name, now)
        return dict(intent.report)
    finally:
        context.store.release_polls(held)
