"""RQ entry points: thin adapters from a job's plain arguments to the pipeline (worker/pipeline/).

Their dotted paths (``worker.jobs.poll_feed``, ``worker.jobs.poll_feeds``,
``worker.jobs.extract_entries``, ``worker.jobs.ingest_mail``, ``worker.jobs.poll_mailbox``,
``worker.jobs.recheck_articles``) are a contract: RQ stores them in queued, scheduled and failed
jobs, so they stay importable here under these names. Each runs with the process's context
(``install_context`` when the worker starts, else built from the environment).
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from worker.pipeline import entries as extraction
from worker.pipeline import mail, poll, push, updates
from worker.pipeline.context import current_context


def poll_feed(feed_name: str) -> dict[str, Any]:
    """Fetch one feed, find entries it has not listed before, queue their extraction."""
    return poll.poll_feed(current_context(), feed_name)


def poll_feeds(feed_names: list[str]) -> list[dict[str, Any]]:
    """Poll several feeds at once; skips any another poll holds."""
    return poll.poll_feeds(current_context(), feed_names)


def extract_entries(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Fetch, extract and publish each entry exactly once; fall back to the feed's content.

    Pages that may come later make the job fail so that RQ retries it, unless this is its last try.
    """
    job = get_current_job()
    return extraction.extract_entries(current_context(), entries, final_attempt=job is None or not job.retries_left)


def ingest_mail(source_name: str, raw: bytes, origin: str = "") -> dict[str, Any]:
    """Read one email, publish it once, record the outcome on the source."""
    return mail.ingest_mail(current_context(), source_name, raw, origin)


def poll_mailbox(source_name: str) -> dict[str, Any]:
    """Read the new mail of an IMAP or Maildir source and queue each message for ``ingest_mail``."""
    return mail.poll_mailbox(current_context(), source_name)


def recheck_articles(items: list[dict[str, Any]]) -> dict[str, int]:
    """Re-check published articles whose feed entry changed; publish each real change as the next version once."""
    job = get_current_job()
    return updates.recheck_articles(current_context(), items, final_attempt=job is None or not job.retries_left)


def ingest_push(source_name: str, body: bytes, content_type: str = "") -> dict[str, Any]:
    """Take a feed body a WebSub hub pushed (signature checked) as a poll of the source that did not fetch."""
    return push.ingest_push(current_context(), source_name, body, content_type)
