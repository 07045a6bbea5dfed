"""``feedstream smtp``: the newsletter SMTP endpoint (Procfile: smtp)."""

from __future__ import annotations

import argparse

from worker.cli.edge import EXIT_CANNOT_RUN, Edge, say
from worker.ops.signals import stop_event


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Receive until SIGTERM / Ctrl-C for the smtp sources Redis holds (waiting while there is none):
    accepted mail is queued for the workers."""
    from worker.ops.smtp import CannotListen, run_smtp  # aiosmtpd: loaded by this command only

    try:
        run_smtp(edge.store, edge.settings.smtp_host, edge.settings.smtp_port, stop_event(), say)
    except CannotListen as exc:
        say(str(exc))
        return EXIT_CANNOT_RUN
    return 0
