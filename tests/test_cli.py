"""The feedstream command, run as a user runs it, in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis

from tests.pipeline_helpers import articles, write_feeds
from tests.site import Site
from tests.sitegen import atom, rss1, rss2, story, telecoms_page


def feedstream(*args: str, env: dict[str, str], cwd: Path | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "FEEDSTREAM_"))}
    env.update(FEEDSTREAM_ALLOW_PRIVATE="1", FEEDSTREAM_WORKERS="2", **extra)
    return env


def build_site(site: Site) -> tuple[dict[str, str], dict[str, str]]:
    """Two feeds of each format; one story appears in two feeds. Returns (feeds, url -> body)."""
    bodies: dict[str, str] = {}
    feeds: dict[str, str] = {}
    n = 0
    makers = {"rss": (rss2, "application/rss+xml"), "atom": (atom, "application/atom+xml"),
              "rdf": (rss1, "application/rdf+xml")}
    shared = story(999)
    shared_link = site.add(f"/news/{shared.slug}/", telecoms_page(shared))
    bodies[shared_link] = shared.body_text
    for kind, (make, content_type) in makers.items():
        for copy in range(2):
            items = []
            for _ in range(3):
                s = story(n)
                n += 1
                link = site.add(f"/{kind}{copy}/{s.slug}/", telecoms_page(s))
                bodies[link] = s.body_text
                items.append((s, link))
            if kind == "rss":
                items.append((shared, shared_link + f"?utm_source={kind}{copy}"))
            feeds[f"{kind}{copy}"] = site.add(f"/{kind}{copy}.xml", make(kind, items), content_type,
                                              headers={"ETag": f'"{kind}{copy}"'})
    return feeds, bodies


def test_burst_publishes_every_unique_article_once_and_a_second_burst_nothing(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    feeds, bodies = build_site(site)
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(write_feeds(feeds_file, feeds)))

    first = feedstream("run", "--burst", env=env)
    assert first.returncode == 0, first.stderr
    assert "6 feed(s) polled (6 ok" in first.stdout
    assert f"{len(bodies)} article(s) published" in first.stdout
    docs = articles(redis_client)
    assert sorted(d["url"] for d in docs) == sorted(bodies)
    for doc in docs:
        assert doc["text"] == bodies[doc["url"]]

    second = feedstream("run", "--burst", env=env)
    assert second.returncode == 0, second.stderr
    assert "6 not modified" in second.stdout and "0 article(s) published" in second.stdout
    assert len(articles(redis_client)) == len(bodies)

    tail = feedstream("tail", "--from-start", env=env)
    assert tail.returncode == 0
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [doc["id"] for doc in lines] == [doc["id"] for doc in docs]

    status = feedstream("status", "--json", env=env)
    report = json.loads(status.stdout)
    rows = report["feeds"]
    assert {row["feed"] for row in rows} == set(feeds)
    # the figures the text output shows below the table are there too, and nothing is left pending
    assert report["redis"]["accepts_writes"] is True and report["workers"] == 0
    assert report["queues"]["extract"]["queued"] == 0 and report["outbox"]["pending"] == 0
    assert report["stream"]["length"] == len(docs) and report["stream"]["groups"] == []
    assert all(row["http_status"] == "304" and row["etag"] for row in rows)
    assert sum(row["entries_seen"] for row in rows) == len(bodies) + 1  # the shared story, listed twice


def test_bad_config_exits_2_with_one_line(tmp_path: Path, redis_url: str) -> None:
    bad = tmp_path / "feeds.toml"
    bad.write_text("[[feeds]]\nname='x'\n")
    result = feedstream("run", "--burst", env=base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(bad)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"feedstream: config: {bad}: feed #1 (x): url must be an "
                                                  "http(s) URL (got None)"]


def test_unreachable_redis_exits_2_with_one_line(feeds_file: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    env = base_env(REDIS_URL=f"redis://127.0.0.1:{port}/0",
                   FEEDSTREAM_FEEDS=str(write_feeds(feeds_file, {"a": "https://example.com/feed"})))
    started = time.monotonic()
    result = feedstream("run", "--burst", env=env, timeout=60)
    assert result.returncode == 2
    assert time.monotonic() - started < 20
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"feedstream: cannot reach Redis at redis://127.0.0.1:{port}/0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode("utf-8", "replace")


def test_run_starts_embedded_redis_workers_and_dashboard(site: Site, tmp_path: Path) -> None:
    s = story(500)
    link = site.add(f"/news/{s.slug}/", telecoms_page(s))
    feeds = write_feeds(tmp_path / "feeds.toml", {"local": site.add("/feed.xml", rss2("F", [(s, link)]),
                                                                    "application/rss+xml")})
    port = _free_port()
    metrics_port = _free_port()
    env = base_env(FEEDSTREAM_FEEDS=str(feeds), FEEDSTREAM_DASHBOARD_PORT=str(port),
                   FEEDSTREAM_METRICS_PORT=str(metrics_port))
    process = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        url_file = tmp_path / "var" / "redis.url"
        published = 0
        dashboard = None
        while time.monotonic() < deadline and (not published or dashboard is None):
            time.sleep(0.5)
            if url_file.exists() and not published:
                client = redis.Redis.from_url(url_file.read_text().strip())
                published = client.xlen("articles") if client.exists("articles") else 0
            if dashboard is None:
                with contextlib.suppress(OSError):
                    dashboard = _get(f"http://127.0.0.1:{port}/")
        assert published == 1, "the service did not publish the local feed's article"
        assert dashboard is not None and dashboard[0] == 200
        status, workers = _get(f"http://127.0.0.1:{port}/0/data/workers.json")
        assert status == 200 and json.loads(workers)["workers"], workers
        health = None
        while time.monotonic() < deadline and health is None:  # readiness of the metrics process
            with contextlib.suppress(OSError):
                health = _get(f"http://127.0.0.1:{metrics_port}/healthz")
            time.sleep(0.2)
        assert health is not None and health[0] == 200 and json.loads(health[1])["ok"] is True
        status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200 and "feedstream_articles_published_total 1.0" in text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)
    assert process.returncode == 0, output
    assert "started the embedded Redis at redis://127.0.0.1:" in output
    assert f"data in {tmp_path / 'var'}" in output
    assert any((tmp_path / "var").glob("appendonly*")), "the embedded Redis keeps its data under var/"


def test_status_shows_moves_retirement_and_errors(site: Site, redis_client: redis.Redis, redis_url: str,
                                                  feeds_file: Path) -> None:
    new = site.add("/new.xml", rss2("N", []), "application/rss+xml", headers={"ETag": '"n1"'})
    feeds = {"moved": site.add("/old.xml", b"", status=301, headers={"Location": new}),
             "gone": site.add("/gone.xml", "gone", status=410),
             "broken": site.add("/broken.xml", "garbage <<< >>>", "application/rss+xml"),
             "ok": site.add("/ok.xml", rss2("O", []), "application/rss+xml",
                            headers={"Last-Modified": "Mon, 23 Nov 2026 09:30:00 GMT"})}
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(write_feeds(feeds_file, feeds, full_text=False)))
    assert feedstream("run", "--burst", env=env).returncode == 0

    rows = {row["feed"]: row for row in json.loads(feedstream("status", "--json", env=env).stdout)["feeds"]}
    assert rows["moved"]["moved_to"] == new and rows["moved"]["moved_polls"] == 1
    assert rows["moved"]["etag"] == '"n1"' and rows["moved"]["http_status"] == "200"
    assert rows["gone"]["retired"].startswith("gone: fetch: HTTP 410 Gone") and rows["gone"]["next_poll"] is None
    assert rows["broken"]["consecutive_errors"] == 1 and rows["broken"]["last_error"].startswith("parse: ")
    assert rows["ok"]["last_modified"] and rows["ok"]["consecutive_errors"] == 0 and rows["ok"]["next_poll"]
    for row in rows.values():
        assert set(row) >= {"last_poll", "http_status", "etag", "last_modified", "entries_seen",
                            "consecutive_errors", "last_error", "next_poll", "moved_to", "adopted_url", "retired"}

    text = feedstream("status", env=env).stdout
    assert "retired (no more polls): gone: fetch: HTTP 410 Gone" in text
    assert f"moving: permanent redirect to {new} seen 1 poll(s) in a row" in text
    assert "last error: parse: " in text
