"""What downstream apps rely on: the article schema, `tail --group`, the example app, on real bursts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import atom, rss1, rss2, story, telecoms_page
from worker.models import ARTICLE_SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "article.schema.json").read_text())


def burst_of_every_kind(site: Site, redis_url: str, feeds_file: Path) -> None:
    """Page extractions in three feed formats, a 404 page (feed fallback), the same link in two feeds and
    the same text under another link (a duplicate): 7 articles published, 8 pages fetched (one 404)."""
    items = []
    for n in range(6):
        s = story(n)
        items.append((s, site.add(f"/news/{s.slug}/", telecoms_page(s))))
    missing = story(50)
    shared = items[0]
    feeds = {
        "rss": site.add("/rss.xml", rss2("RSS", [*items[:2], (missing, site.url("/gone/"))]),
                        "application/rss+xml"),
        "atom": site.add("/atom.xml", atom("Atom", [*items[2:4], (shared[0], shared[1] + "?utm_source=x")]),
                         "application/atom+xml"),
        "rdf": site.add("/rdf.xml", rss1("RDF", [*items[4:], (items[5][0], site.add(
            f"/mirror/{items[5][0].slug}/", telecoms_page(items[5][0])))]), "application/rdf+xml"),
    }
    run_burst(make_context(redis_url, write_feeds(feeds_file, feeds)))


def test_schema_is_a_valid_2020_12_schema_with_the_current_version() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["properties"]["schema"]["const"] == ARTICLE_SCHEMA_VERSION


def test_schema_validates_every_entry_a_burst_produces(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    burst_of_every_kind(site, redis_url, feeds_file)
    docs = articles(redis_client)
    assert len(docs) == 7
    assert {d["extraction"] for d in docs} >= {"precision", "feed"}
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for doc in docs:
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, (doc["url"], errors)


def test_schema_rejects_documents_that_break_the_contract() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    good = {"schema": 1, "id": "0" * 24, "url": "https://e.com/a", "title": "t", "text": "x", "feed": "f",
            "published": "2024-05-01T10:00:00Z", "author": None, "language": "en", "duplicate_of": None}
    assert validator.is_valid(good)
    assert validator.is_valid({**good, "a_new_optional_field": 1})  # additive changes need no bump
    assert validator.is_valid({**good, "version": 1, "event": "published"})  # a first publication
    update = {**good, "version": 2, "event": "updated", "changes": {
        "paragraphs_added": 0, "paragraphs_removed": 0, "paragraphs_changed": 1, "title_changed": False}}
    assert validator.is_valid(update)
    for broken in ({**good, "schema": 2}, {**good, "published": "May 1st"},
                   {k: v for k, v in good.items() if k != "title"}, {**good, "language": "english"},
                   {k: v for k, v in update.items() if k != "changes"}, {**update, "version": 1},
                   {**good, "version": 2, "event": "published"}, {**update, "event": "edited"}):
        assert not validator.is_valid(broken), broken


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT), **extra)
    return env


def test_tail_with_a_group_prints_each_article_once_per_group(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    burst_of_every_kind(site, redis_url, feeds_file)
    env = _env(redis_url)

    def tail(*args: str) -> list[dict]:
        proc = subprocess.run([sys.executable, "-m", "worker", "tail", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    first = tail("--group", "ops", "--consumer", "c1", "--from-start")
    assert sorted(d["id"] for d in first) == sorted(d["id"] for d in articles(redis_client))
    assert tail("--group", "ops", "--consumer", "c2", "--from-start") == []  # the group has had them all
    assert len(tail("--group", "other", "--from-start")) == len(first)  # another group reads them again
    assert tail("--group", "late") == []  # a new group without --from-start starts at the end
    assert redis_client.xpending("articles", "ops")["pending"] == 0


def test_consumer_without_group_is_a_usage_error(redis_url: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "worker", "tail", "--consumer", "c"], env=_env(redis_url),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--consumer needs --group" in proc.stderr


@pytest.mark.parametrize("stream", ["articles", "news"])
def test_example_app_prints_each_headline(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path, stream: str) -> None:
    titles = []
    for n in range(3):
        s = story(n)
        doc = {"schema": 1, "id": f"{n:024x}", "url": f"https://e.com/{n}", "title": s.title, "text": "x",
               "feed": "f", "published": s.iso, "author": None, "language": "en", "duplicate_of": None}
        redis_client.xadd(stream, {"article": json.dumps(doc), "id": doc["id"], "url": doc["url"], "feed": "f"})
        titles.append(s.title)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "print_headlines.py"), "--from-start",
                           "--group", "example"], env=_env(redis_url, FEEDSTREAM_STREAM=stream),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line, title in zip(lines, titles, strict=True):
        assert title in line and "[f]" in line


def test_status_shows_queues_workers_the_stream_and_its_groups(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    burst_of_every_kind(site, redis_url, feeds_file)
    redis_client.xgroup_create("articles", "readers", id="0")
    redis_client.xreadgroup("readers", "r1", {"articles": ">"}, count=2)
    proc = subprocess.run([sys.executable, "-m", "worker", "status"], env=_env(redis_url,
                          FEEDSTREAM_FEEDS=str(feeds_file)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "queues: poll 0 queued, 0 running" in proc.stdout
    assert "stream 'articles': 7 entries; consumer groups: readers (1 consumer(s), 2 unacked)" in proc.stdout


def test_schema_describes_every_article_field() -> None:
    from dataclasses import fields

    from worker.models import Article

    assert {f.name for f in fields(Article)} <= set(SCHEMA["properties"])
