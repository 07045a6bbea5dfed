"""worker.consumer against a real Redis: at-least-once delivery, take-over, dead letters."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import redis

from worker.consumer import Consumer


def add(client: redis.Redis, article_id: str, stream: str = "articles", raw: str | None = None) -> str:
    doc = {"id": article_id, "url": f"https://example.com/{article_id}", "title": f"Title {article_id}",
           "text": "body", "feed": "f", "published": None, "author": None, "language": None,
           "duplicate_of": None, "schema": 1}
    entry_id = client.xadd(stream, {"article": raw if raw is not None else json.dumps(doc), "id": article_id,
                                    "url": doc["url"], "feed": "f"})
    return entry_id.decode()


def pending(client: redis.Redis, group: str, stream: str = "articles") -> int:
    return int(client.xpending(stream, group)["pending"])


def test_group_is_created_once_at_the_end_or_the_start(redis_client: redis.Redis) -> None:
    add(redis_client, "old")
    late = Consumer(redis_client, group="late", consumer="c1")
    assert late.ensure_group() is True
    assert late.ensure_group() is False  # idempotent: BUSYGROUP is not an error
    add(redis_client, "new")
    seen: list[str] = []
    late.run(lambda a: seen.append(a["id"]), follow=False)
    assert seen == ["new"]

    early: list[str] = []
    Consumer(redis_client, group="early", consumer="c1", from_start=True).run(
        lambda a: early.append(a["id"]), follow=False)
    assert early == ["old", "new"]
    assert pending(redis_client, "late") == 0 and pending(redis_client, "early") == 0


def test_missing_stream_is_created_and_reading_it_is_empty(redis_client: redis.Redis) -> None:
    consumer = Consumer(redis_client, stream="nothing-yet", group="g", consumer="c")
    assert consumer.run(lambda a: None, follow=False).seen == 0
    assert redis_client.exists("nothing-yet")


def test_two_consumers_of_one_group_share_the_entries(redis_client: redis.Redis) -> None:
    for n in range(10):
        add(redis_client, f"a{n}")
    one = Consumer(redis_client, group="g", consumer="one", count=3, from_start=True)
    two = Consumer(redis_client, group="g", consumer="two", count=3, from_start=True)
    got: dict[str, list[str]] = {"one": [], "two": []}
    while True:
        a = one.process(lambda art: got["one"].append(art["id"]))
        b = two.process(lambda art: got["two"].append(art["id"]))
        if a.seen == 0 and b.seen == 0:
            break
    assert got["one"] and got["two"]
    assert sorted(got["one"] + got["two"]) == sorted(f"a{n}" for n in range(10))


_DIES_IN_HANDLER = textwrap.dedent("""
    import os, signal, sys
    from worker.consumer import Consumer

    def handler(article):
        print(article["id"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # dies after reading, before the ack

    Consumer(sys.argv[1], group="g", consumer="doomed", from_start=True).run(handler, follow=False)
""")


def test_consumer_killed_between_read_and_ack_loses_nothing(redis_client: redis.Redis, redis_url: str) -> None:
    add(redis_client, "first")
    add(redis_client, "second")
    proc = subprocess.run([sys.executable, "-c", _DIES_IN_HANDLER, redis_url], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert proc.stdout.split() == ["first"]
    assert pending(redis_client, "g") == 2  # both read in one batch, neither acknowledged

    survivor: list[str] = []
    rescuer = Consumer(redis_client, group="g", consumer="rescuer", claim_idle=0)
    rescuer.run(lambda a: survivor.append(a["id"]), follow=False)
    assert survivor == ["first", "second"]
    assert pending(redis_client, "g") == 0


def test_entries_idle_less_than_the_claim_timeout_are_left_to_their_owner(redis_client: redis.Redis) -> None:
    add(redis_client, "x")
    owner = Consumer(redis_client, group="g", consumer="owner", from_start=True)
    assert [d.id for d in owner.read()]  # read and not acked: the owner is "working on it"
    other = Consumer(redis_client, group="g", consumer="other", claim_idle=3600)
    assert other.run(lambda a: None, follow=False).seen == 0
    # The owner restarted under the same name gets its own pending entry back.
    again: list[str] = []
    Consumer(redis_client, group="g", consumer="owner").run(lambda a: again.append(a["id"]), follow=False)
    assert again == ["x"]
    assert pending(redis_client, "g") == 0


def test_poison_entry_goes_to_the_dead_letter_stream_after_n_deliveries(redis_client: redis.Redis) -> None:
    good = [add(redis_client, "good1"), None, add(redis_client, "good2")]
    poison_id = add(redis_client, "poison")
    good[1] = add(redis_client, "good3")
    calls: list[str] = []

    def handler(article: dict[str, Any]) -> None:
        calls.append(article["id"])
        if article["id"] == "poison":
            raise RuntimeError("cannot handle this one")

    consumer = Consumer(redis_client, group="g", consumer="c", claim_idle=0, max_deliveries=3, from_start=True)
    outcome = consumer.run(handler, follow=False)
    assert calls.count("poison") == 3
    assert sorted(c for c in calls if c != "poison") == ["good1", "good2", "good3"]
    assert (outcome.handled, outcome.failed, outcome.dead) == (3, 2, 1)
    dead = redis_client.xrange("articles:dead")
    assert len(dead) == 1
    fields = {k.decode(): v.decode() for k, v in dead[0][1].items()}
    assert fields["source_id"] == poison_id and fields["deliveries"] == "3" and fields["group"] == "g"
    assert fields["error"] == "handler: RuntimeError: cannot handle this one"
    assert json.loads(fields["article"])["id"] == "poison"
    assert pending(redis_client, "g") == 0  # acknowledged once dead-lettered: the group moves on


def test_undecodable_entry_is_dead_lettered_at_once(redis_client: redis.Redis) -> None:
    add(redis_client, "broken", raw="{not json")
    add(redis_client, "fine")
    seen: list[str] = []
    Consumer(redis_client, group="g", consumer="c", from_start=True).run(lambda a: seen.append(a["id"]),
                                                                       follow=False)
    assert seen == ["fine"]
    dead = redis_client.xrange("articles:dead")
    assert len(dead) == 1 and dead[0][1][b"error"].startswith(b"decode: ")
    assert pending(redis_client, "g") == 0


def test_consumer_accepts_a_url(redis_client: redis.Redis, redis_url: str) -> None:
    add(redis_client, "u")
    seen: list[str] = []
    Consumer(redis_url, group="g", consumer="c", from_start=True).run(lambda a: seen.append(a["id"]), follow=False)
    assert seen == ["u"]


def test_entry_deleted_while_pending_is_skipped_not_fatal(redis_client: redis.Redis) -> None:
    gone = add(redis_client, "gone")
    add(redis_client, "kept")
    first = Consumer(redis_client, group="g", consumer="first", from_start=True)
    assert len(first.read()) == 2  # both pending on "first", which then dies
    redis_client.xdel("articles", gone)  # e.g. trimmed by MAXLEN before anyone acked it
    seen: list[str] = []
    Consumer(redis_client, group="g", consumer="second", claim_idle=0).run(lambda a: seen.append(a["id"]),
                                                                          follow=False)
    assert seen == ["kept"]
    assert pending(redis_client, "g") == 0


def test_restarted_consumer_skips_its_own_pending_entry_that_was_deleted(redis_client: redis.Redis) -> None:
    gone = add(redis_client, "gone")
    add(redis_client, "kept")
    assert len(Consumer(redis_client, group="g", consumer="c", from_start=True).read()) == 2
    redis_client.xdel("articles", gone)
    seen: list[str] = []
    Consumer(redis_client, group="g", consumer="c").run(lambda a: seen.append(a["id"]), follow=False)
    assert seen == ["kept"]
    assert pending(redis_client, "g") == 0


def test_entry_whose_handler_kills_every_consumer_is_dead_lettered(redis_client: redis.Redis) -> None:
    crasher = add(redis_client, "crasher")
    for n in range(3):  # three consumers each read it and die before finishing (no ack, no failure recorded)
        reader = Consumer(redis_client, group="g", consumer=f"dies-{n}", claim_idle=0, max_deliveries=3,
                          from_start=True)
        assert [d.id for d in reader.read()] == [crasher]
    calls: list[str] = []
    survivor = Consumer(redis_client, group="g", consumer="survivor", claim_idle=0, max_deliveries=3)
    outcome = survivor.run(lambda a: calls.append(a["id"]), follow=False)
    assert calls == [] and outcome.dead == 1  # the 4th delivery is past the limit: not handed to the handler
    dead = redis_client.xrange("articles:dead")
    assert dead[0][1][b"source_id"].decode() == crasher and dead[0][1][b"deliveries"] == b"4"
    assert pending(redis_client, "g") == 0
