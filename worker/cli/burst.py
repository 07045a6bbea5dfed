"""``feedstream run --burst``: poll every feed once, finish all the work that makes, print a summary."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TextIO

import redis
from rq import Queue

from worker.cli.edge import Edge, prepare_workers, say
from worker.ops.rqworker import pending_work, run_pool
from worker.pipeline.context import current_context
from worker.pipeline.outbox import sweep
from worker.pipeline.queues import POLL_QUEUE, enqueue_polls
from worker.store import Store

# A burst waits for RQ retries scheduled this soon; later ones (a host's long
# Retry-After) are left in the scheduled registry for the service to run.
BURST_MAX_WAIT = 60


class Progress:
    """Burst progress from the Redis counters: one updating line on a terminal, log lines otherwise."""

    TTY_EVERY = 0.25  # seconds between redraws of the terminal line
    LOG_EVERY = 5.0  # seconds between log lines when not on a terminal (only when something changed)

    def __init__(self, store: Store, before: dict[str, int], feeds: int, out: TextIO) -> None:
        self.store, self.before, self.feeds, self.out = store, before, feeds, out
        self.tty = out.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._last = ""

    def line(self) -> str:
        now = self.store.counters()
        delta = {k: now.get(k, 0) - self.before.get(k, 0) for k in now}
        polled = sum(delta.get(k, 0) for k in ("polls_ok", "polls_not_modified", "polls_failed"))
        return (f"progress: {polled}/{self.feeds} feeds polled, {delta.get('entries_done', 0)}/"
                f"{delta.get('entries_new', 0)} articles done ({delta.get('published', 0)} published)")

    def _show(self, text: str, final: bool = False) -> None:
        if self.tty:
            # \r + erase-line redraws in place; the last one ends the line.
            self.out.write(f"\r\x1b[K{text}" + ("\n" if final else ""))
        elif text != self._last or final:
            self.out.write(f"feedstream: {text}\n")
        self.out.flush()
        self._last = text

    def _run(self) -> None:
        every = self.TTY_EVERY if self.tty else self.LOG_EVERY
        while not self._stop.wait(every):
            with contextlib.suppress(redis.RedisError):
                self._show(self.line())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(redis.RedisError):
            self._show(self.line(), final=True)


def burst(edge: Edge, processes: int, out: TextIO = sys.stdout,
          progress_out: TextIO | None = None) -> dict[str, int]:
    """Poll every feed once, finish all the work that makes, print a summary."""
    store = edge.store
    prepare_workers(edge)
    started = time.monotonic()
    before = store.counters()
    store.reconcile_schedule(time.time())
    # Batched like the scheduler's polls: a batch queues its feeds' pages with their hosts interleaved,
    # and its per-feed locks keep a running service from polling the same feed at the same time.
    enqueue_polls(Queue(POLL_QUEUE, connection=store.redis), edge.scheduled)
    progress = Progress(store, before, len(edge.feeds), progress_out or sys.stderr)
    progress.start()
    try:
        while True:
            run_pool(store.redis, processes, burst=True, threads=edge.settings.worker_threads, logging_level="WARNING")
            busy, next_retry = pending_work(store.redis)
            if busy:
                continue
            if _sweep_all():  # entries whose job was lost on the way: queued again, so work on
                continue
            if next_retry is None:
                break
            if next_retry - time.time() > BURST_MAX_WAIT:
                # e.g. pages held back by a host's Retry-After: they run when a worker is up then.
                say(f"work scheduled for {datetime.fromtimestamp(next_retry, UTC):%H:%M:%S} UTC is left for "
                    "later", out)
                break
            time.sleep(max(0.0, next_retry - time.time()) + 0.2)
    finally:
        progress.stop()
    after = store.counters()
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    elapsed = time.monotonic() - started
    print_summary(edge, delta, elapsed, out)
    return delta


def _sweep_all() -> bool:
    """At the end of a burst every pending entry's job should have run: look at them all now (not after
    FEEDSTREAM_OUTBOX_SWEEP_AFTER); True when some were queued again (or their job put back)."""
    report = sweep(current_context(), everything=True)
    return bool(report.requeued or report.revived)


def print_summary(edge: Edge, delta: dict[str, int], elapsed: float, out: TextIO) -> None:
    """The burst's one summary line, then the last error of each feed that failed."""
    polled = delta.get("polls_ok", 0) + delta.get("polls_not_modified", 0) + delta.get("polls_failed", 0)
    published = delta.get("published", 0)
    # Rate over entries handled (published or found to be duplicates): every one was fetched and extracted.
    handled = published + delta.get("duplicates_exact", 0)
    rechecks = delta.get("rechecks", 0)
    updates = (f", {delta.get('updates_published', 0)} update(s) from {rechecks} re-check(s) "
               f"({delta.get('rechecks_not_modified', 0)} not modified)") if rechecks else ""
    print(
        f"feedstream: burst done in {elapsed:.1f} s: {polled} feed(s) polled "
        f"({delta.get('polls_ok', 0)} ok, {delta.get('polls_not_modified', 0)} not modified, "
        f"{delta.get('polls_failed', 0)} failed), {delta.get('entries_new', 0)} new entries, "
        f"{published} article(s) published, {delta.get('duplicates_exact', 0)} duplicate(s) skipped, "
        f"{delta.get('fallbacks', 0)} from feed content{updates}; {handled / elapsed if elapsed else 0:.1f} entries/s",
        file=out, flush=True,
    )
    for feed in edge.feeds:
        status = edge.store.feed_status(feed.name)
        if status.get("consecutive_errors", "0") != "0" and status.get("last_error"):
            print(f"  {feed.name}: {status['last_error']}", file=out, flush=True)


def command(edge: Edge, args: argparse.Namespace) -> int:
    """``run --burst``: exit 0 once the work is done."""
    burst(edge, args.workers or edge.settings.workers)
    return 0
