"""The outbox's own rules, on a real Redis: recorded with the seen GUIDs, settled by the publish script
whatever its verdict, never brought back by a late re-assignment; the sweeper's verdicts; refusals."""

from __future__ import annotations

import redis

from tests.test_store import make_article
from worker.models import PollIntent
from worker.pipeline.decide import sweep_verdict
from worker.store import Store
from worker.store.refusals import refusal_kind


def _record(store: Store, job: str, tokens: list[str], check_at: float = 100.0) -> None:
    intent = PollIntent("f", seen=tuple(tokens), seen_at=50.0)
    store.apply_poll(intent, {job: [(token, {"guid": token, "url": f"https://example.com/{token}", "feed": "f"})
                                    for token in tokens]}, check_at)


def test_pending_entries_are_recorded_with_the_seen_guids_and_settled_by_any_verdict(
        redis_client: redis.Redis) -> None:
    store = Store(redis_client, near_mode="off")
    _record(store, "job1", ["a1", "b2", "c3"])
    assert store.unseen("f", ["a1", "b2", "c3"]) == [False, False, False]
    [first, *_] = store.due_pending(100.0, 10)
    assert (first.job_id, first.requeues, first.entry["url"]) == ("job1", 0, "https://example.com/a1")
    assert store.due_pending(99.0, 10) == []  # not before its check time
    published = store.publish(make_article(1), url_keys=["u1"], text_key=None, outbox_token="a1")
    duplicate = store.publish(make_article(2), url_keys=["u1"], text_key=None, outbox_token="b2")
    again = store.publish(make_article(1), url_keys=["u1"], text_key=None, outbox_token="c3")
    assert [r.outcome for r in (published, duplicate, again)] == ["published", "duplicate", "already"]
    assert store.outbox_size() == (0, None)
    assert not redis_client.exists("feedstream:outbox:job", "feedstream:outbox:entry")


def test_reassigning_keeps_counts_and_never_revives_a_settled_entry(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    _record(store, "job1", ["a1", "b2"])
    store.settle_pending(["b2"])  # e.g. published before the sweeper's write
    assert store.assign_pending(["a1", "b2"], 300.0, job_id="job2", requeues=1) == 1
    assert store.assign_pending(["a1"], 400.0) == 1  # a later look keeps job and count
    assert [(p.token, p.job_id, p.requeues) for p in store.due_pending(400.0, 10)] == [("a1", "job2", 1)]
    assert store.outbox_size() == (1, 400.0)
    assert all(redis_client.ttl(key) > 0 for key in store.outbox_keys)


def test_sweep_verdicts() -> None:
    assert sweep_verdict(None, False) == "requeue"  # the job is gone
    assert sweep_verdict("failed", False) == "requeue"
    assert sweep_verdict("finished", False) == "requeue"  # finished, yet its entries are not settled
    assert sweep_verdict("queued", True) == "wait"
    assert sweep_verdict("queued", False) == "revive"  # popped, never started
    for waiting in ("started", "scheduled", "deferred"):
        assert sweep_verdict(waiting, False) == "wait"


def test_refusals_are_told_apart_from_bugs(redis_client: redis.Redis) -> None:
    try:
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", 1)
        try:
            redis_client.eval("redis.call('SET', KEYS[1], 'x')", 1, "k")
        except redis.ResponseError as exc:  # a script's OOM arrives as a plain ResponseError
            assert refusal_kind(exc) == "out of memory (maxmemory reached)"
        else:
            raise AssertionError("the write was not refused")
        assert Store(redis_client).probe_write() == "out of memory (maxmemory reached)"
    finally:
        redis_client.config_set("maxmemory", 0)
    assert Store(redis_client).probe_write() is None
    assert refusal_kind(redis.ResponseError("WRONGTYPE Operation against a key")) is None
    assert refusal_kind(redis.ReadOnlyError("You can't write against a read only replica.")) == "read-only replica"
    assert refusal_kind(redis.ConnectionError("reset")) == "connection lost"


def test_lapsed_execution_records_are_repaired_before_rq_reads_them(redis_client: redis.Redis) -> None:
    """RQ 3.0 keeps an execution's registry member 60 s past its hash: the re-run's cleanup then raised
    ValueError (a dead run's hash gone) or KeyError b'created_at' (a live run's hash expired in a pause and
    recreated by a heartbeat as a stub). repair_executions leaves records RQ can read."""
    from rq import Queue
    from rq.executions import Execution

    from worker.ops.rqworker import repair_executions

    job = Queue("extract", connection=redis_client).enqueue("worker.jobs.extract_entries", [])
    with redis_client.pipeline() as pipe:
        dead = Execution.create(job, ttl=20, pipeline=pipe)
        live = Execution.create(job, ttl=20, pipeline=pipe)
        pipe.execute()
    redis_client.delete(dead.key)  # expired with its heartbeat; its registry members are still there
    redis_client.delete(live.key)
    redis_client.hset(live.key, "last_heartbeat", 1.0)  # a heartbeat after the expiry leaves a stub
    try:
        job.get_executions()
    except (ValueError, KeyError):
        pass
    else:
        raise AssertionError("RQ read the lapsed records without complaint: nothing to repair")
    started = job.started_job_registry
    assert (job.id, dead.id) in started.get_job_and_execution_ids(cleanup=False)
    assert repair_executions(redis_client, job, {live.id: live}, 20) == 1
    assert [execution.id for execution in job.get_executions()] == [live.id]
    assert (job.id, dead.id) not in started.get_job_and_execution_ids(cleanup=False)


def test_a_burst_looks_at_every_pending_entry_not_only_the_due_ones(redis_client: redis.Redis) -> None:
    import math

    store = Store(redis_client)
    _record(store, "job1", ["a1"], check_at=1e12)  # far in the future
    assert store.due_pending(1e9, 10) == []
    assert [p.token for p in store.due_pending(math.inf, 10)] == ["a1"]
