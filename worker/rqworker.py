"""Worker processes: RQ's WorkerPool running our SimpleWorker subclass.

Why SimpleWorker: RQ's default Worker forks a work horse per job (~90 no-op
jobs/s on 2 cores), which would cost as much as the extraction itself; a
SimpleWorker runs jobs in its own process (~280/s). Recycling it after
``MAX_JOBS`` jobs bounds any slow growth in memory, and RQ's WorkerPool
restarts it.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker_pool import WorkerPool

from .extract import warm_up
from .jobs import EXTRACT_QUEUE, POLL_QUEUE

QUEUES = [POLL_QUEUE, EXTRACT_QUEUE]  # polls first: they are cheap and keep the schedule
MAX_JOBS = 500
# RQ's default maintenance pass runs every 10 minutes; abandoned jobs (a worker
# killed mid-job) are only recovered then. A shorter pass recovers them within a minute.
MAINTENANCE_INTERVAL = 30


class FeedstreamWorker(SimpleWorker):
    """A SimpleWorker with a short maintenance interval that retires after MAX_JOBS jobs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        if not burst:
            kwargs["max_jobs"] = kwargs.get("max_jobs") or MAX_JOBS
        return super().work(burst, *args, **kwargs)


def run_pool(connection: Redis, processes: int, *, burst: bool, logging_level: str = "INFO") -> None:
    """Run ``processes`` workers on our queues until stopped (or, with burst, until idle)."""
    warm_up()  # workers are forked from here: they share the loaded model instead of each loading it
    pool = WorkerPool(QUEUES, connection=connection, num_workers=processes, worker_class=FeedstreamWorker)
    pool.start(burst=burst, logging_level=logging_level)


def pending_work(connection: Redis) -> tuple[int, float | None]:
    """(jobs queued or running, epoch of the earliest scheduled retry or None)."""
    busy = 0
    earliest: float | None = None
    for name in QUEUES:
        queue = Queue(name, connection=connection)
        busy += queue.count + StartedJobRegistry(name, connection=connection).count
        scheduled = connection.zrange(ScheduledJobRegistry(name, connection=connection).key, 0, 0,
                                      withscores=True)
        if scheduled:
            at = float(scheduled[0][1])
            earliest = at if earliest is None else min(earliest, at)
    return busy, earliest


def queue_depths(connection: Redis) -> dict[str, dict[str, int]]:
    """Jobs per queue and state (queued, started, scheduled, deferred, failed), for metrics and progress."""
    depths: dict[str, dict[str, int]] = {}
    for name in QUEUES:
        depths[name] = {
            "queued": Queue(name, connection=connection).count,
            "started": StartedJobRegistry(name, connection=connection).count,
            "scheduled": ScheduledJobRegistry(name, connection=connection).count,
            "deferred": DeferredJobRegistry(name, connection=connection).count,
            "failed": FailedJobRegistry(name, connection=connection).count,
        }
    return depths


def worker_count(connection: Redis) -> int:
    """RQ workers registered (alive: their keys expire with their heartbeat)."""
    return Worker.count(connection=connection)
