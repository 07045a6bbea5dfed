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
from collections.abc import Callable, Mapping

from rq import Queue

from worker.pipeline.queues import POLL_BATCH_TIMEOUT, enqueue_polls
from worker.store import Store

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


def run_forever(store: Store, poll_queue: Queue, feed_names: list[str],
                stop: threading.Event | None = None, on_tick: Callable[[list[str]], None] | None = None,
                feed_urls: Mapping[str, str] | None = None) -> None:
    """Keep the due set in line with the feeds file, then tick until ``stop`` is set.

    ``feed_urls`` (name -> configured URL) lets a retired feed whose URL was edited come back.
    """
    stop = stop or threading.Event()
    store.sync_feeds(feed_names, time.time())
    if feed_urls:
        store.revive(feed_urls, time.time())
    while not stop.is_set():
        queued = tick(store, poll_queue)
        if queued:
            log.info("queued polls: %s", ", ".join(queued))
            if on_tick:
                on_tick(queued)
        next_due = store.next_due()
        wait = TICK_SECONDS if next_due is None else min(max(next_due - time.time(), 0.05), TICK_SECONDS)
        stop.wait(wait)
