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
import time
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from typing import Any

import redis
from redis import Redis
from rq import Queue, SimpleWorker, Worker, worker_pool
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.logutils import setup_loghandlers
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import as_text, now
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

from worker.extract import warm_up
from worker.pipeline.context import current_context
from worker.pipeline.outbox import sweep
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE
from worker.store.refusals import Backoff, Refusals, attempt, until_accepted

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
# once (extract jobs' first retry has no delay): the abandonment spends that one
# retry, as RQ counts any abandoned attempt (a page that kills every worker must
# not loop forever).
#
# What a shorter heartbeat TTL costs in RQ 3.0, and how it is paid: an execution's
# hash (rq:execution:<job>:<id>) expires HEARTBEAT_TTL after its last heartbeat,
# but its member in the job's execution registry (rq:executions:<job>) is scored
# TTL + 60 s. A re-run that finishes inside that minute calls job.cleanup ->
# remove_executions -> Execution.fetch on the dead execution and raises
# ValueError ("not found"), or KeyError b'created_at' when a heartbeat recreated a
# hash that had expired during a Redis pause: RQ then records a failure and spends
# a retry on its own bookkeeping. RQ's records are made consistent before it reads
# them (FeedstreamWorker.handle_execution_ended -> repair_executions): members
# whose hash has expired are dead by RQ's own rule (their StartedJobRegistry entry
# lapsed with the hash) and are removed; the live execution's hash, if a pause let
# it expire, is written whole again.
HEARTBEAT_EVERY = 5
HEARTBEAT_TTL = 20
MAINTENANCE_INTERVAL = 15
WORKER_TTL = 30
REFUSAL_PAUSE = 0.5  # seconds between tries of a step Redis refused, where nothing else waits
# A burst worker with nothing queued waits this long (seconds) for jobs still running to queue more, then
# looks again: a running poll queues its pages within it, and the last job's end is seen as soon (a
# second here was a second of idle cores at the end of every burst).
BURST_WAIT = 0.2


def repair_executions(connection: Redis, job: Job, live: Mapping[str, Execution], ttl: int) -> int:
    """Make the job's execution registry agree with its execution hashes before RQ reads them; returns
    the members removed. See the note above: RQ 3.0 keeps a member 60 s longer than the hash it names."""
    registry = ExecutionRegistry(job.id, connection=connection)
    ids = [as_text(member) for member in connection.zrange(registry.key, 0, -1)]
    if not ids:
        return 0
    pipe = connection.pipeline(transaction=False)
    for execution_id in ids:
        pipe.hexists(Execution(execution_id, job.id, connection).key, "created_at")
    whole = pipe.execute()
    removed = 0
    with connection.pipeline() as fix:
        for execution_id, ok in zip(ids, whole, strict=True):
            if ok:
                continue
            execution = live.get(execution_id)
            if execution is not None:  # ours, alive: a pause let its hash expire (a heartbeat left a stub)
                execution.save(ttl=ttl, pipeline=fix)
                continue
            dead = Execution(execution_id, job.id, connection)
            fix.zrem(registry.key, execution_id)
            fix.zrem(job.started_job_registry.key, dead.composite_key)
            removed += 1
        fix.execute()
    return removed


class SteadyScheduler(RQScheduler):
    """RQ's scheduler process (it moves scheduled jobs and delayed retries to their queues), which would die
    on the first refused write; this one logs the refusal once and carries on when Redis accepts again."""

    def work(self) -> None:
        refusals = Refusals(self.log, "rq scheduler")
        backoff = Backoff()
        self._install_signal_handlers()
        until_accepted(self.register_birth, refusals)
        while not self._stop_requested:
            if attempt(self._tick, refusals, backoff)[0]:
                time.sleep(self.interval)
        self.stop()

    def _tick(self) -> None:
        if self.should_reacquire_locks:
            self.acquire_locks()
        self.heartbeat()
        self.enqueue_scheduled_jobs()


class FeedstreamWorker(SimpleWorker):
    """A SimpleWorker that heartbeats running jobs, recovers abandoned ones quickly, keeps RQ's execution
    records consistent, sweeps the outbox, rides out Redis refusing writes, and retires after MAX_JOBS."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL)
        kwargs.setdefault("worker_ttl", WORKER_TTL)
        kwargs.setdefault("job_monitoring_interval", HEARTBEAT_EVERY)
        super().__init__(*args, **kwargs)
        self.refusals = Refusals(self.log, "worker")

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return HEARTBEAT_TTL

    # -- RQ's bookkeeping, consistent --------------------------------------------------

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        super().handle_execution_ended(job, queue, heartbeat_ttl)
        removed = repair_executions(self.connection, job, self.executions, HEARTBEAT_TTL)
        if removed:
            self.log.info("job %s: dropped %d lapsed execution record(s) of an abandoned run", job.id, removed)

    # -- running a job -----------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            execution = self.prepare_execution(job)
        except redis.RedisError as exc:
            if not self.refusals.note(exc):
                raise
            # RQ's start-of-job transaction was refused after the job left its queue: without this the
            # job would sit in no queue and no registry (the outbox sweeper is the net if we die here).
            for execution_id in [eid for eid, ex in self.executions.items() if ex.job_id == job.id]:
                self.executions.pop(execution_id)
            self._put_back(job, queue)
            return
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_EVERY):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception as exc:  # a missed beat only risks an early retry, which publishing makes harmless
                    if not self.refusals.note(exc):
                        self.log.warning("heartbeat for job %s failed", job.id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
        thread.start()
        try:
            self.perform_job(job, queue, execution)
        except redis.RedisError as exc:
            # RQ could not record the job's end (or start): its StartedJobRegistry entry lapses and the
            # maintenance pass retries it once Redis accepts writes again; this worker carries on.
            if not self.refusals.note(exc):
                raise
            self.executions.pop(execution.id, None)
        finally:
            done.set()
            thread.join()
        self.set_state(WorkerStatus.IDLE)

    def _put_back(self, job: Job, queue: Queue) -> None:
        """Push a popped job back to the front of its queue, trying until Redis accepts."""
        until_accepted(lambda: queue.push_job_id(job.id, at_front=True), self.refusals)
        self.log.warning("job %s: Redis refused its start; put back at the front of %s", job.id, queue.name)

    # -- the loop's own writes: ride out refusals ------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        if timeout is not None:
            return self._dequeue(timeout, max_idle_time)
        # Burst mode (RQ asks without a timeout): quit only when nothing is queued and nothing is
        # running either. A running poll queues pages a moment later; workers that had quit on
        # an empty queue would leave them all to the one worker that ran the poll.
        while True:
            result = self._dequeue(None, max_idle_time)
            if result is not None or self._stop_requested or not pending_work(self.connection)[0]:
                return result
            result = self._dequeue(BURST_WAIT, BURST_WAIT)
            if result is not None or self._stop_requested:
                return result

    def _dequeue(self, timeout: int | None, max_idle_time: int | None) -> tuple[Job, Queue] | None:
        backoff = Backoff()
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except redis.RedisError as exc:  # e.g. LPOP on a READONLY replica
                if not self.refusals.note(exc):
                    raise
                if self._stop_requested:
                    raise StopRequested() from None
                time.sleep(backoff.next())

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except redis.RedisError as exc:
            if not self.refusals.note(exc):
                raise
        else:
            self.refusals.clear()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        try:
            super().set_state(state)
        except redis.RedisError as exc:
            self._state = state
            if not self.refusals.note(exc):
                raise

    def register_birth(self) -> None:
        until_accepted(super().register_birth, self.refusals)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)  # its pipeline carries a heartbeat: a write
        except redis.RedisError as exc:
            if not self.refusals.note(exc):
                raise
            time.sleep(REFUSAL_PAUSE)

    def _start_scheduler(self, burst: bool = False, logging_level: str = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
                         log_format: str = DEFAULT_LOGGING_FORMAT) -> None:
        """RQ's own, with a scheduler process that rides out refusals (RQ's class is named in its method)."""
        self.scheduler = SteadyScheduler(self.queues, connection=self.connection, logging_level=logging_level,
                                         date_format=date_format, log_format=log_format, serializer=self.serializer)
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
            self._sweep_outbox()
        except redis.RedisError as exc:
            if not self.refusals.note(exc):
                raise
            self.last_cleaned_at = now()  # try again at the next interval, not on every loop

    def _sweep_outbox(self) -> None:
        """The outbox sweep (pipeline/outbox.py), by one worker per maintenance interval."""
        context = current_context()
        if context.store.take_sweep_turn(MAINTENANCE_INTERVAL - 1):
            report = sweep(context)
            if report.requeued or report.revived or report.given_up:
                self.log.info("outbox sweep: %s", report)

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
    """Jobs per queue and state (queued, started, scheduled, deferred, failed), for metrics and progress.

    Read only: RQ's ``count`` would run each registry's cleanup first (retrying abandoned jobs, a write
    that fails while Redis refuses writes); that is the workers' maintenance pass's job, not a reader's.
    """
    depths: dict[str, dict[str, int]] = {}
    for name in QUEUES:
        depths[name] = {"queued": Queue(name, connection=connection).count}
        for state, registry in (("started", StartedJobRegistry), ("scheduled", ScheduledJobRegistry),
                                ("deferred", DeferredJobRegistry), ("failed", FailedJobRegistry)):
            depths[name][state] = registry(name, connection=connection).get_job_count(cleanup=False)
    return depths


def worker_count(connection: Redis) -> int:
    """RQ workers registered (alive: their keys expire with their heartbeat)."""
    return Worker.count(connection=connection)
