"""``feedstream status``: each feed's health, then queues, workers and the stream."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from typing import Any, TextIO

import redis

from worker.cli.edge import Edge
from worker.ops.metrics import LAG_WARN_SHARE
from worker.ops.rqworker import queue_depths, worker_count
from worker.push.websub import Subscription
from worker.sources.rules import rules_status
from worker.sources.spec import source_to_dict
from worker.store import Store
from worker.timefmt import iso_from_epoch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="as JSON")


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Print the table (or JSON) and exit 0."""
    rows = status_rows(edge)
    operations = operations_report(edge)
    if args.json:
        print(json.dumps({"feeds": rows, **operations}, indent=2))
    else:
        print_status(rows, sys.stdout)
        print_operations(operations, sys.stdout)
    return 0


def _when(value: str | None) -> str:
    return value.replace("T", " ").replace("Z", "") if value else "-"


def status_rows(edge: Edge) -> list[dict[str, object]]:
    """One row per configured feed: its health as the last polls left it."""
    due = edge.store.due_times()
    now = time.time()
    subscriptions = edge.store.websub_subscriptions([feed.name for feed in edge.feeds])
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
            "paused": feed.name in edge.paused,
            "websub": _websub_view(subscriptions.get(feed.name), now, bool(edge.settings.public_url)),
            **rules_status(source_to_dict(feed), status),
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
            "paused": source.name in edge.paused,
            **rules_status(source_to_dict(source), status),
        })
    return rows


def print_status(rows: list[dict[str, object]], out: TextIO) -> None:
    """The feed table, with a line under a feed for its error, retirement, move or deferral.

    Newsletter rows have no move, retirement or deferral: hence ``row.get``.
    """
    header = f"{'feed':<20} {'last poll':<20} {'http':<5} {'validators':<10} {'seen':>6} {'errors':>6}  next poll"
    print(header, file=out)
    for row in rows:
        validators = "+".join(k for k, name in (("etag", "etag"), ("lm", "last_modified")) if row[name]) or "-"
        print(f"{row['feed']!s:<20} {_when(row['last_poll']):<20} {row['http_status'] or '-'!s:<5} "  # type: ignore[arg-type]
              f"{validators:<10} {row['entries_seen']!s:>6} {row['consecutive_errors']!s:>6}  "
              f"{_when(row['next_poll'])}", file=out)  # type: ignore[arg-type]
        if row["last_error"]:
            print(f"{'':<20} last error: {row['last_error']}", file=out)
        if row.get("retired"):
            print(f"{'':<20} retired (no more polls): {row['retired']}", file=out)
        if row.get("moved_to"):
            print(f"{'':<20} moving: permanent redirect to {row['moved_to']} seen {row['moved_polls']} poll(s) "
                  "in a row", file=out)
        if row.get("adopted_url"):
            print(f"{'':<20} moved: now polled at {row['adopted_url']}", file=out)
        if row.get("deferred"):
            print(f"{'':<20} deferred: {row['deferred']}", file=out)
        if row.get("websub"):
            print(f"{'':<20} {websub_line(row['websub'])}", file=out)  # type: ignore[arg-type]
        if row.get("paused"):
            print(f"{'':<20} paused (feedstream sources resume {row['feed']})", file=out)
        if row.get("filtered_total"):
            per_rule = ", ".join(f"{rule}: {n}" for rule, n in row["filtered"].items())  # type: ignore[attr-defined]
            print(f"{'':<20} filtered by its rules: {row['filtered_total']} ({per_rule})", file=out)
        if row.get("last_selector_miss"):
            print(f"{'':<20} {row.get('selector_misses')} selector miss(es), last: {row['last_selector_miss']}",
                  file=out)


def _websub_view(sub: Subscription | None, now: float, public_url: bool) -> dict[str, object] | None:
    if sub is None or not (sub.found_hub or sub.hub):
        return None
    view = sub.view(now)
    for key in ("expires_at", "last_push"):
        if key in view:
            view[key] = iso_from_epoch(float(view[key]))  # type: ignore[arg-type]
    if not public_url and view["state"] == "not subscribed":
        view["state"] = "hub found; not subscribed (FEEDSTREAM_PUBLIC_URL is not set)"
    return view


def websub_line(view: dict[str, object]) -> str:
    """One line on a feed's WebSub subscription: its state, hub, lease and last push."""
    parts = [f"websub: {view['state']} at {view['hub']}"]
    if view.get("expires_at"):
        parts.append(f"lease until {_when(str(view['expires_at']))}")
    parts.append(f"last push {_when(str(view['last_push']))} ({view['pushes']} in all)" if view.get("last_push")
                 else "no push yet")
    if view.get("refused"):
        parts.append(f"{view['refused']} refused, last: {view.get('last_refused')}")
    if view.get("last_error"):
        parts.append(f"error: {view['last_error']}")
    return "; ".join(parts)


def redis_report(store: Store) -> dict[str, object]:
    """Whether Redis accepts writes now (a live probe write), and its memory against its limit."""
    refusal = store.probe_write()
    report: dict[str, object] = {"accepts_writes": refusal is None, "refusing": refusal}
    with contextlib.suppress(redis.RedisError):
        report.update(store.memory())
    return report


def operations_report(edge: Edge) -> dict[str, object]:
    """Redis, queues, workers, the outbox, the stream and its consumer groups, as plain values."""
    store = edge.store
    connection = store.redis
    pending, next_check = store.outbox_size()
    counters = store.counters()
    return {
        "redis": redis_report(store),
        "queues": queue_depths(connection),
        "workers": worker_count(connection),
        "outbox": {"pending": pending, "next_check": iso_from_epoch(next_check) if next_check else None,
                   "requeued": counters.get("entries_requeued", 0), "given_up": counters.get("entries_given_up", 0)},
        "stream": {"name": store.stream, "length": store.stream_length(), "maxlen": store.stream_maxlen,
                   "groups": [g.to_dict() for g in store.group_health(counters.get("published"))]},
    }


def _about(value: int, exact: bool) -> str:
    return str(value) if exact else f"~{value}"


def print_operations(report: dict[str, Any], out: TextIO) -> None:
    """Below the feed table: Redis, queues, workers, the outbox, the stream and its consumer groups."""
    server = report["redis"]
    if not server["accepts_writes"]:
        print(f"\nREDIS IS REFUSING WRITES: {server['refusing']} (nothing can be queued, marked or published "
              "until it passes)", file=out)
    queues = "; ".join(f"{name} {d['queued']} queued, {d['started']} running, {d['scheduled']} waiting to retry, "
                       f"{d['failed']} failed" for name, d in report["queues"].items())
    print(f"\nqueues: {queues}", file=out)
    print(f"workers: {report['workers']} alive", file=out)
    outbox = report["outbox"]
    print(f"outbox: {outbox['pending']} entries queued, not yet published or decided; {outbox['requeued']} re-queued "
          f"by the sweeper, {outbox['given_up']} given up", file=out)
    stream = report["stream"]
    group_text = ", ".join(f"{g['name']} ({g['consumers']} consumer(s), {g['pending']} unacked)"
                           for g in stream["groups"])
    print(f"stream {stream['name']!r}: {stream['length']} entries; consumer groups: {group_text or 'none'}",
          file=out)
    for g in stream["groups"]:
        line = (f"  {g['name']}: {_about(g['lag'], g['lag_exact'])} not yet delivered (lag), "
                f"{_about(g['trimmed'], g['trimmed_exact'])} trimmed before it read them")
        if g["trimmed"]:
            line += ": LOST"
        if stream["maxlen"] and g["lag"] > LAG_WARN_SHARE * stream["maxlen"]:
            line += f"; lag above {LAG_WARN_SHARE:.0%} of MAXLEN {stream['maxlen']}: about to lose entries"
        print(line, file=out)
