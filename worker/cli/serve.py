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
    from worker.push.subscriber import open_subscriber
    from worker.sources.manage import open_admin

    host, port = edge.settings.serve_host, edge.settings.serve_port
    admin, client = open_admin(edge.store, edge.settings)
    subscriber = open_subscriber(edge.store, edge.settings, client)
    hub = None
    if edge.settings.public_url:
        from worker.out.hub import Hub

        hub = Hub(edge.store, client, edge.settings.public_url, retry_base=edge.settings.hub_retry_base)
    try:
        server = make_server(edge.store, host, port, admin, edge.settings.admin_token, subscriber, hub)
    except OSError as exc:
        client.close()
        say(f"cannot listen on {host}:{port}: {exc}")
        return EXIT_CANNOT_RUN
    say(f"serving the stream {edge.settings.stream!r} as feeds on http://{host}:{server.server_port}/feed.atom")
    say(f"admin API on http://{host}:{server.server_port}/api/ ("
        + ("writes need the bearer token in FEEDSTREAM_ADMIN_TOKEN)" if edge.settings.admin_token else
           "read-only: FEEDSTREAM_ADMIN_TOKEN is not set)"))
    if edge.settings.public_url:
        say(f"WebSub: subscribing to the hubs feeds announce, callbacks under {edge.settings.public_url}/websub/; "
            f"our hub for the feeds out at {edge.settings.public_url}/hub")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop = threading.Event()
    manager = threading.Thread(target=subscriber.run, args=(stop,), name="websub", daemon=True)
    manager.start()
    if hub is not None:
        threading.Thread(target=hub.run, args=(stop,), name="hub", daemon=True).start()
    try:
        wait_for_stop()
    finally:
        stop.set()
        manager.join(timeout=10)
        server.shutdown()
        server.server_close()
        client.close()
    return 0
