"""``feedstream worker``: RQ worker processes on the poll and extract queues (Procfile: worker)."""

from __future__ import annotations

import argparse

from worker.cli.edge import Edge, prepare_workers
from worker.ops.rqworker import run_pool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes (default: one per core), each of FEEDSTREAM_WORKER_THREADS RQ workers")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Run the workers until SIGTERM / Ctrl-C (RQ's warm shutdown) or, with --burst, until idle."""
    prepare_workers(edge)
    run_pool(edge.store.redis, args.processes or edge.settings.workers, burst=args.burst,
             threads=edge.settings.worker_threads)
    return 0
