"""The SMTP endpoint newsletters are subscribed to (aiosmtpd).

Accepts mail only for the addresses of ``kind = "smtp"`` newsletter sources:
an unknown recipient is refused at RCPT time (550), so the sending server keeps
the bounce and we never store mail nobody asked for. A message over the
largest source limit is refused while it is being sent (552, aiosmtpd's
``data_size_limit``), one over its own source's limit at the end of DATA.
Accepted mail is handed to ``deliver`` (the caller queues it for the RQ workers)
before we answer 250, so "accepted" means "queued".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from worker.models import NewsletterSource

log = logging.getLogger("feedstream.smtp")

Deliver = Callable[[str, bytes], None]  # (source name, raw message)
Refused = Callable[[str, str], None]  # (source name, reason)


class NewsletterHandler:
    """aiosmtpd handler: per-source recipients, per-source size limits, delivery to a callback."""

    def __init__(self, sources: Sequence[NewsletterSource], deliver: Deliver,
                 refused: Refused | None = None) -> None:
        self.by_address: dict[str, NewsletterSource] = {}
        self.update(sources)
        self.deliver = deliver
        self.refused = refused

    def update(self, sources: Sequence[NewsletterSource]) -> bool:
        """Receive for these sources from now on (a session already past RCPT keeps its recipients);
        returns whether the set changed."""
        by_address = {s.address.lower(): s for s in sources if s.kind == "smtp" and s.address}
        changed = by_address != self.by_address
        self.by_address = by_address  # one assignment: a session reads either the old map or the new one
        return changed

    @property
    def size_limit(self) -> int:
        return max((s.max_bytes for s in self.by_address.values()), default=1024 * 1024)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.lower() not in self.by_address:
            return f"550 5.1.1 <{address}>: no newsletter is subscribed at this address"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        by_address = self.by_address
        # a source removed since RCPT: its mail is refused, as a new session's would be
        sources = list({by_address[a.lower()].name: by_address[a.lower()]
                        for a in envelope.rcpt_tos if a.lower() in by_address}.values())
        if not sources:
            return "550 5.1.1 No newsletter is subscribed at these addresses any more"
        too_big = [s for s in sources if len(raw) > s.max_bytes]
        if too_big:
            reason = f"mail: message is {len(raw)} bytes, over the {too_big[0].max_bytes}-byte limit (smtp)"
            if self.refused:
                try:
                    await _in_thread(self.refused, too_big[0].name, reason)
                except Exception as exc:  # recording it is best effort (Redis refusing writes): the answer stands
                    log.warning("smtp: could not record a refused message on %s: %s", too_big[0].name, exc)
            return "552 5.3.4 Message too big for this newsletter address"
        try:
            for source in sources:
                await _in_thread(self.deliver, source.name, raw)
        except Exception as exc:  # Redis away or refusing writes: tell the sender to try later, lose nothing
            log.warning("smtp: cannot queue a message now, answered 451: %s", exc)
            return "451 4.3.0 Cannot queue the message now; try again later"
        return "250 2.0.0 Message queued"


async def _in_thread(func: Callable[..., Any], *args: Any) -> Any:
    # delivery talks to Redis (blocking): keep the event loop serving other sessions
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def start_smtp(sources: Sequence[NewsletterSource], deliver: Deliver, *, host: str, port: int,
               refused: Refused | None = None) -> Controller:
    """Start the endpoint in a background thread (aiosmtpd's Controller); ``.stop()`` ends it.

    :func:`receive_for` changes the sources it receives for while it runs.
    """
    handler = NewsletterHandler(sources, deliver, refused)
    controller = Controller(handler, hostname=host, port=port, data_size_limit=handler.size_limit,
                            ident="feedstream newsletters")
    controller.start()
    return controller


def receive_for(controller: Controller, sources: Sequence[NewsletterSource]) -> bool:
    """Make a running endpoint receive for ``sources`` (added, changed or removed at run time).

    Returns whether anything changed. The size limit applies to sessions opened from now on.
    """
    handler: NewsletterHandler = controller.handler
    changed = handler.update(sources)
    controller.SMTP_kwargs["data_size_limit"] = handler.size_limit
    return changed
