"""``feedstream serve``: the stream as Atom and JSON Feed over HTTP, and the admin API under /api/
(Procfile: web)."""

from __future__ import annotations

import argparse
import threading

from worker.cli.edge import EXIT_CANNOT_RUN, Edge, say
from worker.ops.signals import wait_for_stop


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Serve until SIGTERM / Ctrl-C."""
    from worker.out.server import make_server  # loaded by this command only
    from worker.sources.manage import open_admin

    host, port = edge.settings.serve_host, edge.settings.serve_port
    admin, client = open_admin(edge.store, edge.settings)
    try:
        server = make_server(edge.store, host, port, admin, edge.settings.admin_token)
    except OSError as exc:
        client.close()
        say(f"cannot listen on {host}:{port}: {exc}")
        return EXIT_CANNOT_RUN
    say(f"serving the stream {edge.settings.stream!r} as feeds on http://{host}:{server.server_port}/feed.atom")
    say(f"admin API on http://{host}:{server.server_port}/api/ ("
        + ("writes need the bearer token in FEEDSTREAM_ADMIN_TOKEN)" if edge.settings.admin_token else
           "read-only: FEEDSTREAM_ADMIN_TOKEN is not set)"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for_stop()
    finally:
        server.shutdown()
        server.server_close()
        client.close()
    return 0
