"""Changed articles (issue 17), end to end: a loopback site edits a published story, feedstream re-checks
it and publishes each real change once as the article's next version. Real Redis, real RQ workers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import jsonschema
import redis
from rq import Queue, Worker

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import Story, telecoms_page, wire_story
from tests.test_downstream import _env as downstream_env
from tests.test_faults import Workers, _env, _slow_page
from worker.consumer import Consumer
from worker.models import UpdatePolicy
from worker.ops.rqworker import pending_work
from worker.pipeline.context import Context
from worker.pipeline.queues import POLL_QUEUE, RECHECK_ARTICLES_JOB, enqueue_poll
from worker.pipeline.updates import recheck_articles
from worker.store.updates import CHECKED_AT

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "article.schema.json").read_text())
STAMP = "Updated 30 November 2026, 10:32 GMT"
COUNTER = "1,234 views"


@dataclass
class Edition:
    """One story as the site serves it now: its page (with an ETag naming the edition) and its feed entry."""

    story: Story
    path: str
    updated: str  # the feed entry's <updated>
    etag: str

    def serve(self, site: Site) -> str:
        site.add(self.path, telecoms_page(self.story), headers={"ETag": self.etag})
        return site.url(self.path)


def atom_feed(site: Site, editions: list[Edition]) -> str:
    entries = "".join(
        f"""<entry><title>{escape(e.story.title)}</title><link rel="alternate" href="{escape(site.url(e.path))}"/>
<id>urn:test:{escape(e.story.slug)}</id><published>2026-11-23T09:30:00Z</published><updated>{e.updated}</updated>
<summary>{escape(e.story.paragraphs[1][:100])}</summary></entry>"""
        for e in editions)
    return site.add("/atom.xml", f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>News</title><id>urn:test:news</id>
<updated>2026-11-30T00:00:00Z</updated>{entries}</feed>""", "application/atom+xml")


def first_edition(n: int) -> Edition:
    s = wire_story(n, paragraphs=4)
    s = replace(s, paragraphs=[*s.paragraphs, STAMP, COUNTER])
    return Edition(s, f"/news/{s.slug}/", "2026-11-23T09:30:00Z", f'"{n}-1"')


def edited(edition: Edition, paragraphs: list[str], updated: str, etag: str) -> Edition:
    return Edition(replace(edition.story, paragraphs=paragraphs), edition.path, updated, etag)


def publish(site: Site, editions: list[Edition], redis_url: str, feeds_file: Path, mode: str = "separate"
            ) -> Context:
    for e in editions:
        e.serve(site)
    feed = atom_feed(site, editions)
    context = make_context(redis_url, write_feeds(feeds_file, {"news": feed}),
                           updates=UpdatePolicy(mode=mode, min_interval=0))
    run_burst(context)
    return context


def republish(site: Site, context: Context, editions: list[Edition]) -> None:
    for e in editions:
        e.serve(site)
    atom_feed(site, editions)
    run_burst(context)


def entries(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    return articles(client, stream)


def page_requests(site: Site, path: str) -> list[dict[str, str]]:
    return [r.headers for r in site.hits(path)]


def test_a_corrected_paragraph_publishes_version_2_once_and_noise_or_nothing_publishes_nothing(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    v1 = first_edition(1)
    context = publish(site, [v1], redis_url, feeds_file)
    [first] = entries(redis_client, "articles")
    assert (first["version"], first["event"]) == (1, "published")
    # the timestamp and the counter are part of the published text: the noise below is really seen
    assert STAMP in first["text"] and COUNTER in first["text"]

    # 1. A paragraph corrected, the entry's <updated> moved: one update event, version 2.
    story = v1.story.paragraphs
    corrected = [story[0], story[1].replace("week", "month", 1), *story[2:]]
    assert corrected[1] != story[1]
    v2 = edited(v1, corrected, "2026-11-30T10:00:00Z", '"1-2"')
    republish(site, context, [v2])
    [update] = entries(redis_client, "articles:updates")
    assert (update["id"], update["version"], update["event"]) == (first["id"], 2, "updated")
    assert update["changes"]["paragraphs_changed"] == 1
    assert update["changes"]["paragraphs_added"] == update["changes"]["paragraphs_removed"] == 0
    assert update["changes"]["title_changed"] is False
    assert update["text"] == "\n\n".join(corrected) and update["updated"]
    assert update["cluster"] == first["cluster"] and update["duplicate_of"] is None
    # the re-check was a conditional request with the first fetch's validator
    assert page_requests(site, v1.path)[-1].get("if-none-match") == '"1-1"'
    # with separate, the main stream holds first publications only
    assert [d["event"] for d in entries(redis_client, "articles")] == ["published"]

    # 2. Only the timestamp and the view counter changed (and <updated> moved): nothing is published.
    noisy = [*corrected[:-2], "Updated 30 November 2026, 16:05 GMT", "1,873 views"]
    v2b = edited(v2, noisy, "2026-11-30T16:05:00Z", '"1-2b"')
    republish(site, context, [v2b])
    assert page_requests(site, v1.path)[-1].get("if-none-match") == '"1-2"'  # it was fetched again
    assert len(entries(redis_client, "articles:updates")) == 1

    # 3. <updated> moved, the page did not: the conditional request is answered 304, nothing published.
    before = len(site.hits(v1.path))
    republish(site, context, [replace(v2b, updated="2026-11-30T18:00:00Z")])
    [request] = page_requests(site, v1.path)[before:]
    assert request.get("if-none-match") == '"1-2b"'  # the validator kept by the unchanged re-check
    assert context.store.counters().get("rechecks_not_modified") == 1
    assert len(entries(redis_client, "articles:updates")) == 1

    # 4. A third real change (a paragraph added, the title corrected): version 3.
    added = [*noisy[:-1], "A correction was appended to this report after publication.", noisy[-1]]
    v3 = edited(v2b, added, "2026-11-30T19:00:00Z", '"1-3"')
    v3.story = replace(v3.story, title=v3.story.title + " (corrected)")
    republish(site, context, [v3])
    updates = entries(redis_client, "articles:updates")
    assert [(u["id"], u["version"]) for u in updates] == [(first["id"], 2), (first["id"], 3)]
    assert updates[1]["changes"]["paragraphs_added"] == 1 and updates[1]["changes"]["title_changed"] is True
    counters = context.store.counters()
    assert (counters["rechecks"], counters["rechecks_not_modified"], counters["rechecks_unchanged"],
            counters["updates_published"]) == (4, 1, 1, 2)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for doc in (first, *updates):
        assert not list(validator.iter_errors(doc)), doc["version"]

    # Downstream: `feedstream tail --updates` prints the update events; the example app shows the
    # headline, then each correction once.
    env = downstream_env(redis_url, FEEDSTREAM_FEEDS=str(feeds_file))
    tail = subprocess.run([sys.executable, "-m", "worker", "tail", "--updates", "--from-start"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["version"] for line in tail.stdout.splitlines()] == [2, 3]
    app = subprocess.run([sys.executable, str(ROOT / "examples" / "print_headlines.py"), "--from-start", "--updates",
                          "--group", "example"], env=env, capture_output=True, text=True, timeout=60)
    assert app.returncode == 0, app.stderr
    lines = app.stdout.splitlines()
    assert len(lines) == 3 and first["title"] in lines[0], lines
    assert "UPDATED v2" in lines[1] and "~1 paragraphs" in lines[1]
    assert "UPDATED v3" in lines[2] and "+1 -0" in lines[2] and "new title" in lines[2]


def test_a_retried_or_duplicated_recheck_finds_the_version_taken(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    v1 = first_edition(2)
    context = publish(site, [v1], redis_url, feeds_file)
    [first] = entries(redis_client, "articles")
    changed = [*v1.story.paragraphs[:2], "An entirely new paragraph replaces the third one here.",
               *v1.story.paragraphs[3:]]
    edited(v1, changed, "2026-11-30T10:00:00Z", '"2-2"').serve(site)
    item = {"id": first["id"], "entry": {"guid": "urn:test:x", "url": site.url(v1.path), "feed": "news"}}
    # The page is answered without validators, so every run below really fetches and compares it.
    site.routes[v1.path].headers.pop("ETag")
    once = recheck_articles(context, [item, item], final_attempt=True)  # a job listing it twice
    again = recheck_articles(context, [item], final_attempt=True)  # RQ re-running it after a crash
    assert once == {"published": 1, "superseded": 1}, once  # both compared with version 1; one wins
    assert again == {"unchanged": 1}, again
    assert [u["version"] for u in entries(redis_client, "articles:updates")] == [2]


def test_inline_consumers_see_the_same_id_with_versions_1_and_2(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    v1 = first_edition(3)
    context = publish(site, [v1], redis_url, feeds_file, mode="inline")
    paragraphs = [*v1.story.paragraphs[:-1], "The minister later denied the report.", v1.story.paragraphs[-1]]
    republish(site, context, [edited(v1, paragraphs, "2026-11-30T10:00:00Z", '"3-2"')])

    seen: list[dict[str, Any]] = []
    Consumer(redis_client, stream="articles", group="app", consumer="c1", from_start=True).run(
        seen.append, follow=False)
    assert [(d["id"], d["version"], d["event"]) for d in seen] == [
        (seen[0]["id"], 1, "published"), (seen[0]["id"], 2, "updated")]
    assert not redis_client.exists("articles:updates")


def test_sigkilled_workers_during_rechecks_never_double_a_version(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path, tmp_path: Path) -> None:
    # Twelve published stories, all edited: two re-check jobs of slow pages on two worker processes; the
    # worker running one of them is SIGKILLed mid-job (and replaced), and RQ runs its job again.
    editions = [first_edition(100 + n) for n in range(12)]
    publish(site, editions, redis_url, feeds_file)
    assert len(entries(redis_client, "articles")) == 12
    for e in editions:
        e2 = edited(e, [*e.story.paragraphs[:2], f"Paragraph three of {e.story.slug} was rewritten.",
                        *e.story.paragraphs[3:]], "2026-11-30T10:00:00Z", e.etag + "2")
        site.handle(e.path, _slow_page(telecoms_page(e2.story).encode(), 0.3))
        e.updated = e2.updated
    atom_feed(site, editions)
    workers = Workers(_env(redis_url, feeds_file) | {"FEEDSTREAM_UPDATE_MIN_INTERVAL": "0"}, tmp_path)
    killed = 0
    try:
        for _ in range(2):
            workers.start("simple")
        enqueue_poll(Queue(POLL_QUEUE, connection=redis_client), "news")
        give_up = time.monotonic() + 150
        while True:
            assert time.monotonic() < give_up, (
                f"not done: {len(entries(redis_client, 'articles:updates'))} updates, {pending_work(redis_client)}")
            time.sleep(0.2)
            if not killed:
                running = [w for w in Worker.all(connection=redis_client) if w.get_state() == "busy"
                           and (job := w.get_current_job()) is not None and job.func_name == RECHECK_ARTICLES_JOB
                           and job.started_at and (datetime.now(UTC) - job.started_at.replace(tzinfo=UTC))
                           .total_seconds() > 0.8]
                if running:
                    workers.kill_worker(running[0].pid)
                    killed += 1
                continue
            # Done when every update is out and no job is queued or running. The job the killed worker held
            # was run again on another; RQ 3 may also schedule a retry of that re-run, which would find
            # every version taken (the duplicate test above shows it): not waited for, to stay lean.
            busy, _scheduled = pending_work(redis_client)
            if len(entries(redis_client, "articles:updates")) >= 12 and not busy:
                break
    finally:
        workers.stop()
    assert killed == 1
    versions = Counter((u["id"], u["version"]) for u in entries(redis_client, "articles:updates"))
    assert len(versions) == 12 and set(versions.values()) == {1}, versions
    assert {version for _, version in versions} == {2}


def test_a_change_seen_within_the_minimum_interval_is_put_off_not_forgotten(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    v1 = first_edition(4)
    v1.serve(site)
    context = make_context(redis_url, write_feeds(feeds_file, {"news": atom_feed(site, [v1])}),
                           updates=UpdatePolicy(min_interval=3600))
    run_burst(context)
    [first] = entries(redis_client, "articles")
    v2 = edited(v1, [*v1.story.paragraphs[:-1], "A late paragraph.", v1.story.paragraphs[-1]],
                "2026-11-30T10:00:00Z", '"4-2"')
    republish(site, context, [v2])  # published minutes ago: too soon to look again
    assert len(site.hits(v1.path)) == 1 and not redis_client.exists("articles:updates")
    run_burst(context)  # still too soon: the entry still counts as moved, nothing fetched
    assert len(site.hits(v1.path)) == 1
    # an hour later, as the record sees it: its last check time set back to 0
    redis_client.setrange(f"feedstream:ver:{first['id']}", CHECKED_AT, bytes(4))
    run_burst(context)  # the feed did not move again, the change held back is re-checked now
    [update] = entries(redis_client, "articles:updates")
    assert (update["version"], update["changes"]["paragraphs_added"]) == (2, 1)


def test_updates_off_rechecks_nothing_and_keeps_nothing(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    v1 = first_edition(5)
    context = publish(site, [v1], redis_url, feeds_file, mode="off")
    republish(site, context, [edited(v1, v1.story.paragraphs[1:], "2026-11-30T10:00:00Z", '"5-2"')])
    assert len(site.hits(v1.path)) == 1  # the page was fetched once, for its first publication
    assert [d["version"] for d in entries(redis_client, "articles")] == [1]
    assert not redis_client.keys("feedstream:ver:*") and not redis_client.keys("feedstream:marks:*")
    assert not redis_client.exists("articles:updates")


def test_an_article_made_from_the_feed_is_rechecked_against_the_feeds_new_content(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    v1 = first_edition(6)
    v1.serve(site)
    context = make_context(redis_url, write_feeds(feeds_file, {"news": atom_feed(site, [v1])}, full_text=False),
                           updates=UpdatePolicy(min_interval=0))
    run_burst(context)
    [first] = entries(redis_client, "articles")
    assert first["extraction"] == "feed"
    paragraphs = list(v1.story.paragraphs)
    paragraphs[1] = "Correction: " + paragraphs[1]  # the feed's summary is cut from this paragraph
    republish(site, context, [edited(v1, paragraphs, "2026-11-30T10:00:00Z", '"6-2"')])
    [update] = entries(redis_client, "articles:updates")
    assert update["version"] == 2 and update["text"].startswith("Correction:")
    assert update["extraction"] == "feed" and update["changes"]["paragraphs_changed"] == 1
    assert not site.hits(v1.path)  # the page was never fetched


def test_a_version_record_round_trips_through_its_bytes() -> None:
    from worker.store import VersionRecord

    record = VersionRecord(version=3, title="ab" * 8, paragraphs=bytes(range(24)), etag='W/"x-1"',
                           last_modified="Mon, 30 Nov 2026 09:30:00 GMT", checked=1796000000.0,
                           cluster="cd" * 12, duplicate=True, from_feed=True)
    assert VersionRecord.unpack(record.packed()) == record
    bare = VersionRecord(version=1, title="", paragraphs=b"", etag="e" * 300)  # too long to keep: dropped
    assert VersionRecord.unpack(bare.packed()) == replace(bare, etag=None)
    assert len(record.packed()) == 29 + 8 + 30 + 24  # head, ETag, Last-Modified, 3 paragraph digests
    assert VersionRecord.unpack(b"\x00\x01") is None
