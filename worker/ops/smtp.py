"""``feedstream smtp``'s loop: receive for the smtp newsletter sources Redis holds, as they change.

With no such source the process waits (a Procfile process that exits stops the whole service
under honcho or foreman), and starts listening when the first one appears. Sources added,
changed, paused or removed later are followed within about a second, without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from aiosmtpd.controller import Controller
from rq import Queue

from worker.mail.smtp import receive_for, start_smtp
from worker.pipeline.mail import record_mail_refused
from worker.pipeline.queues import EXTRACT_QUEUE, enqueue_mail
from worker.sources.live import LiveSources
from worker.sources.plan import newsletters_of
from worker.store import Store

log = logging.getLogger("feedstream.smtp")
CHECK_EVERY = 1.0


class CannotListen(Exception):
    """The SMTP port cannot be opened."""


def run_smtp(store: Store, host: str, port: int, stop: threading.Event, say: Callable[[str], None],
             check_every: float = CHECK_EVERY) -> None:
    """Receive mail until ``stop``; raises CannotListen when the port cannot be opened."""
    live = LiveSources(store, check_every)
    queue = Queue(EXTRACT_QUEUE, connection=store.redis)
    controller: Controller | None = None

    def refused(name: str, reason: str) -> None:
        source = live.newsletter(name)
        if source is not None:
            record_mail_refused(store, source, reason)

    waiting_said = False
    try:
        while not stop.is_set():
            live.refresh()
            sources = newsletters_of(live.records, "smtp")
            if controller is None and sources:
                try:
                    controller = start_smtp(sources, lambda name, raw: enqueue_mail(queue, name, raw, "smtp"),
                                            host=host, port=port, refused=refused)
                except (OSError, RuntimeError) as exc:
                    raise CannotListen(f"cannot listen for SMTP on {host}:{port}: {exc}") from None
                say(f"SMTP on {host}:{port} for " + ", ".join(f"{s.address} ({s.name})" for s in sources))
            elif controller is not None and receive_for(controller, sources):
                say(f"SMTP on {host}:{port} now for " + (", ".join(f"{s.address} ({s.name})" for s in sources)
                                                        or "no address (every recipient is refused)"))
            elif controller is None and not waiting_said:
                say("no newsletter source of kind smtp yet: waiting for one (feeds file, admin API or "
                    "`feedstream sources add --kind smtp`)")
                waiting_said = True
            stop.wait(check_every)
    finally:
        if controller is not None:
            controller.stop()
