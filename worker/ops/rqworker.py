"""Worker processes: RQ's WorkerPool running our SimpleWorker subclass.

Why SimpleWorker: RQ's default Worker forks a work horse per job (~90 no-op
jobs/s on 2 cores), which would cost as much as the extraction itself; a
SimpleWorker runs jobs in its own process (~280/s). Recycling it after
``MAX_JOBS`` jobs bounds any slow growth in memory, and RQ's WorkerPool
restarts it.
"""

from __future__ import annotations

import gc
import threading
from multiprocessing.process import BaseProcess
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker, Worker, worker_pool
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.logutils import setup_loghandlers
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

from worker.extract import warm_up
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE

QUEUES = [POLL_QUEUE, EXTRACT_QUEUE]  # polls first: they are cheap and keep the schedule
MAX_JOBS = 500
# Recovering abandoned jobs (a worker killed mid-job) within a minute.
#
# RQ marks a running job's entry in StartedJobRegistry with an expiry and only a
# maintenance pass (StartedJobRegistry.cleanup, run by some live worker between
# jobs) retries or fails the entries that expired. Out of the box, for a
# SimpleWorker, that expiry is the job's timeout + 60 s (a SimpleWorker sends no
# heartbeat while a job runs), the pass runs every 10 minutes, and an idle worker
# blocks in BLPOP for worker_ttl - 15 = 405 s between passes: a killed worker's
# job waits many minutes. So:
# - while a job runs, a thread renews its entry every HEARTBEAT_EVERY seconds
#   with an expiry of HEARTBEAT_TTL, so a dead worker's entry lapses within
#   HEARTBEAT_TTL seconds while a slow but live job never does;
# - the maintenance pass runs every MAINTENANCE_INTERVAL seconds, and idle
#   workers wake at least every WORKER_TTL - 15 seconds to run it.
# Worst case: 20 s (entry lapses) + 15 s (next pass), then RQ re-queues the job at
# once (extract jobs' first retry has no delay), comfortably under a minute. A
# delayed retry (a job abandoned a second time) goes through RQ's scheduler, and
# when the killed worker was the one holding the scheduler lock, nothing moves
# scheduled jobs until that lock's 61 s expiry: up to ~1.5 minutes then.
HEARTBEAT_EVERY = 5
HEARTBEAT_TTL = 20
MAINTENANCE_INTERVAL = 15
WORKER_TTL = 30
# A burst worker with nothing queued waits this long (seconds) for jobs still running to queue more.
BURST_WAIT = 1


class FeedstreamWorker(SimpleWorker):
    """A SimpleWorker that heartbeats running jobs, recovers abandoned ones quickly and retires after MAX_JOBS."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("job_monitoring_interval", HEARTBEAT_EVERY)
        super().__init__(*args, **kwargs)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return HEARTBEAT_TTL

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_EVERY):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # a missed beat only risks an early retry, which publishing makes harmless
                    self.log.warning("heartbeat for job %s failed", job.id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
        thread.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            thread.join()
        self.set_state(WorkerStatus.IDLE)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        if timeout is not None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        # Burst mode (RQ asks without a timeout): quit only when nothing is queued and nothing is
        # running either. A running poll queues pages a moment later; workers that had quit on
        # an empty queue would leave them all to the one worker that ran the poll.
        while True:
            result = super().dequeue_job_and_maintain_ttl(None, max_idle_time)
            if result is not None or self._stop_requested or not pending_work(self.connection)[0]:
                return result
            result = super().dequeue_job_and_maintain_ttl(BURST_WAIT, BURST_WAIT)
            if result is not None or self._stop_requested:
                return result

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        if not burst:
            kwargs["max_jobs"] = kwargs.get("max_jobs") or MAX_JOBS
        return super().work(burst, *args, **kwargs)


class FeedstreamPool(WorkerPool):
    """RQ's WorkerPool; each process runs ``threads`` workers (worker/ops/workgroup.py); in burst mode
    it returns as soon as its last worker exits.

    RQ's own loop checks its workers once a second (after a 0.1 s join on each live one),
    so a burst ended on average over half a second after its work did.
    """

    def __init__(self, *args: Any, threads: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = threads

    def get_worker_process(self, name: str, burst: bool, _sleep: float = 0,
                           logging_level: str = "INFO") -> BaseProcess:
        if self.threads <= 1:
            return super().get_worker_process(name, burst, _sleep, logging_level)
        from worker.ops.workgroup import run_group  # it builds on FeedstreamWorker, defined above

        return worker_pool.ForkProcess(
            target=run_group,
            args=(name, self._queue_names, self._connection_class, self._pool_class, self._pool_kwargs),
            kwargs={"threads": self.threads, "burst": burst, "logging_level": logging_level},
            name=f"Worker {name} (WorkerPool {self.name})",
        )

    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        if not burst:
            super().start(burst=burst, logging_level=logging_level)
            return
        self._burst = True
        setup_loghandlers(logging_level, DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT, name=worker_pool.__name__)
        self.status = self.Status.STARTED
        self.start_workers(burst=True, logging_level=logging_level)
        self._install_signal_handlers()  # SIGINT/SIGTERM still stop the workers, as RQ's pool does
        for data in list(self.worker_dict.values()):  # burst workers are never respawned
            data.process.join()
        self.reap_workers()


def run_pool(connection: Redis, processes: int, *, burst: bool, threads: int = 1,
             logging_level: str = "INFO") -> None:
    """Run ``processes`` worker processes of ``threads`` workers each on our queues until stopped
    (or, with burst, until idle)."""
    warm_up()  # workers are forked from here: they share the loaded model instead of each loading it
    # What is loaded now stays shared: the collector would otherwise write to every object's
    # header in each worker and copy the pages that hold them.
    gc.freeze()
    pool = FeedstreamPool(QUEUES, connection=connection, num_workers=processes, worker_class=FeedstreamWorker,
                          threads=threads)
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
