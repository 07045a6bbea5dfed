"""``feedstream serve``: the stream as Atom and JSON Feed over HTTP (Procfile: web)."""

from __future__ import annotations

import argparse
import threading

from worker.cli.edge import EXIT_CANNOT_RUN, Edge, say
from worker.ops.signals import wait_for_stop


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Serve until SIGTERM / Ctrl-C."""
    from worker.out.server import make_server  # loaded by this command only

    host, port = edge.settings.serve_host, edge.settings.serve_port
    try:
        server = make_server(edge.store, host, port)
    except OSError as exc:
        say(f"cannot listen on {host}:{port}: {exc}")
        return EXIT_CANNOT_RUN
    say(f"serving the stream {edge.settings.stream!r} as feeds on http://{host}:{server.server_port}/feed.atom")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for_stop()
    finally:
        server.shutdown()
        server.server_close()
    return 0
