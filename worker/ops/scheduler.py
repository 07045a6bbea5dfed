"""Which feeds are due, and queueing their polls.

Each feed's next poll time lives in a Redis sorted set. A tick claims the due
feeds atomically (their slot moves on by a lease in the same Lua step), then
queues their polls, several feeds per RQ job (``jobs.enqueue_polls``), so:

- any number of scheduler processes may run: a slot is claimed once;
- a feed never has two polls in flight: a poll holds a per-feed lock in Redis
  (``Store.acquire_polls``) and a second one skips the feed (``feedstream run
  --burst`` queues its polls the same way);
- a poll that dies is retried when its lease runs out.

RQ's own ``rq cron`` runs fixed intervals and has no leader election (two cron
processes both enqueue), so it cannot follow per-feed schedules; this loop is
the small piece it leaves for us.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from rq import Queue

from worker.models import Feed
from worker.pipeline.queues import POLL_BATCH_TIMEOUT, enqueue_polls
from worker.sources.live import CHECK_EVERY, LiveSources
from worker.sources.plan import Snapshot
from worker.store import Store
from worker.store.refusals import Backoff, Refusals, attempt

log = logging.getLogger("feedstream.scheduler")

LEASE_SECONDS = POLL_BATCH_TIMEOUT + 180
TICK_SECONDS = 1.0


def tick(store: Store, poll_queue: Queue, now: float | None = None) -> list[str]:
    """Queue polls for every feed that is due; returns the names queued."""
    now = time.time() if now is None else now
    queued = store.claim_due(now, LEASE_SECONDS)
    enqueue_polls(poll_queue, queued)
    store.beat("scheduler", now)
    return queued


def keep_schedule(store: Store, snapshot: Snapshot | None = None) -> None:
    """Make the due set hold the active polled sources (see ``Store.reconcile_schedule``) and bring back
    retired feeds whose URL changed since they were retired."""
    added = store.reconcile_schedule(time.time())
    if added:
        log.info("scheduled new sources: %s", ", ".join(added))
    snapshot = snapshot or store.sources_snapshot()
    urls = {name: record.source.url for name, record in snapshot.records.items() if isinstance(record.source, Feed)}
    store.revive(urls, time.time())


def run_forever(store: Store, poll_queue: Queue, stop: threading.Event | None = None,
                on_tick: Callable[[list[str]], None] | None = None, check_every: float = CHECK_EVERY) -> None:
    """Tick until ``stop`` is set, following the sources in Redis as they change.

    Sources added, paused, resumed or removed through the API or the CLI change the due set in the
    same step; the scheduler also checks the sources' version every ``check_every`` seconds and
    squares the schedule with them when it moved (a due set restored from an old backup, say).
    Redis refusing writes (OOM, READONLY, a lost connection) is logged once per kind and waited out
    with backoff: the scheduler never exits on it.
    """
    stop = stop or threading.Event()
    refusals = Refusals(log, "scheduler")
    backoff = Backoff()
    live = LiveSources(store, check_every, on_change=lambda snapshot: keep_schedule(store, snapshot))
    synced = False
    while not stop.is_set():
        if not synced:
            synced = attempt(lambda: (keep_schedule(store), live.refresh()), refusals, backoff, wait=stop.wait)[0]
            continue

        def step() -> tuple[list[str], float | None]:
            live.refresh()
            return tick(store, poll_queue), store.next_due()

        done, ticked = attempt(step, refusals, backoff, wait=stop.wait)
        if not done or ticked is None:
            continue
        queued, next_due = ticked
        if queued:
            log.info("queued polls: %s", ", ".join(queued))
            if on_tick:
                on_tick(queued)
        stop.wait(TICK_SECONDS if next_due is None else min(max(next_due - time.time(), 0.05), TICK_SECONDS))
