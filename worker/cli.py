"""The ``feedstream`` command: run | worker | scheduler | tail | status.

This is the edge: settings and the feeds file are read here, once, and passed down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import redis
from rq import Queue

from . import __version__
from .embedded import EmbeddedRedis
from .errors import ConfigError
from .jobs import POLL_QUEUE, enqueue_poll
from .models import Feed
from .rqworker import pending_work, run_pool
from .scheduler import run_forever
from .settings import Settings, load_feeds
from .store import Store, connect

EXIT_CANNOT_RUN = 2
# A burst waits for RQ retries scheduled this soon; later ones (a host's long
# Retry-After) are left in the scheduled registry for the service to run.
BURST_MAX_WAIT = 60


class CannotRun(Exception):
    """The command cannot run at all (bad config, Redis unreachable): one line, exit 2."""


@dataclass
class Edge:
    """What every command starts from: settings, feeds and a live Redis."""

    settings: Settings
    feeds: list[Feed]
    redis_url: str
    store: Store
    embedded: EmbeddedRedis | None


def _say(message: str, out: TextIO = sys.stderr) -> None:
    print(f"feedstream: {message}", file=out, flush=True)


def _open_edge(need_feeds: bool = True) -> Edge:
    try:
        settings = Settings.from_env()
        feeds = load_feeds(settings.feeds_path) if need_feeds else []
    except ConfigError as exc:
        raise CannotRun(str(exc)) from None
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.var_dir)
        try:
            url = embedded.start()
        except ConfigError as exc:
            raise CannotRun(str(exc)) from None
        if embedded.owned:
            _say(f"REDIS_URL is unset: started the embedded Redis at {url}, data in {embedded.data_dir}")
        else:
            _say(f"REDIS_URL is unset: using the embedded Redis already running at {url}")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        if embedded:
            embedded.stop()
        raise CannotRun(f"cannot reach Redis at {url}: {exc}") from None
    # Children (workers, dashboard) find Redis the same way.
    os.environ["REDIS_URL"] = url
    store = Store(connect(url), **settings.store_options())
    return Edge(settings, feeds, url, store, embedded)


def _close_edge(edge: Edge) -> None:
    if edge.embedded and edge.embedded.owned:
        edge.embedded.stop()
        _say(f"stopped the embedded Redis; data kept in {edge.embedded.data_dir}")


# -- run --burst ------------------------------------------------------------------------

def burst(edge: Edge, processes: int, out: TextIO = sys.stdout) -> dict[str, int]:
    """Poll every feed once, finish all the work that makes, print a summary."""
    store = edge.store
    started = time.monotonic()
    before = store.counters()
    store.sync_feeds([feed.name for feed in edge.feeds], time.time())
    poll_queue = Queue(POLL_QUEUE, connection=store.redis)
    for feed in edge.feeds:
        enqueue_poll(poll_queue, feed.name)
    while True:
        run_pool(store.redis, processes, burst=True, logging_level="WARNING")
        busy, next_retry = pending_work(store.redis)
        if busy:
            continue
        if next_retry is None:
            break
        if next_retry - time.time() > BURST_MAX_WAIT:
            # e.g. pages held back by a host's Retry-After: they run when a worker is up then.
            _say(f"work scheduled for {datetime.fromtimestamp(next_retry, UTC):%H:%M:%S} UTC is left for later",
                 out)
            break
        time.sleep(max(0.0, next_retry - time.time()) + 0.2)
    after = store.counters()
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    elapsed = time.monotonic() - started
    _print_summary(edge, delta, elapsed, out)
    return delta


def _print_summary(edge: Edge, delta: dict[str, int], elapsed: float, out: TextIO) -> None:
    polled = delta.get("polls_ok", 0) + delta.get("polls_not_modified", 0) + delta.get("polls_failed", 0)
    published = delta.get("published", 0)
    # Rate over entries handled (published or found to be duplicates): every one was fetched and extracted.
    handled = published + delta.get("duplicates_exact", 0)
    print(
        f"feedstream: burst done in {elapsed:.1f} s: {polled} feed(s) polled "
        f"({delta.get('polls_ok', 0)} ok, {delta.get('polls_not_modified', 0)} not modified, "
        f"{delta.get('polls_failed', 0)} failed), {delta.get('entries_new', 0)} new entries, "
        f"{published} article(s) published, {delta.get('duplicates_exact', 0)} duplicate(s) skipped, "
        f"{delta.get('fallbacks', 0)} from feed content; {handled / elapsed if elapsed else 0:.1f} entries/s",
        file=out, flush=True,
    )
    for feed in edge.feeds:
        status = edge.store.feed_status(feed.name)
        if status.get("consecutive_errors", "0") != "0" and status.get("last_error"):
            print(f"  {feed.name}: {status['last_error']}", file=out, flush=True)


# -- run (service) ----------------------------------------------------------------------

def _serve(edge: Edge, processes: int, dashboard: bool) -> int:
    """Scheduler, workers and rq-dashboard in the foreground until Ctrl-C / SIGTERM."""
    python = sys.executable
    commands = {
        "scheduler": [python, "-m", "worker", "scheduler"],
        "worker": [python, "-m", "worker", "worker", "--processes", str(processes)],
    }
    if dashboard:
        commands["dashboard"] = [python, "-m", "rq_dashboard", "--redis-url", edge.redis_url,
                                 "--bind", "127.0.0.1", "--port", str(edge.settings.dashboard_port)]
    children: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for name, command in commands.items():
        children[name] = subprocess.Popen(command)
    if dashboard:
        _say(f"rq-dashboard on http://127.0.0.1:{edge.settings.dashboard_port}/")
    _say(f"polling {len(edge.feeds)} feed(s) with {processes} worker process(es); "
         f"articles go to the stream {edge.settings.stream!r}. Ctrl-C stops.")
    restarts: dict[str, float] = {}
    while not stop.wait(1.0):
        for name, child in list(children.items()):
            if child.poll() is not None:
                # Restart a crashed process, but not in a tight loop.
                if time.monotonic() - restarts.get(name, 0.0) < 5:
                    continue
                _say(f"{name} exited with {child.returncode}; restarting it")
                restarts[name] = time.monotonic()
                children[name] = subprocess.Popen(commands[name])
    _say("stopping: workers finish the job in hand")
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


# -- tail and status ------------------------------------------------------------------------

def tail(store: Store, follow: bool, from_start: bool, count: int, out: TextIO = sys.stdout) -> None:
    """Print stream entries' ``article`` documents as JSON lines."""
    after = "0-0"
    if not from_start:
        last = store.redis.xrevrange(store.stream, count=count)
        after = last[-1][0].decode() if last else "0-0"
        # xrevrange's oldest entry is included: step just before it
        if last:
            ms, seq = after.split("-")
            after = f"{ms}-{int(seq) - 1}" if int(seq) > 0 else f"{int(ms) - 1}-18446744073709551615"
    while True:
        entries = store.read_stream(after, count=500, block_ms=5000 if follow else None)
        for entry_id, fields in entries:
            print(fields.get("article", "{}"), file=out, flush=True)
            after = entry_id
        if not entries and not follow:
            return


def _when(value: str | None) -> str:
    return value.replace("T", " ").replace("Z", "") if value else "-"


def status_rows(edge: Edge) -> list[dict[str, object]]:
    """One row per configured feed: its health as the last polls left it."""
    due = edge.store.due_times()
    rows: list[dict[str, object]] = []
    for feed in edge.feeds:
        status = edge.store.feed_status(feed.name)
        next_at = due.get(feed.name)
        if next_at is not None and not math.isfinite(next_at):
            next_at = None  # retired: never polled again
        rows.append({
            "feed": feed.name,
            "url": status.get("url") or feed.url,
            "last_poll": status.get("last_poll"),
            "http_status": status.get("last_status"),
            "etag": status.get("etag"),
            "last_modified": status.get("last_modified"),
            "entries_seen": int(status.get("entries_seen", 0)),
            "consecutive_errors": int(status.get("consecutive_errors", 0)),
            "last_error": status.get("last_error"),
            "next_poll": datetime.fromtimestamp(next_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if next_at else None,
            "interval": int(status["interval"]) if status.get("interval") else None,
            "moved_to": status.get("moved_to"),
            "moved_polls": int(status.get("moved_polls", 0)),
            "adopted_url": status.get("adopted_url") if status.get("adopted_from") == feed.url else None,
            "retired": status.get("retired"),
            "deferred": status.get("deferred"),
        })
    return rows


def _print_status(rows: list[dict[str, object]], out: TextIO) -> None:
    header = f"{'feed':<20} {'last poll':<20} {'http':<5} {'validators':<10} {'seen':>6} {'errors':>6}  next poll"
    print(header, file=out)
    for row in rows:
        validators = "+".join(k for k, name in (("etag", "etag"), ("lm", "last_modified")) if row[name]) or "-"
        print(f"{row['feed']!s:<20} {_when(row['last_poll']):<20} {row['http_status'] or '-'!s:<5} "  # type: ignore[arg-type]
              f"{validators:<10} {row['entries_seen']!s:>6} {row['consecutive_errors']!s:>6}  "
              f"{_when(row['next_poll'])}", file=out)  # type: ignore[arg-type]
        if row["last_error"]:
            print(f"{'':<20} last error: {row['last_error']}", file=out)
        if row["retired"]:
            print(f"{'':<20} retired (no more polls): {row['retired']}", file=out)
        if row["moved_to"]:
            print(f"{'':<20} moving: permanent redirect to {row['moved_to']} seen {row['moved_polls']} poll(s) "
                  "in a row", file=out)
        if row["adopted_url"]:
            print(f"{'':<20} moved: now polled at {row['adopted_url']}", file=out)
        if row["deferred"]:
            print(f"{'':<20} deferred: {row['deferred']}", file=out)


# -- entry point ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"feedstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="scheduler, workers and rq-dashboard in the foreground")
    run.add_argument("--burst", action="store_true", help="poll every feed once, finish the work, exit")
    run.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    run.add_argument("--no-dashboard", action="store_true", help="do not start rq-dashboard")
    work = commands.add_parser("worker", help="worker processes only (Procfile: worker)")
    work.add_argument("--processes", type=int, default=None, help="worker processes (default: one per core)")
    work.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    commands.add_parser("scheduler", help="the scheduler only (Procfile: scheduler)")
    tail_cmd = commands.add_parser("tail", help="print articles from the stream as JSON lines")
    tail_cmd.add_argument("-f", "--follow", action="store_true", help="wait for new articles")
    tail_cmd.add_argument("--from-start", action="store_true", help="from the oldest entry")
    tail_cmd.add_argument("-n", type=int, default=10, help="how many recent articles (default 10)")
    status = commands.add_parser("status", help="feed health")
    status.add_argument("--json", action="store_true", help="as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``feedstream`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        edge = _open_edge(need_feeds=args.command != "tail")
    except CannotRun as exc:
        _say(str(exc))
        return EXIT_CANNOT_RUN
    try:
        processes = getattr(args, "workers", None) or getattr(args, "processes", None) or edge.settings.workers
        if args.command == "run" and args.burst:
            burst(edge, processes)
        elif args.command == "run":
            return _serve(edge, processes, dashboard=not args.no_dashboard)
        elif args.command == "worker":
            run_pool(edge.store.redis, processes, burst=args.burst)
        elif args.command == "scheduler":
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                run_forever(edge.store, Queue(POLL_QUEUE, connection=edge.store.redis),
                            [feed.name for feed in edge.feeds], stop,
                            feed_urls={feed.name: feed.url for feed in edge.feeds})
        elif args.command == "tail":
            with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
                tail(edge.store, args.follow, args.from_start, args.n)
        elif args.command == "status":
            rows = status_rows(edge)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                _print_status(rows, sys.stdout)
        return 0
    except redis.ConnectionError as exc:
        _say(f"lost Redis at {edge.redis_url}: {exc}")
        return EXIT_CANNOT_RUN
    finally:
        _close_edge(edge)
