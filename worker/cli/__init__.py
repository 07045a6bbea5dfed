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
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import redis
from rq import Queue

from worker import __version__
from worker.consumer import Consumer
from worker.errors import ConfigError
from worker.models import Feed, NewsletterSource
from worker.ops.embedded import EmbeddedRedis
from worker.ops.metrics import make_app, serve
from worker.ops.rqworker import pending_work, queue_depths, run_pool, worker_count
from worker.ops.scheduler import TICK_SECONDS, run_forever
from worker.pipeline.queues import POLL_QUEUE, enqueue_poll
from worker.settings import Settings, Sources, load_sources
from worker.sources.manage import apply_feeds_file
from worker.store import Store, connect, connect_quick
from worker.timefmt import iso_from_epoch

EXIT_CANNOT_RUN = 2
# A burst waits for RQ retries scheduled this soon; later ones (a host's long
# Retry-After) are left in the scheduled registry for the service to run.
BURST_MAX_WAIT = 60
SHUTDOWN_GRACE_SECONDS = 300


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
    newsletters: list[NewsletterSource] = field(default_factory=list)

    @property
    def scheduled(self) -> list[str]:
        """Names the scheduler polls: every feed, and the mailboxes (IMAP, Maildir) among the newsletters."""
        return [feed.name for feed in self.feeds] + [s.name for s in self.newsletters if s.kind != "smtp"]


def _say(message: str, out: TextIO = sys.stderr) -> None:
    print(f"feedstream: {message}", file=out, flush=True)


def _open_edge(need_feeds: bool = True) -> Edge:
    try:
        settings = Settings.from_env()
        sources = load_sources(settings.feeds_path) if need_feeds else Sources([], [])
        feeds, newsletters = sources.feeds, sources.newsletters
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
    if need_feeds:
        report = apply_feeds_file(store, feeds, newsletters)
        if report.summary() != "no change":
            _say(f"feeds file {settings.feeds_path} applied: {report.summary()}")
    return Edge(settings, feeds, url, store, embedded, newsletters)


def _close_edge(edge: Edge) -> None:
    if edge.embedded and edge.embedded.owned:
        edge.embedded.stop()
        _say(f"stopped the embedded Redis; data kept in {edge.embedded.data_dir}")


# -- run --burst ------------------------------------------------------------------------

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
    started = time.monotonic()
    before = store.counters()
    store.sync_feeds(edge.scheduled, time.time())
    poll_queue = Queue(POLL_QUEUE, connection=store.redis)
    for name in edge.scheduled:
        enqueue_poll(poll_queue, name)
    progress = Progress(store, before, len(edge.feeds), progress_out or sys.stderr)
    progress.start()
    try:
        while True:
            run_pool(store.redis, processes, burst=True, logging_level="WARNING")
            busy, next_retry = pending_work(store.redis)
            if busy:
                continue
            if next_retry is None:
                break
            if next_retry - time.time() > BURST_MAX_WAIT:
                # e.g. pages held back by a host's Retry-After: they run when a worker is up then.
                _say(f"work scheduled for {datetime.fromtimestamp(next_retry, UTC):%H:%M:%S} UTC is left for "
                     "later", out)
                break
            time.sleep(max(0.0, next_retry - time.time()) + 0.2)
    finally:
        progress.stop()
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
    commands["metrics"] = [python, "-m", "worker", "metrics", "--port", str(edge.settings.metrics_port)]
    if dashboard:
        commands["dashboard"] = [python, "-m", "rq_dashboard", "--redis-url", edge.redis_url,
                                 "--bind", "127.0.0.1", "--port", str(edge.settings.dashboard_port)]
    children: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Children get their own session: a terminal's Ctrl-C (or a process manager signalling our
    # group) reaches only us, and each child gets exactly one SIGTERM from us below. RQ treats a
    # second signal more than a second after the first as a cold shutdown, which would cut the job
    # in hand short.
    def _start(command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, start_new_session=True)

    for name, command in commands.items():
        children[name] = _start(command)
    if dashboard:
        _say(f"rq-dashboard on http://127.0.0.1:{edge.settings.dashboard_port}/")
    _say(f"metrics on http://127.0.0.1:{edge.settings.metrics_port}/metrics, health on /healthz")
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
                children[name] = _start(commands[name])
    _say("stopping: workers finish the job in hand")
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    # An extract job may run for minutes (a batch of slow pages); give it the time rather than
    # cut it short. A job killed anyway is recovered by RQ's maintenance pass, and the atomic publish
    # keeps its re-run from doubling anything.
    for child in children.values():
        try:
            child.wait(timeout=SHUTDOWN_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


# -- newsletters and feeds out ----------------------------------------------------------------

def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


def run_smtp(edge: Edge) -> int:
    """The newsletter SMTP endpoint until SIGTERM/Ctrl-C: accepted mail is queued for the workers."""
    from worker.mail.smtp import start_smtp
    from worker.pipeline.mail import record_mail_refused
    from worker.pipeline.queues import EXTRACT_QUEUE, enqueue_mail

    sources = {s.name: s for s in edge.newsletters if s.kind == "smtp"}
    if not sources:
        _say("no [[newsletters]] with kind = \"smtp\" in the feeds file: nothing to receive")
        return EXIT_CANNOT_RUN
    queue = Queue(EXTRACT_QUEUE, connection=edge.store.redis)
    host, port = edge.settings.smtp_host, edge.settings.smtp_port
    try:
        controller = start_smtp(
            list(sources.values()), lambda name, raw: enqueue_mail(queue, name, raw, "smtp"), host=host, port=port,
            refused=lambda name, reason: record_mail_refused(edge.store, sources[name], reason))
    except (OSError, RuntimeError) as exc:
        _say(f"cannot listen for SMTP on {host}:{port}: {exc}")
        return EXIT_CANNOT_RUN
    _say(f"SMTP on {host}:{port} for " + ", ".join(f"{s.address} ({s.name})" for s in sources.values()))
    try:
        _wait_for_signal()
    finally:
        controller.stop()
    return 0


def run_serve(edge: Edge) -> int:
    """Serve the stream as Atom and JSON Feed until SIGTERM/Ctrl-C."""
    from worker.out.server import make_server

    host, port = edge.settings.serve_host, edge.settings.serve_port
    try:
        server = make_server(edge.store, host, port)
    except OSError as exc:
        _say(f"cannot listen on {host}:{port}: {exc}")
        return EXIT_CANNOT_RUN
    _say(f"serving the stream {edge.settings.stream!r} as feeds on http://{host}:{server.server_port}/feed.atom")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _wait_for_signal()
    finally:
        server.shutdown()
        server.server_close()
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


def tail_group(client: redis.Redis, stream: str, group: str, consumer: str, follow: bool, from_start: bool,
               out: TextIO = sys.stdout, stop: threading.Event | None = None) -> int:
    """Print articles as a member of a consumer group, acknowledging each once printed."""

    def _print(article: dict[str, object]) -> None:
        print(json.dumps(article, ensure_ascii=False), file=out, flush=True)

    reader = Consumer(client, stream=stream, group=group, consumer=consumer, from_start=from_start)
    return reader.run(_print, follow=follow, stop=stop).handled


# /healthz fails when the scheduler has not ticked for this long: several ticks, with room for a slow
# Redis round trip or a busy machine (a tick is TICK_SECONDS).
HEALTH_STALE_SECONDS = max(3 * TICK_SECONDS, 15.0)


def metrics_server(edge: Edge, host: str, port: int, stop: threading.Event) -> None:
    """Serve /metrics and /healthz until ``stop``; reads Redis with a fail-fast client."""
    quick = connect_quick(edge.redis_url)
    store = Store(quick, stream=edge.settings.stream, prefix=edge.settings.prefix)
    app = make_app(store, lambda: queue_depths(quick), lambda: worker_count(quick), HEALTH_STALE_SECONDS)
    serve(app, host, port, stop)


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
            "next_poll": iso_from_epoch(next_at) if next_at else None,
            "interval": int(status["interval"]) if status.get("interval") else None,
            "moved_to": status.get("moved_to"),
            "moved_polls": int(status.get("moved_polls", 0)),
            "adopted_url": status.get("adopted_url") if status.get("adopted_from") == feed.url else None,
            "retired": status.get("retired"),
            "deferred": status.get("deferred"),
        })
    for source in edge.newsletters:
        status = edge.store.feed_status(source.name)
        next_at = due.get(source.name)
        rows.append({
            "feed": source.name,
            "url": f"{source.kind}:{source.address or source.path or f'{source.user}@{source.host}/{source.folder}'}",
            "last_poll": status.get("last_poll") or status.get("last_mail"),
            "http_status": status.get("last_status"),
            "etag": None,
            "last_modified": None,
            "entries_seen": int(status.get("mails_published", 0)),
            "consecutive_errors": int(status.get("consecutive_errors", 0)),
            "last_error": status.get("last_error"),
            "next_poll": iso_from_epoch(next_at) if next_at else None,
            "mails_refused": int(status.get("mails_refused", 0)),
            "last_refused": status.get("last_refused"),
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


def _print_operations(edge: Edge, out: TextIO) -> None:
    """Below the feed table: queues, workers, the stream and its consumer groups."""
    connection = edge.store.redis
    depths = queue_depths(connection)
    queues = "; ".join(f"{name} {d['queued']} queued, {d['started']} running, {d['scheduled']} waiting to retry, "
                       f"{d['failed']} failed" for name, d in depths.items())
    print(f"\nqueues: {queues}", file=out)
    print(f"workers: {worker_count(connection)} alive", file=out)
    groups = edge.store.stream_groups()
    group_text = ", ".join(f"{g['name']} ({g['consumers']} consumer(s), {g['pending']} unacked)" for g in groups)
    print(f"stream {edge.store.stream!r}: {edge.store.stream_length()} entries; consumer groups: "
          f"{group_text or 'none'}", file=out)


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
    tail_cmd.add_argument("--from-start", action="store_true",
                          help="from the oldest entry (with --group: where a new group starts)")
    tail_cmd.add_argument("--group", help="read as a consumer group member: each article once per group, acked")
    tail_cmd.add_argument("--consumer", help="this reader's name within --group (default: tail-<host>-<pid>)")
    tail_cmd.add_argument("-n", type=int, default=10, help="how many recent articles (default 10)")
    metrics = commands.add_parser("metrics", help="serve /metrics and /healthz (Procfile: metrics)")
    metrics.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    metrics.add_argument("--port", type=int, default=None, help="port (default FEEDSTREAM_METRICS_PORT or 9184)")
    commands.add_parser("smtp", help="the newsletter SMTP endpoint (Procfile: smtp)")
    commands.add_parser("serve", help="serve the stream as Atom and JSON Feed (Procfile: web)")
    status = commands.add_parser("status", help="feed health")
    status.add_argument("--json", action="store_true", help="as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``feedstream`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "consumer", None) and not getattr(args, "group", None):
        parser.error("--consumer needs --group")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        edge = _open_edge(need_feeds=args.command not in ("tail", "metrics"))
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
                run_forever(edge.store, Queue(POLL_QUEUE, connection=edge.store.redis), stop)
        elif args.command == "metrics":
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            port = edge.settings.metrics_port if args.port is None else args.port
            _say(f"metrics on http://{args.bind}:{port}/metrics, health on /healthz")
            metrics_server(edge, args.bind, port, stop)
        elif args.command == "tail" and args.group:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            consumer = args.consumer or f"tail-{socket.gethostname()}-{os.getpid()}"
            with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
                tail_group(edge.store.redis, edge.settings.stream, args.group, consumer, args.follow,
                           args.from_start, stop=stop)
        elif args.command == "smtp":
            return run_smtp(edge)
        elif args.command == "serve":
            return run_serve(edge)
        elif args.command == "tail":
            with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
                tail(edge.store, args.follow, args.from_start, args.n)
        elif args.command == "status":
            rows = status_rows(edge)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                _print_status(rows, sys.stdout)
                _print_operations(edge, sys.stdout)
        return 0
    except redis.ConnectionError as exc:
        _say(f"lost Redis at {edge.redis_url}: {exc}")
        return EXIT_CANNOT_RUN
    finally:
        _close_edge(edge)
