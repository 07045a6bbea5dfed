"""``feedstream scheduler``: queue each source's poll when it is due (Procfile: scheduler)."""

from __future__ import annotations

import argparse
import contextlib
import signal

from rq import Queue

from worker.cli.edge import Edge
from worker.ops.scheduler import run_forever
from worker.ops.signals import stop_event
from worker.pipeline.queues import POLL_QUEUE


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Tick until SIGTERM (Ctrl-C stops it too, as a KeyboardInterrupt); sources come from Redis as they change."""
    stop = stop_event((signal.SIGTERM,))
    with contextlib.suppress(KeyboardInterrupt):
        run_forever(edge.store, Queue(POLL_QUEUE, connection=edge.store.redis), stop)
    return 0
