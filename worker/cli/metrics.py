"""``feedstream metrics``: serve /metrics (Prometheus) and /healthz (Procfile: metrics)."""

from __future__ import annotations

import argparse
import threading

from worker.cli.edge import Edge, say
from worker.ops.metrics import make_app, serve
from worker.ops.rqworker import queue_depths, worker_count
from worker.ops.scheduler import TICK_SECONDS
from worker.ops.signals import stop_event
from worker.store import Store, connect_quick

# /healthz fails when the scheduler has not ticked for this long: several ticks, with room for a slow
# Redis round trip or a busy machine (a tick is TICK_SECONDS).
HEALTH_STALE_SECONDS = max(3 * TICK_SECONDS, 15.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default FEEDSTREAM_METRICS_PORT or 9184)")


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Serve until SIGTERM / Ctrl-C."""
    stop = stop_event()
    port = edge.settings.metrics_port if args.port is None else args.port
    say(f"metrics on http://{args.bind}:{port}/metrics, health on /healthz")
    metrics_server(edge, args.bind, port, stop)
    return 0


def metrics_server(edge: Edge, host: str, port: int, stop: threading.Event) -> None:
    """Serve /metrics and /healthz until ``stop``; reads Redis with a fail-fast client."""
    quick = connect_quick(edge.redis_url)
    publish_url = edge.settings.publish_redis_url
    store = Store(quick, publish_client=connect_quick(publish_url) if publish_url else None,
                  **edge.settings.store_options())
    app = make_app(store, lambda: queue_depths(quick), lambda: worker_count(quick), HEALTH_STALE_SECONDS)
    serve(app, host, port, stop)
