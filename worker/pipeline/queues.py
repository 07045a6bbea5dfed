"""The RQ queues and how work goes onto them.

Jobs are enqueued by the dotted paths of their entry points in worker/jobs.py, not
by reference: those paths are what RQ stores in queued, scheduled and failed jobs (a
contract), and naming them here keeps the pipeline from importing jobs.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import zip_longest
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import uuid4

from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from worker.dedupe.keys import guid_key
from worker.fetch import host_of
from worker.models import Entry

if TYPE_CHECKING:
    from worker.pipeline.context import Context

T = TypeVar("T")

POLL_QUEUE = "poll"
EXTRACT_QUEUE = "extract"
MAIL_QUEUE = EXTRACT_QUEUE  # mail jobs ride the extract queue, which every worker already serves

# The entry points' dotted paths (see worker/jobs.py).
POLL_FEED_JOB = "worker.jobs.poll_feed"
POLL_FEEDS_JOB = "worker.jobs.poll_feeds"
EXTRACT_ENTRIES_JOB = "worker.jobs.extract_entries"
INGEST_MAIL_JOB = "worker.jobs.ingest_mail"
RECHECK_ARTICLES_JOB = "worker.jobs.recheck_articles"
INGEST_PUSH_JOB = "worker.jobs.ingest_push"

# Articles per extract job, all of one host (host_batches): enough that RQ's per-job cost
# (~25 Redis commands, about 1 ms of a worker's CPU at 4 a job) is small next to extraction,
# few enough that a retry redoes little and a slow host holds few pages back. A worker
# thread waits for its job's pages (the host's slots serve them two at a time by default)
# while the process's other threads extract theirs.
EXTRACT_BATCH = 8
POLL_BATCH = 16
POLL_TIMEOUT = 120
# Each poll ends within its HTTP deadline; a batch runs POLL_THREADS (pipeline/poll.py) at a time.
POLL_BATCH_TIMEOUT = POLL_TIMEOUT + 60
EXTRACT_FAILURE_TTL = 7 * 86400


def enqueue_poll(queue: Queue, feed_name: str) -> bool:
    """Queue a poll of the feed unless one is already queued or running (RQ unique job id)."""
    try:
        queue.enqueue(
            POLL_FEED_JOB, feed_name, job_id=f"poll-{feed_name}", unique=True,
            job_timeout=POLL_TIMEOUT, result_ttl=0, failure_ttl=60,
            description=f"poll {feed_name}",
        )
    except DuplicateJobError:
        return False
    return True


def enqueue_polls(queue: Queue, feed_names: Sequence[str]) -> int:
    """Queue polls of many due feeds, POLL_BATCH per job, in one round trip; returns the jobs queued.

    One job per feed would spend more on RQ's own bookkeeping (~25 Redis commands
    per job) than a 304 poll costs; ``poll_feeds`` keeps a feed from being
    polled twice at once with a per-feed lock instead of RQ's unique job id.
    """
    jobs = [
        Queue.prepare_data(
            POLL_FEEDS_JOB, args=(list(batch),), timeout=POLL_BATCH_TIMEOUT, result_ttl=0, failure_ttl=60,
            description=f"poll {len(batch)} feed(s): {', '.join(batch[:3])}{', ...' if len(batch) > 3 else ''}",
        )
        for batch in even_batches(list(feed_names), POLL_BATCH)
    ]
    if jobs:
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def even_batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in as few consecutive slices of at most ``size`` as can be, all about as long.

    (17 feeds make jobs of 9 and 8, not 16 and 1: the entries a poll job queues are
    interleaved across its feeds' hosts, and a job of one feed would have nothing to mix.)
    """
    if not items:
        return
    count = math.ceil(len(items) / size)
    step = math.ceil(len(items) / count)
    yield from batches(items, step)


def host_batches(entries: Sequence[Entry], size: int) -> list[Sequence[Entry]]:
    """Batches of at most ``size`` entries of one host each, the hosts taking turns.

    Workers take jobs in queue order: a big feed's pages in a row would put every worker
    behind its host's few slots while the other hosts' pages wait in the queue. A feed whose
    entries are on several hosts (an aggregator's) is batched on its own instead, ``size`` per
    job: one job per host would spend RQ's per-job cost on a page or two each.
    """
    hosts_of: dict[str, set[str]] = {}
    for entry in entries:
        hosts_of.setdefault(entry.feed, set()).add(host_of(entry.url))
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        key = ("host", host_of(entry.url)) if len(hosts_of[entry.feed]) == 1 else ("feed", entry.feed)
        groups.setdefault(key, []).append(entry)
    rounds = zip_longest(*(list(batches(items, size)) for items in groups.values()))
    return [batch for turn in rounds for batch in turn if batch is not None]


def _extract_timeout(context: Context, entries: int) -> int:
    return int(entries * (context.settings.http.deadline + 10) + 30)


@dataclass(frozen=True)
class ExtractBatch:
    """The entries one extract job will take, and that job's id, chosen before anything is written: the
    outbox records which job should settle each entry in the same step as the poll marks them seen."""

    job_id: str
    entries: Sequence[Entry]

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """(outbox token, entry dict) of each entry: the token is its hashed GUID, as in the seen set."""
        return [(outbox_token(entry.feed, entry.guid), entry.to_dict()) for entry in self.entries]


def outbox_token(feed: str, guid: str) -> str:
    """The outbox record of a feed's entry: its hashed GUID."""
    return guid_key(feed, guid)


def plan_extracts(entries: Sequence[Entry]) -> list[ExtractBatch]:
    """New entries in batches of EXTRACT_BATCH of one host each, the hosts taking turns (host_batches),
    each with the id of the job that will take it."""
    return [ExtractBatch(uuid4().hex, batch) for batch in host_batches(entries, EXTRACT_BATCH)]


def pending_entries(plan: Sequence[ExtractBatch]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The plan as the outbox records it: ``{job id: [(token, entry dict), ...]}``."""
    return {batch.job_id: batch.pending() for batch in plan}


def enqueue_extracts(context: Context, plan: Sequence[ExtractBatch]) -> int:
    """Queue the planned extract jobs (see :func:`plan_extracts`) in one round trip."""
    jobs = [
        Queue.prepare_data(
            EXTRACT_ENTRIES_JOB,
            args=([entry.to_dict() for entry in batch.entries],),
            job_id=batch.job_id,
            timeout=_extract_timeout(context, len(batch.entries)),
            result_ttl=0,  # a finished batch leaves nothing behind: its counts are in the counters
            failure_ttl=EXTRACT_FAILURE_TTL,
            # A crashed or killed worker counts against these too (RQ retries abandoned jobs),
            # so there are enough that a few crashes in a row still publish the batch. The first
            # retry is immediate: a delayed one waits for RQ's scheduler, whose lock outlives a
            # killed worker that held it by up to 61 s (see worker/ops/rqworker.py).
            retry=Retry(max=4, interval=[0, 10, 30, 60]),
            description=f"extract {len(batch.entries)} from {batch.entries[0].feed}",
        )
        for batch in plan
    ]
    if jobs:
        with context.store.redis.pipeline() as pipe:
            context.extract_queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


def hold_extracts(context: Context, entries: list[dict[str, Any]], until: float) -> None:
    """Queue entries again for when their host lets us back (RQ's scheduler moves the job at ``until``).

    Their outbox records are pointed at the new job first, to be checked after it is due.
    """
    hosts = sorted({host_of(raw.get("url", "")) for raw in entries})
    at = until + random.uniform(0, 5)
    job_id = uuid4().hex
    context.store.assign_pending([outbox_token(raw.get("feed", ""), raw.get("guid", "")) for raw in entries],
                                 at + context.settings.outbox_sweep_after, job_id=job_id)
    context.extract_queue.enqueue_at(
        datetime.fromtimestamp(at, UTC), EXTRACT_ENTRIES_JOB, entries, job_id=job_id,
        job_timeout=_extract_timeout(context, len(entries)), result_ttl=0, failure_ttl=EXTRACT_FAILURE_TTL,
        retry=Retry(max=2, interval=[5, 30]),
        description=f"extract {len(entries)} held back by {', '.join(hosts)[:80]}",
    )


def enqueue_rechecks(context: Context, items: Sequence[dict[str, Any]], at: float | None = None) -> int:
    """Queue re-checks of published articles (``{"id": ..., "entry": ...}`` each), several per job, in one
    round trip; ``at``: not before then (their host asked us to wait). They ride the extract queue."""
    batched = list(batches(items, EXTRACT_BATCH))
    options: dict[str, Any] = {"result_ttl": 0, "failure_ttl": EXTRACT_FAILURE_TTL,
                               "retry": Retry(max=3, interval=[0, 10, 30])}
    if at is not None:  # rare: one enqueue each
        for batch in batched:
            context.extract_queue.enqueue_at(
                datetime.fromtimestamp(at + random.uniform(0, 5), UTC), RECHECK_ARTICLES_JOB, list(batch),
                job_timeout=_extract_timeout(context, len(batch)), description=_recheck_description(batch), **options)
        return len(batched)
    jobs = [Queue.prepare_data(RECHECK_ARTICLES_JOB, args=(list(batch),), timeout=_extract_timeout(context, len(batch)),
                               description=_recheck_description(batch), **options)
            for batch in batched]
    if jobs:
        with context.store.redis.pipeline() as pipe:
            context.extract_queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


def _recheck_description(batch: Sequence[dict[str, Any]]) -> str:
    return f"re-check {len(batch)} from {batch[0]['entry'].get('feed', '?')}"


def enqueue_mail(queue: Queue, source_name: str, raw: bytes, origin: str = "") -> str:
    """Queue one received email (its bytes) for ``ingest_mail``; returns the job id."""
    job = queue.enqueue(
        INGEST_MAIL_JOB, source_name, raw, origin, job_timeout=120, result_ttl=3600,
        failure_ttl=EXTRACT_FAILURE_TTL, retry=Retry(max=2, interval=[5, 30]),
        description=f"mail for {source_name} ({origin or 'smtp'})",
    )
    return job.id


def enqueue_push(queue: Queue, source_name: str, body: bytes, content_type: str) -> str:
    """Queue a WebSub push (a feed body whose signature checked) for ``ingest_push``; returns the job id."""
    job = queue.enqueue(INGEST_PUSH_JOB, source_name, body, content_type, job_timeout=POLL_TIMEOUT, result_ttl=0,
                        failure_ttl=EXTRACT_FAILURE_TTL, retry=Retry(max=2, interval=[5, 30]),
                        description=f"push for {source_name}")
    return job.id
