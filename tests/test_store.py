"""The store's atomic steps, against a real Redis."""

from __future__ import annotations

import threading

import redis
from rq import Queue

from worker.models import Article
from worker.ops.scheduler import tick
from worker.pipeline.queues import POLL_QUEUE, enqueue_poll
from worker.store import Store


def make_article(n: int, url: str | None = None) -> Article:
    return Article(id=f"id{n}", url=url or f"https://example.com/{n}", title=f"T{n}",
                   text=f"text {n}", feed="f")


def test_publish_is_idempotent_for_a_retry(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    first = store.publish(make_article(1), url_keys=["u1"], text_key="t1")
    again = store.publish(make_article(1), url_keys=["u1"], text_key="t1")
    assert first.outcome == "published" and first.stream_id
    assert again.outcome == "already"
    assert redis_client.xlen("articles") == 1


def test_publish_refuses_a_second_article_with_a_claimed_url_or_text(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    store.publish(make_article(1), url_keys=["u1"], text_key="t1")
    by_url = store.publish(make_article(2), url_keys=["u2", "u1"], text_key="t2")
    by_text = store.publish(make_article(3), url_keys=["u3"], text_key="t1")
    assert (by_url.outcome, by_url.duplicate_of) == ("duplicate", "id1")
    assert (by_text.outcome, by_text.duplicate_of) == ("duplicate", "id1")
    assert redis_client.xlen("articles") == 1
    assert store.counters()["duplicates_exact"] == 2
    assert store.published_ids(["u3"]) == [None]  # a refused article claims nothing


def test_concurrent_publishers_publish_each_article_once(redis_url: str, redis_client: redis.Redis) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def publisher() -> None:
        store = Store(redis.Redis.from_url(redis_url))
        for n in range(50):
            result = store.publish(make_article(n), url_keys=[f"u{n}"], text_key=f"t{n}")
            with lock:
                outcomes.append(result.outcome)

    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("published") == 50
    assert redis_client.xlen("articles") == 50


def test_stream_is_trimmed_approximately_at_maxlen(redis_client: redis.Redis) -> None:
    store = Store(redis_client, stream_maxlen=100)
    for n in range(600):
        store.publish(make_article(n), url_keys=[f"u{n}"], text_key=None)
    assert 100 <= redis_client.xlen("articles") < 600


def test_two_schedulers_ticking_at_once_queue_one_poll_per_due_feed(redis_url: str,
                                                                    redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    store.sync_feeds(["a", "b", "c"], now=1000.0)
    queue = Queue(POLL_QUEUE, connection=redis_client)
    results: list[list[str]] = []

    def scheduler() -> None:
        client = redis.Redis.from_url(redis_url)
        results.append(tick(Store(client), Queue(POLL_QUEUE, connection=client), now=1000.0))

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(name for names in results for name in names) == ["a", "b", "c"]
    queued = sorted(name for job in queue.get_jobs() for name in job.args[0])
    assert queued == ["a", "b", "c"]
    # The slot has moved on: ticking again at the same time queues nothing.
    assert tick(store, queue, now=1000.0) == []


def test_a_feed_never_has_two_polls_in_flight(redis_client: redis.Redis) -> None:
    queue = Queue(POLL_QUEUE, connection=redis_client)
    assert enqueue_poll(queue, "a") is True
    assert enqueue_poll(queue, "a") is False
    assert queue.count == 1


def test_a_feed_held_by_one_poll_is_skipped_by_another(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    assert store.acquire_polls(["a", "b"], ttl=60) == ["a", "b"]
    assert store.acquire_polls(["b", "c"], ttl=60) == ["c"]
    store.release_polls(["a", "b"])
    assert store.acquire_polls(["a", "b", "c"], ttl=60) == ["a", "b"]


def test_sync_feeds_adds_new_feeds_as_due_and_drops_removed_ones(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    store.sync_feeds(["a", "b"], now=10.0)
    store.schedule("a", 500.0)
    store.sync_feeds(["a", "c"], now=20.0)
    assert store.due_times() == {"a": 500.0, "c": 20.0}
    store.schedule("b", 30.0)  # removed feeds are not brought back by a late poll
    assert "b" not in store.due_times()


def test_seen_guids(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    assert store.unseen("f", ["g1", "g2"]) == [True, True]
    store.mark_seen("f", ["g1"], now=100.0)
    assert store.unseen("f", ["g1", "g2"]) == [False, True]
    assert store.unseen("other", ["g1"]) == [True]


def test_publish_args_are_in_the_order_the_script_unpacks_them() -> None:
    import dataclasses
    import re

    from worker.store import PublishArgs
    from worker.store.base import lua_source

    source = lua_source("publish")
    unpacked = re.search(r"^local (.*?) = unpack\(ARGV, 1, (\d+)\)", source, re.S | re.M)
    assert unpacked is not None
    names = [name.strip() for name in unpacked.group(1).split(",")]
    assert names == [field.name for field in dataclasses.fields(PublishArgs)]
    assert int(unpacked.group(2)) == len(names)
    assert f"local FIRST_BAND = {len(names) + 1}" in source


def test_every_script_names_its_keys_and_argv_in_its_header() -> None:
    from importlib.resources import files

    scripts = [p for p in files("worker.store").joinpath("lua").iterdir() if p.name.endswith(".lua")]
    assert {p.name for p in scripts} == {"publish.lua", "claim_due.lua", "defer_host.lua", "acquire_slot.lua",
                                       "claim_rechecks.lua", "publish_update.lua", "outbox_assign.lua",
                                       "release_slot.lua"}
    for script in scripts:
        header = script.read_text().split("\nlocal ", 1)[0]
        assert "KEYS[1]" in header and "ARGV[1" in header, script.name


def test_claims_are_records_in_period_hashes_that_expire_and_overflow_by_digest(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    # 130 URL keys sharing their first 3 hex digits: past 120 fields a claim hash overflows to longer prefixes
    keys = [f"abc{n:021x}" for n in range(130)]
    for n, key in enumerate(keys):
        assert store.publish(make_article(n), url_keys=[key], text_key=None).outcome == "published"
    assert not list(redis_client.scan_iter(match="feedstream:claim:*"))  # no key per claim any more
    hashes = [k.decode() for k in redis_client.scan_iter(match="feedstream:claims:*")]
    assert len(hashes) > 1 and all(0 < redis_client.ttl(k) <= store.claim_ttl + store.claim_period_seconds
                                   for k in hashes)
    assert all(redis_client.object("encoding", k) == b"ziplist" for k in hashes)
    assert store.published_ids(keys) == [f"id{n}" for n in range(130)]
    for n, key in enumerate(keys):  # every claim is found again, in whichever hash it went to
        again = store.publish(make_article(1000 + n), url_keys=[key], text_key=None)
        assert (again.outcome, again.duplicate_of) == ("duplicate", f"id{n}")


def test_claims_of_the_old_form_are_honoured_until_they_expire(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    redis_client.set("feedstream:claim:url:u1", "id1", ex=3600)  # as written before issue 18
    redis_client.set("feedstream:claim:text:t9", "id9", ex=3600)
    assert store.published_ids(["u1", "u2"]) == ["id1", None]
    assert store.publish(make_article(1), url_keys=["u1"], text_key="t1").outcome == "already"
    assert store.publish(make_article(2), url_keys=["u1"], text_key="t2").duplicate_of == "id1"
    assert store.publish(make_article(3), url_keys=["u3"], text_key="t9").duplicate_of == "id9"
    assert redis_client.xlen("articles") == 0
