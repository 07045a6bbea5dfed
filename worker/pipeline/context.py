"""What the jobs of one worker process share, built once when it starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from rq import Queue

from worker.fetch import HttpClient, PoliteFetcher
from worker.models import Feed, NewsletterSource
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE
from worker.settings import Settings, Sources, load_sources
from worker.store import Store, connect


@dataclass
class Context:
    """What jobs in one worker process share: settings, feeds, Redis, HTTP."""

    settings: Settings
    feeds: dict[str, Feed]
    store: Store
    http: HttpClient
    poll_queue: Queue
    extract_queue: Queue
    fetcher: PoliteFetcher
    newsletters: dict[str, NewsletterSource] = field(default_factory=dict)
    # IMAP passwords by source name, read from the env vars the sources name when the process starts
    mail_passwords: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, redis_url: str, sources: Sources | None = None) -> Context:
        """Connect to Redis; read the feeds file unless the caller has (``sources``); raises ConfigError."""
        client = connect(redis_url)
        if sources is None:
            sources = load_sources(settings.feeds_path)
        publishing = connect(settings.publish_redis_url) if settings.publish_redis_url else None
        store = Store(client, publish_client=publishing, **settings.store_options())
        http = HttpClient(settings.http)
        fetcher = PoliteFetcher(http, store, host_concurrency=settings.host_concurrency,
                                robots=settings.robots, robots_ttl=settings.robots_ttl)
        return cls(settings, {feed.name: feed for feed in sources.feeds}, store, http,
                   Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client), fetcher,
                   {source.name: source for source in sources.newsletters}, dict(sources.mail_passwords))


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
