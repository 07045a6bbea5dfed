"""Several RQ workers as threads of one worker process.

Why: at a real network's latency (150-400 ms a page) a worker that runs one job at
a time waits far more than it extracts, so many jobs must run at once; but many
worker *processes* on few cores cost CPU (16 processes extracting on 2 cores spent
about 17 % more CPU per page in trafilatura alone than 2 did, bench/pipeline.py:
their caches evict each other) and each holds its own copy of what it touches.
Threads of one process wait for their pages side by side, and the GIL lets one of
them extract at a time: one process per core keeps its core busy with no more
extractions in flight than cores.

Each thread is a whole :class:`FeedstreamWorker` with its own name, registration,
heartbeats and StartedJobRegistry entries, running one job at a time as RQ expects:
a killed process's jobs are recovered like any killed worker's. What a thread
cannot do is handled here: signals reach only the main thread (it asks every
worker to stop after its job; a second signal stops at once, RQ's cold shutdown),
and a job's timeout raises in the job's thread (RQ's ``TimerDeathPenalty``, its
timer on the process's one deadline watchdog rather than a thread per job) instead
of SIGALRM.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any

from redis import ConnectionPool
from rq import Queue
from rq.exceptions import StopRequested
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus

from worker.fetch.deadline import process_watchdog
from worker.ops.rqworker import FeedstreamWorker

log = logging.getLogger("feedstream.workers")

# An idle thread looks for a stop request this often (seconds): a thread cannot be
# interrupted in its blocking dequeue the way RQ interrupts a worker's main thread.
IDLE_CHECK = 2
SWITCH_INTERVAL = 0.001
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


class WatchdogDeathPenalty(TimerDeathPenalty):
    """RQ's TimerDeathPenalty with its timer on the process's deadline watchdog (worker/fetch/deadline.py):
    no thread started and torn down for every job."""

    _handle: int | None = None

    def setup_death_penalty(self) -> None:
        if self._timeout > 0:
            self._armed = threading.Lock()
            self._handle = process_watchdog().schedule(time.monotonic() + self._timeout, self._fire)

    def _fire(self) -> None:
        # not once the job has ended: the exception would land in whatever the thread runs next
        with self._armed:
            if self._handle is not None:
                self.handle_death_penalty()

    def cancel_death_penalty(self) -> None:
        if self._handle is not None:
            with self._armed:
                process_watchdog().cancel(self._handle)
                self._handle = None


class ThreadWorker(FeedstreamWorker):
    """A FeedstreamWorker run in a thread of a :func:`run_group` process."""

    death_penalty_class = WatchdogDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # the process's main thread has them (run_group)

    def subscribe(self) -> None:
        # RQ's command channel costs a polling thread per worker; the group's process is
        # stopped by signals, and a job by its timeout.
        pass

    def dequeue_job_and_maintain_ttl(self, timeout: int | None,
                                     max_idle_time: int | None = None) -> tuple[Job, Queue] | None:
        if timeout is None:  # burst mode
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(IDLE_CHECK, IDLE_CHECK)
            if result is not None:
                return result
        raise StopRequested()


def run_group(name: str, queue_names: Iterable[str], connection_class: Any, connection_pool_class: Any,
              connection_pool_kwargs: dict[str, Any], *, threads: int, burst: bool = False,
              logging_level: str = "INFO", **_: Any) -> None:
    """A worker process: ``threads`` ThreadWorkers on one Redis client until stopped (or, with burst, idle).

    The arguments are those RQ's WorkerPool gives its ``run_worker``. When a thread retires
    after MAX_JOBS jobs the others finish their jobs and the process exits, for the pool to
    start a fresh one.
    """
    _cap_malloc_arenas()
    connection = connection_class(connection_pool=ConnectionPool(connection_class=connection_pool_class,
                                                                 **connection_pool_kwargs))
    queues = [Queue(queue, connection=connection) for queue in queue_names]
    workers = [ThreadWorker(queues, name=f"{name}.{n}", connection=connection) for n in range(threads)]
    stopping = threading.Event()

    def stop_all() -> None:
        stopping.set()
        for worker in workers:
            worker._stop_requested = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            log.warning("worker %s: cold shut down", name)
            raise SystemExit(1)  # the threads are daemons: their jobs are abandoned, and recovered
        log.info("worker %s: stopping after the jobs in hand", name)
        stop_all()

    # A thread that needs the GIL for a moment (a download's next read) gets it sooner from one
    # that extracts: 5 ms turns made each download wait behind the extraction many times over.
    sys.setswitchinterval(SWITCH_INTERVAL)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    running = []
    for n, worker in enumerate(workers):
        # One thread keeps RQ's scheduler (it forks it at start, before the other threads exist).
        thread = threading.Thread(target=worker.work, name=worker.name, daemon=True,
                                  kwargs={"burst": burst, "with_scheduler": n == 0, "logging_level": logging_level})
        thread.start()
        if n == 0:
            _wait_for_start(worker, thread)
        running.append(thread)
    while running:
        running[0].join(timeout=1.0)
        ended = [thread for thread in running if not thread.is_alive()]
        if ended and not burst and not stopping.is_set():
            stop_all()  # a thread retired (MAX_JOBS): recycle the whole process
        running = [thread for thread in running if thread.is_alive()]


def _cap_malloc_arenas() -> None:
    """At most MALLOC_ARENAS glibc malloc arenas in this process (it would make one per thread, up to
    8 per core): each thread's freed pages sit in its own arena, and the process's RSS grows with them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def _wait_for_start(worker: ThreadWorker, thread: threading.Thread) -> None:
    """Until the thread's worker has started RQ's scheduler if it got the lock (it then looks for jobs)."""
    while thread.is_alive() and getattr(worker, "_state", None) not in (WorkerStatus.IDLE, WorkerStatus.BUSY):
        thread.join(timeout=0.01)
