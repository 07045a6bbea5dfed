"""``feedstream smtp``: the newsletter SMTP endpoint (Procfile: smtp)."""

from __future__ import annotations

import argparse

from rq import Queue

from worker.cli.edge import EXIT_CANNOT_RUN, Edge, say
from worker.ops.signals import wait_for_stop
from worker.pipeline.mail import record_mail_refused
from worker.pipeline.queues import EXTRACT_QUEUE, enqueue_mail


def command(edge: Edge, args: argparse.Namespace) -> int:
    """Receive until SIGTERM / Ctrl-C: accepted mail is queued for the workers."""
    from worker.mail.smtp import start_smtp  # aiosmtpd: loaded by this command only

    sources = {s.name: s for s in edge.newsletters if s.kind == "smtp"}
    if not sources:
        say("no [[newsletters]] with kind = \"smtp\" in the feeds file: nothing to receive")
        return EXIT_CANNOT_RUN
    queue = Queue(EXTRACT_QUEUE, connection=edge.store.redis)
    host, port = edge.settings.smtp_host, edge.settings.smtp_port
    try:
        controller = start_smtp(
            list(sources.values()), lambda name, raw: enqueue_mail(queue, name, raw, "smtp"), host=host, port=port,
            refused=lambda name, reason: record_mail_refused(edge.store, sources[name], reason))
    except (OSError, RuntimeError) as exc:
        say(f"cannot listen for SMTP on {host}:{port}: {exc}")
        return EXIT_CANNOT_RUN
    say(f"SMTP on {host}:{port} for " + ", ".join(f"{s.address} ({s.name})" for s in sources.values()))
    try:
        wait_for_stop()
    finally:
        controller.stop()
    return 0
