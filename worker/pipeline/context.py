"""What the jobs of one worker process share, built once when it starts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rq import Queue

from worker.fetch import HttpClient, PoliteFetcher
from worker.models import Feed, NewsletterSource
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE
from worker.settings import Settings, Sources, load_sources
from worker.sources.live import LiveSources
from worker.sources.manage import apply_feeds_file
from worker.store import Store, connect

log = logging.getLogger("feedstream.jobs")


@dataclass
class Context:
    """What jobs in one worker process share: settings, the sources (live from Redis), Redis, HTTP."""

    settings: Settings
    sources: LiveSources
    store: Store
    http: HttpClient
    poll_queue: Queue
    extract_queue: Queue
    fetcher: PoliteFetcher
    # The environment as the process started: IMAP passwords are read from the variables sources name.
    env: Mapping[str, str] = field(default_factory=dict)
    # Passwords by source name, over the environment's (read with the feeds file at start; tests set them).
    mail_passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, redis_url: str, sources: Sources | None = None,
              env: Mapping[str, str] | None = None) -> Context:
        """Connect to Redis; raises ConfigError.

        Without ``sources`` it reads the feeds file and applies it (as every process does when it
        starts); a caller passing the ``sources`` it read has applied them. The jobs read the
        sources from Redis as they change; ``sources`` only lends the passwords read with it.
        """
        client = connect(redis_url)
        publishing = connect(settings.publish_redis_url) if settings.publish_redis_url else None
        store = Store(client, publish_client=publishing, **settings.store_options())
        if sources is None:
            sources = load_sources(settings.feeds_path)
            report = apply_feeds_file(store, sources.feeds, sources.newsletters, defaults=sources.defaults)
            if report.summary() != "no change":
                log.info("feeds file %s applied: %s", settings.feeds_path, report.summary())
        http = HttpClient(settings.http)
        fetcher = PoliteFetcher(http, store, host_concurrency=settings.host_concurrency,
                                robots=settings.robots, robots_ttl=settings.robots_ttl)
        return cls(settings, LiveSources(store), store, http, Queue(POLL_QUEUE, connection=client),
                   Queue(EXTRACT_QUEUE, connection=client), fetcher, dict(os.environ if env is None else env),
                   dict(sources.mail_passwords))

    @property
    def feeds(self) -> dict[str, Feed]:
        """Every feed by name, as Redis holds them now (paused ones too)."""
        return self.sources.feeds()

    @property
    def newsletters(self) -> dict[str, NewsletterSource]:
        return self.sources.newsletters()

    def mail_password(self, source: NewsletterSource) -> str:
        """An IMAP source's password: from the environment variable it names."""
        if source.name in self.mail_passwords:
            return self.mail_passwords[source.name]
        return self.env.get(source.password_env or "", "")


_context: Context | None = None


def install_context(context: Context) -> None:
    """Make ``context`` the one every job in this process uses."""
    global _context
    _context = context


def current_context() -> Context:
    """The process's context; built from the environment once if no one installed it."""
    global _context
    if _context is None:
        settings = Settings.from_env()
        if not settings.redis_url:
            raise RuntimeError("REDIS_URL must be set for a worker started outside feedstream")
        _context = Context.build(settings, settings.redis_url)
    return _context
