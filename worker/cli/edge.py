"""What every command starts from: settings, the feeds file and a live Redis, read and opened once.

This is the edge: the environment and the feeds file are read here and passed down. Child
processes (``feedstream run`` starts the scheduler, workers, metrics and rq-dashboard) are told
where Redis is through their own environment (:func:`child_env`); this process's environment is
never written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

import redis

from worker.errors import ConfigError
from worker.models import Feed, NewsletterSource
from worker.ops.embedded import EmbeddedRedis
from worker.settings import Settings, Sources, load_sources
from worker.sources.manage import apply_feeds_file
from worker.store import Store, connect
from worker.store.refusals import is_refusal, refusal_kind

EXIT_CANNOT_RUN = 2
EXIT_REFUSED = 1  # the command ran and refused what it was asked (bad input): nothing was changed


class CannotRun(Exception):
    """The command cannot run at all (bad config, Redis unreachable): one line, exit 2."""


@dataclass
class Edge:
    """What every command starts from: settings, the sources and a live Redis.

    ``feeds`` and ``newsletters`` are every source Redis holds when the command starts, after the
    feeds file is applied; long-running processes follow later changes through LiveSources.
    """

    settings: Settings
    feeds: list[Feed]
    redis_url: str
    store: Store
    embedded: EmbeddedRedis | None
    newsletters: list[NewsletterSource] = field(default_factory=list)
    # IMAP passwords by source name, read from the environment with the feeds file
    mail_passwords: dict[str, str] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()

    @property
    def scheduled(self) -> list[str]:
        """Names the scheduler polls: every feed, and the mailboxes (IMAP, Maildir) among the newsletters,
        that is not paused."""
        names = [feed.name for feed in self.feeds] + [s.name for s in self.newsletters if s.kind != "smtp"]
        return [name for name in names if name not in self.paused]

    def child_env(self) -> dict[str, str]:
        """The environment for a child process: ours, with REDIS_URL naming the Redis this edge opened."""
        return {**os.environ, "REDIS_URL": self.redis_url}


def say(message: str, out: TextIO = sys.stderr) -> None:
    """One line from the command, prefixed ``feedstream:``."""
    print(f"feedstream: {message}", file=out, flush=True)


def open_edge(need_feeds: bool = True, feeds_optional: bool = False) -> Edge:
    """Read the settings (and the feeds file), start or find Redis; raises CannotRun.

    ``feeds_optional``: a missing feeds file is no error (admin commands work from Redis alone).
    """
    try:
        settings = Settings.from_env()
        skip_file = feeds_optional and not settings.feeds_path.exists()
        need_feeds = need_feeds or feeds_optional
        sources = load_sources(settings.feeds_path) if need_feeds and not skip_file else Sources([], [])
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
            say(f"REDIS_URL is unset: started the embedded Redis at {url}, data in {embedded.data_dir}")
        else:
            say(f"REDIS_URL is unset: using the embedded Redis already running at {url}")
    publish_url = settings.publish_redis_url
    for what, address in (("Redis", url), ("the publishing Redis", publish_url)):
        if not address:
            continue
        try:
            redis.Redis.from_url(address, socket_connect_timeout=3, socket_timeout=3).ping()
        except (redis.RedisError, OSError, ValueError) as exc:
            if embedded:
                embedded.stop()
            raise CannotRun(f"cannot reach {what} at {address}: {exc}") from None
    store = Store(connect(url), publish_client=connect(publish_url) if publish_url else None,
                  **settings.store_options())
    edge = Edge(settings, sources.feeds, url, store, embedded, sources.newsletters, dict(sources.mail_passwords))
    if need_feeds:
        try:
            _take_sources(edge, sources, apply=not skip_file)
        except redis.RedisError as exc:
            close_edge(edge)
            raise CannotRun(f"cannot read the sources from Redis at {url}: {exc}") from None
    return edge


def _take_sources(edge: Edge, sources: Sources, apply: bool = True) -> None:
    """Apply the feeds file (declaratively: see docs/sources.md), then take every source Redis holds."""
    if apply:
        try:
            report = apply_feeds_file(edge.store, sources.feeds, sources.newsletters, defaults=sources.defaults)
        except redis.RedisError as exc:
            if not is_refusal(exc):
                raise
            # Redis answers reads while it refuses writes (OOM, a read-only replica): a command that
            # only reads, or a process that must stay up, goes on with the sources Redis already holds;
            # the next process to start applies the file.
            say(f"feeds file {edge.settings.feeds_path} not applied: Redis refuses writes ({refusal_kind(exc)}); "
                "using the sources Redis holds")
        else:
            if report.summary() != "no change":
                say(f"feeds file {edge.settings.feeds_path} applied: {report.summary()}")
    records = edge.store.sources_snapshot().records
    edge.feeds = [r.source for r in records.values() if isinstance(r.source, Feed)]
    edge.newsletters = [r.source for r in records.values() if isinstance(r.source, NewsletterSource)]
    edge.paused = frozenset(name for name, record in records.items() if record.paused)


def close_edge(edge: Edge) -> None:
    """Stop the embedded Redis if this command started it (its data stays on disk)."""
    if edge.embedded and edge.embedded.owned:
        edge.embedded.stop()
        say(f"stopped the embedded Redis; data kept in {edge.embedded.data_dir}")


def prepare_workers(edge: Edge) -> None:
    """Give the RQ worker processes about to be forked from here their job context; raises CannotRun.

    Built from this edge's settings and Redis URL, so the workers need no ``REDIS_URL`` in the
    environment; nothing in it has connected yet, so each forked worker opens its own connections.
    """
    from worker.pipeline.context import Context, install_context

    try:
        sources = Sources(edge.feeds, edge.newsletters, edge.mail_passwords)
        install_context(Context.build(edge.settings, edge.redis_url, sources))
    except ConfigError as exc:
        raise CannotRun(str(exc)) from None
