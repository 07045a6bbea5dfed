"""Running the real pipeline inside a test: real Redis, real RQ SimpleWorker, real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from worker.fetch import HttpSettings
from worker.pipeline.context import Context, install_context
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll
from worker.settings import Settings, load_sources
from worker.sources.manage import AdminOptions, SourceAdmin


def write_feeds(path: Path, feeds: dict[str, str], **options: Any) -> Path:
    lines = []
    for name, url in feeds.items():
        lines += ["[[feeds]]", f'name = "{name}"', f'url = "{url}"']
        for key, value in options.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def make_context(redis_url: str, feeds_path: Path, deadline: float = 5.0, allow_private: bool = True,
                 **overrides: Any) -> Context:
    settings = Settings(redis_url=redis_url, feeds_path=feeds_path,
                        http=HttpSettings(allow_private=allow_private, deadline=deadline), **overrides)
    context = Context.build(settings, redis_url)
    install_context(context)
    return context


def admin_context(redis_url: str, feeds_path: Path) -> tuple[Context, SourceAdmin]:
    """A context over a feeds file naming no source, and the admin operations that add sources (unfetched)."""
    feeds_path.write_text("feeds = []\n")
    context = make_context(redis_url, feeds_path)
    return context, SourceAdmin(context.store, None, AdminOptions(allow_private=True))


def run_burst(context: Context) -> None:
    """Poll every feed once and work until the queues are empty (retries run at once)."""
    client = context.store.redis
    # in the feeds file's order (Redis lists sources by name), then any added through the API
    filed = [feed.name for feed in load_sources(context.settings.feeds_path).feeds]
    for name in dict.fromkeys([*filed, *context.feeds]):
        enqueue_poll(context.poll_queue, name)
    worker = SimpleWorker([Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client)],
                          connection=client)
    worker.work(burst=True, logging_level="WARNING")
    # A poll job records every failure on the feed's status: it must never itself fail.
    assert FailedJobRegistry(POLL_QUEUE, connection=client).count == 0


def articles(client: redis.Redis, stream: str = "articles") -> list[dict[str, Any]]:
    """Every stream entry's article document, with the flat fields checked against it."""
    docs = []
    for _entry_id, fields in client.xrange(stream):
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        doc = json.loads(decoded["article"])
        assert decoded["id"] == doc["id"] and decoded["url"] == doc["url"] and decoded["feed"] == doc["feed"]
        docs.append(doc)
    return docs
