"""One RQ worker process for the fault tests: ``python -m tests.fault_worker simple|fork``.

``simple`` is the worker feedstream runs (FeedstreamWorker, no fork); ``fork`` is
RQ's default Worker, which runs each job in a work horse process, so the tests
can kill horses as well as whole workers. Both take their settings from the
environment like ``feedstream worker`` does.
"""

from __future__ import annotations

import os
import sys

from rq import Queue, Worker

from worker.ops.rqworker import HEARTBEAT_EVERY, MAINTENANCE_INTERVAL, QUEUES, WORKER_TTL, FeedstreamWorker
from worker.store import connect


def main() -> None:
    connection = connect(os.environ["REDIS_URL"])
    queues = [Queue(name, connection=connection) for name in QUEUES]
    if sys.argv[1] == "simple":
        worker: Worker = FeedstreamWorker(queues, connection=connection)
    else:
        worker = Worker(queues, connection=connection, job_monitoring_interval=HEARTBEAT_EVERY,
                        maintenance_interval=MAINTENANCE_INTERVAL, worker_ttl=WORKER_TTL)
    worker.work(with_scheduler=True, logging_level="WARNING")


if __name__ == "__main__":
    main()
