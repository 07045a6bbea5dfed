"""The outbox sweeper: entries still pending past their check time are looked at against their RQ job.

Run by the workers' maintenance pass (worker/ops/rqworker.py), by one worker at a time
(``Store.take_sweep_turn``). An entry whose job will still run it waits for another
``outbox_sweep_after`` seconds; a job that says "queued" but sits in no queue (lost between RQ's pop
and its start transaction) is put back in its queue; entries whose job is gone are queued again in
new jobs. Re-queueing never publishes twice: the publish script's claims find the first copy
("already"). Each sweep reads at most SWEEP_LIMIT entries, and an entry is re-queued at most
MAX_REQUEUES times (then it is given up, counted and logged), so neither a backlog nor a page that
kills every worker that tries it makes the sweeper's work grow without bound.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass

from rq import Queue
from rq.job import Job

from worker.models import Entry
from worker.pipeline.context import Context
from worker.pipeline.decide import sweep_verdict
from worker.pipeline.queues import enqueue_extracts, plan_extracts
from worker.store import Pending

log = logging.getLogger("feedstream.outbox")

SWEEP_LIMIT = 200
MAX_REQUEUES = 3
# A job popped from its queue is in no queue until its start transaction runs (milliseconds): one that
# still looks like that this much later is taken for lost.
LIMBO_RECHECK_SECONDS = 1.0


@dataclass
class SweepReport:
    """What one sweep did, in entries (``revived``: jobs put back in their queue)."""

    checked: int = 0
    waiting: int = 0
    requeued: int = 0
    revived: int = 0
    given_up: int = 0


def _job_states(context: Context, job_ids: list[str]) -> dict[str, tuple[str | None, bool]]:
    """Each job's RQ status (None: no such job) and whether its id is in its queue's list."""
    connection = context.store.redis
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(Job.key_for(job_id), ["status", "origin"])
    fields = pipe.execute()
    states: dict[str, tuple[str | None, bool]] = {}
    for job_id, (status, origin) in zip(job_ids, fields, strict=True):
        name = status.decode() if status else None
        in_queue = False
        if name == "queued" and origin:
            in_queue = connection.lpos(Queue(origin.decode(), connection=connection).key, job_id) is not None
        states[job_id] = (name, in_queue)
    return states


def sweep(context: Context, *, everything: bool = False) -> SweepReport:
    """Look at the pending entries whose check time has come (``everything``: at all of them, up to
    SWEEP_LIMIT, as a burst does once its queues are empty); re-queue those whose job is gone."""
    store = context.store
    now = time.time()
    check_again = now + context.settings.outbox_sweep_after
    due = store.due_pending(math.inf if everything else now, SWEEP_LIMIT)
    report = SweepReport(checked=len(due))
    if not due:
        return report
    by_job: dict[str, list[Pending]] = defaultdict(list)
    for pending in due:
        by_job[pending.job_id].append(pending)
    verdicts = {job_id: sweep_verdict(*state) for job_id, state in _job_states(context, list(by_job)).items()}
    limbo = [job_id for job_id, verdict in verdicts.items() if verdict == "revive"]
    if limbo:  # a worker may be between its pop and its start transaction: look again a moment later
        time.sleep(LIMBO_RECHECK_SECONDS)
        verdicts.update({job_id: sweep_verdict(*state) for job_id, state in _job_states(context, limbo).items()})
    lost: list[Pending] = []
    for job_id, entries in by_job.items():
        verdict = verdicts[job_id]
        if verdict == "requeue":
            lost.extend(entries)
            continue
        if verdict == "revive":
            Queue(context.extract_queue.name, connection=store.redis).push_job_id(job_id, at_front=True)
            report.revived += 1
            log.warning("outbox: job %s was in no queue (lost between a worker's pop and its start); put back",
                        job_id)
        report.waiting += len(entries)
        store.assign_pending([p.token for p in entries], check_again)
    _requeue(context, lost, check_again, report)
    if report.requeued or report.given_up or report.revived:
        store.count({"entries_requeued": report.requeued, "entries_given_up": report.given_up,
                     "jobs_revived": report.revived})
    return report


def _requeue(context: Context, lost: list[Pending], check_again: float, report: SweepReport) -> None:
    """Queue lost entries again in new jobs; give up those re-queued MAX_REQUEUES times already."""
    store = context.store
    spent = [p for p in lost if p.entry is None or p.requeues >= MAX_REQUEUES]
    if spent:
        store.settle_pending([p.token for p in spent])
        report.given_up += sum(p.entry is not None for p in spent)
        for p in spent:
            if p.entry is not None:
                log.warning("outbox: gave up %s (%s) after %d re-queues", p.entry.get("url"), p.entry.get("feed"),
                            p.requeues)
    spent_tokens = {p.token for p in spent}
    retry = [p for p in lost if p.token not in spent_tokens]
    if not retry:
        return
    requeues = {p.token: p.requeues + 1 for p in retry}
    plan = plan_extracts([Entry.from_dict(p.entry or {}) for p in retry])
    for batch in plan:
        # each entry points at its new job before the job exists, so the job cannot settle it first
        by_count: dict[int, list[str]] = defaultdict(list)
        for token, _ in batch.pending():
            by_count[requeues[token]].append(token)
        for count, tokens in by_count.items():
            store.assign_pending(tokens, check_again, job_id=batch.job_id, requeues=count)
    enqueue_extracts(context, plan)
    report.requeued += len(retry)
    log.warning("outbox: re-queued %d entr%s whose job was gone", len(retry), "y" if len(retry) == 1 else "ies")
