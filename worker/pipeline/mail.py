"""The mail jobs: one received email read and published once; a mailbox (IMAP, Maildir) polled."""

from __future__ import annotations

import logging
import time
from typing import Any

from worker.dedupe.keys import guid_key, message_id_key, text_key
from worker.errors import FetchError, MailError
from worker.mail import parse_newsletter
from worker.mail.mailboxes import ImapState, poll_imap, poll_maildir
from worker.models import Entry, NewsletterSource, PollIntent
from worker.pipeline.articles import near_key, newsletter_article, strip_learned_boilerplate
from worker.pipeline.context import Context
from worker.pipeline.decide import decide_mail_read, decide_mail_refused, decide_mailbox_polled
from worker.pipeline.queues import ExtractBatch, enqueue_extracts, enqueue_mail, pending_entries, plan_extracts
from worker.pipeline.rules import source_rules
from worker.sources.rules import filter_counts, judge_article
from worker.store import Store
from worker.timefmt import iso_from_epoch

log = logging.getLogger("feedstream.jobs")


def ingest_mail(context: Context, source_name: str, raw: bytes, origin: str = "") -> dict[str, Any]:
    """Read one email, publish it once (Message-ID and text claims), record the outcome on the source."""
    store = context.store
    source = context.sources.newsletter(source_name)
    if source is None:
        return {"source": source_name, "outcome": "unknown newsletter source (removed?): mail dropped"}
    now = time.time()
    try:
        letter = parse_newsletter(raw, max_bytes=source.max_bytes)
    except MailError as exc:
        intent = decide_mail_refused(source, str(exc), now, origin)
        store.apply_poll(intent)
        if intent.log:
            log.log(*intent.log)
        return dict(intent.report)
    article = newsletter_article(source, letter)
    article.fetched_at = iso_from_epoch(now)
    verdict = judge_article(source_rules(context, source), article, now)
    if verdict.keep is False:  # the source's keep/block rules or max_age (issue 16): never published
        rule = verdict.rule or "?"
        store.settle_filtered([PollIntent(source.name, fields={"last_mail": iso_from_epoch(now),
                                                               "last_status": "filtered", "last_filtered": rule},
                                          source_counts=filter_counts({rule: 1}), filtered={rule: 1},
                                          counters={"entries_filtered": 1})])
        return {"source": source.name, "outcome": f"filtered: {rule}", "id": article.id}
    # a newsletter's own recurring lines (a sponsor slot, "read online" pleas) are learned per source
    [fingerprints] = strip_learned_boilerplate(store, [article])
    near = near_key(article.text) if context.settings.near_duplicates != "off" else None
    result = store.publish(article, url_keys=[], text_key=text_key(article.text), near=near,
                           message_key=message_id_key(letter.message_id) if letter.message_id else article.id,
                           boilerplate=fingerprints)
    keys: list[str] = []
    plan: list[ExtractBatch] = []
    if source.follow_links and letter.links and result.outcome == "published":
        # a digest: each linked article becomes an entry of this source, extracted like a feed's, and
        # tracked in the outbox like a feed's until it is published
        entries = [Entry(guid=link, url=link, feed=source.name, tags=list(source.tags)) for link in letter.links]
        keys = [guid_key(source.name, entry.guid) for entry in entries]
        plan = plan_extracts([e for e, unseen in zip(entries, store.unseen(source.name, keys), strict=True)
                              if unseen])
    intent = decide_mail_read(source, result, letter.list_id or source.name, origin, now, seen=tuple(keys),
                              links_queued=sum(len(batch.entries) for batch in plan))
    store.apply_poll(intent, pending_entries(plan), now + context.settings.outbox_sweep_after)
    enqueue_extracts(context, plan)
    return dict(intent.report)


def record_mail_refused(store: Store, source: NewsletterSource, message: str) -> None:
    """Record on the source's status a message refused before it was read (too large at SMTP or in a mailbox)."""
    store.apply_poll(decide_mail_refused(source, message, time.time()))


def _queue_or_refuse(context: Context, source: NewsletterSource, raw: bytes | None, size: int, origin: str) -> None:
    if raw is None:  # over the limit: never read, so the refusal is recorded here
        message = f"mail: message is {size} bytes, over the {source.max_bytes}-byte limit ({origin})"
        record_mail_refused(context.store, source, message)
        return
    enqueue_mail(context.extract_queue, source.name, raw, origin)


def poll_mailbox(context: Context, source_name: str) -> dict[str, Any]:
    """Read the new mail of an IMAP or Maildir source and queue each message for ``ingest_mail``."""
    store = context.store
    source = context.sources.newsletter(source_name)
    if source is None:
        return {"source": source_name, "outcome": "unknown newsletter source (removed?): not polled"}
    now = time.time()

    def handle(raw: bytes | None, size: int, origin: str) -> None:
        _queue_or_refuse(context, source, raw, size, origin)

    try:
        if source.kind == "maildir":
            count = poll_maildir(source, handle)
        elif source.kind == "imap":
            validity, last = store.imap_state(source.name)
            count = poll_imap(source, context.mail_password(source), ImapState(validity, last), handle,
                              lambda state: store.set_imap_state(source.name, state.uidvalidity or 0, state.last_uid))
        else:
            return {"source": source.name, "outcome": f"{source.kind} sources are not polled"}
    except FetchError as exc:
        intent = decide_mailbox_polled(source, now, error=str(exc))
    else:
        intent = decide_mailbox_polled(source, now, new=count)
    store.apply_poll(intent)
    return dict(intent.report)
