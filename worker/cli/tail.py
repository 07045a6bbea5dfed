"""``feedstream tail``: print articles from the stream as JSON lines, alone or as a consumer group member."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from typing import TextIO

import redis

from worker.cli.edge import Edge
from worker.consumer import Consumer
from worker.ops.signals import stop_event
from worker.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="wait for new articles")
    parser.add_argument("--from-start", action="store_true",
                        help="from the oldest entry (with --group: where a new group starts)")
    parser.add_argument("--group", help="read as a consumer group member: each article once per group, acked")
    parser.add_argument("--consumer", help="this reader's name within --group (default: tail-<host>-<pid>)")
    parser.add_argument("-n", type=int, default=10, help="how many recent articles (default 10)")
    parser.add_argument("--updates", action="store_true",
                        help="read the update events' stream <stream>:updates (FEEDSTREAM_UPDATES=separate; "
                             "with inline they are in the stream itself)")


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, or None."""
    return "--consumer needs --group" if args.consumer and not args.group else None


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Print, then exit 0 (Ctrl-C and a closed pipe end it quietly)."""
    stream = edge.store.separate_updates_stream if args.updates else edge.store.stream
    if args.group:
        stop = stop_event((signal.SIGTERM,))
        consumer = args.consumer or f"tail-{socket.gethostname()}-{os.getpid()}"
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            tail_group(edge.store.publishing, stream, args.group, consumer, args.follow, args.from_start, stop=stop)
    else:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            tail(edge.store, args.follow, args.from_start, args.n, stream=stream)
    return 0


def tail(store: Store, follow: bool, from_start: bool, count: int, out: TextIO = sys.stdout,
         stream: str | None = None) -> None:
    """Print stream entries' ``article`` documents as JSON lines (``stream``: another than the store's)."""
    after = "0-0"
    if not from_start:
        last = store.read_stream_before("+", count=count, stream=stream)
        after = last[-1][0] if last else "0-0"
        # xrevrange's oldest entry is included: step just before it
        if last:
            ms, seq = after.split("-")
            after = f"{ms}-{int(seq) - 1}" if int(seq) > 0 else f"{int(ms) - 1}-18446744073709551615"
    while True:
        entries = store.read_stream(after, count=500, block_ms=5000 if follow else None, stream=stream)
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
