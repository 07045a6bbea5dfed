"""``feedstream run``: scheduler, workers, metrics and rq-dashboard in the foreground (``--burst``: see burst.py)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time

from worker.cli import burst
from worker.cli.edge import Edge, say
from worker.ops.signals import stop_event

SHUTDOWN_GRACE_SECONDS = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--burst", action="store_true", help="poll every feed once, finish the work, exit")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per core), each of FEEDSTREAM_WORKER_THREADS RQ workers")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start rq-dashboard")


def command(edge: Edge, args: argparse.Namespace) -> int:
    """``run``: the service until Ctrl-C / SIGTERM; ``run --burst``: one pass."""
    if args.burst:
        return burst.command(edge, args)
    return serve(edge, args.workers or edge.settings.workers, dashboard=not args.no_dashboard)


def serve(edge: Edge, processes: int, dashboard: bool) -> int:
    """Scheduler, workers and rq-dashboard in the foreground until Ctrl-C / SIGTERM."""
    python = sys.executable
    commands = {
        "scheduler": [python, "-m", "worker", "scheduler"],
        "worker": [python, "-m", "worker", "worker", "--processes", str(processes)],
        "metrics": [python, "-m", "worker", "metrics", "--port", str(edge.settings.metrics_port)],
    }
    if dashboard:
        commands["dashboard"] = [python, "-m", "rq_dashboard", "--redis-url", edge.redis_url,
                                 "--bind", "127.0.0.1", "--port", str(edge.settings.dashboard_port)]
    # The children find Redis (the embedded one, too) through REDIS_URL in their own environment.
    env = edge.child_env()
    stop = stop_event()

    # Children get their own session: a terminal's Ctrl-C (or a process manager signalling our
    # group) reaches only us, and each child gets exactly one SIGTERM from us below. RQ treats a
    # second signal more than a second after the first as a cold shutdown, which would cut the job
    # in hand short.
    def _start(command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, start_new_session=True, env=env)

    children = {name: _start(command) for name, command in commands.items()}
    if dashboard:
        say(f"rq-dashboard on http://127.0.0.1:{edge.settings.dashboard_port}/")
    say(f"metrics on http://127.0.0.1:{edge.settings.metrics_port}/metrics, health on /healthz")
    say(f"polling {len(edge.feeds)} feed(s) with {processes} worker process(es); "
        f"articles go to the stream {edge.settings.stream!r}. Ctrl-C stops.")
    restarts: dict[str, float] = {}
    while not stop.wait(1.0):
        for name, child in list(children.items()):
            if child.poll() is not None:
                # Restart a crashed process, but not in a tight loop.
                if time.monotonic() - restarts.get(name, 0.0) < 5:
                    continue
                say(f"{name} exited with {child.returncode}; restarting it")
                restarts[name] = time.monotonic()
                children[name] = _start(commands[name])
    say("stopping: workers finish the job in hand")
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    # An extract job may run for minutes (a batch of slow pages); give it the time rather than
    # cut it short. A job killed anyway is recovered by RQ's maintenance pass, and the atomic publish
    # keeps its re-run from doubling anything.
    for child in children.values():
        try:
            child.wait(timeout=SHUTDOWN_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0
