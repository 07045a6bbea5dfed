"""A running service (scheduler, RQ worker, serve: separate processes, real Redis, loopback sites) takes
sources added, paused, resumed and removed through the API and the CLI, and the feeds file beside them,
without a restart (but the scheduler's, for the file)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Worker

from tests.dovecot import free_port
from tests.pipeline_helpers import articles
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from tests.test_cli import base_env, feedstream

TOKEN = "service-token"


def serve_feed(site: Site, numbers: range, path: str, page_prefix: str) -> str:
    items = []
    for n in numbers:
        s = story(n)
        items.append((s, site.add(f"{page_prefix}/{s.slug}/", telecoms_page(s))))
    return site.add(path, rss2(f"Feed {path}", items), "application/rss+xml", headers={"ETag": f'"{path}-v1"'})


def wait_until(check: Callable[[], Any], seconds: float, what: str) -> float:
    """Poll ``check`` until it is true; returns the seconds it took (fails after ``seconds``)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


class Service:
    """The Procfile's scheduler, worker and web processes, started and stopped by the test."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *args: str) -> None:
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "worker", *args], env=self.env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self, name: str) -> str:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, output
        return output

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def sites() -> Iterator[list[Site]]:
    started = [Site().start() for _ in range(3)]
    yield started
    for site in started:
        site.stop()


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def by_feed(client: redis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in articles(client):
        counts[doc["feed"]] = counts.get(doc["feed"], 0) + 1
    return counts


def test_sources_come_and_go_while_the_service_runs(sites: list[Site], redis_client: redis.Redis, redis_url: str,
                                                    tmp_path: Path) -> None:
    site_a, site_b, site_f = sites
    # the feeds file's own two feeds
    f_url = serve_feed(site_f, range(10, 12), "/f.xml", "/f")
    h_url = serve_feed(site_f, range(20, 21), "/h.xml", "/h")
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(f'[[feeds]]\nname = "filed"\nurl = "{f_url}"\n\n'
                          f'[[feeds]]\nname = "dropped"\nurl = "{h_url}"\n')
    # a WordPress-like site for the API, a site with no <link> but /feed/ for the CLI
    serve_feed(site_a, range(0, 3), "/blog/feed/", "/news")
    site_a.add("/", f'<html><head><link rel="alternate" type="application/rss+xml" href="{site_a.base}/blog/feed/">'
               f'<link rel="alternate" type="application/json" href="{site_a.base}/wp-json/wp/v2/pages/2">'
               "</head></html>")
    serve_feed(site_b, range(3, 5), "/feed/", "/stories")
    site_b.add("/", "<html><head><title>B</title></head><body>no links here</body></html>")
    web_port = free_port()
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(feeds_file), FEEDSTREAM_ADMIN_TOKEN=TOKEN,
                   FEEDSTREAM_SERVE_PORT=str(web_port), FEEDSTREAM_FETCH_DEADLINE="5", FEEDSTREAM_ROBOTS="0")
    service = Service(env)
    try:
        for name, args in (("scheduler", ("scheduler",)), ("worker", ("worker", "--processes", "1")),
                           ("web", ("serve",))):
            service.start(name, *args)
        wait_until(lambda: Worker.all(connection=redis_client) and by_feed(redis_client).get("filed") == 2, 60,
                   "the service started and published the file's feeds")  # start-up, not a speed figure
        assert by_feed(redis_client) == {"filed": 2, "dropped": 1}

        # added through the API: the site's address is resolved to its feed by <link rel=alternate>
        status, created = api(web_port, "POST", "/api/sources", {"url": site_a.url("/"), "tags": ["api"]})
        assert status == 201 and created["url"] == site_a.url("/blog/feed/"), created
        took_api = wait_until(lambda: by_feed(redis_client).get(created["name"]) == 3, 10,
                              "the API's feed polled and published")
        # added with the CLI: a page without <link> is resolved by /feed/
        started = time.monotonic()
        added = feedstream("sources", "add", site_b.url("/"), "--name", "cli-feed", "--tag", "cli", env=env)
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip() == f"added cli-feed (feed): {site_b.url('/feed/')}"
        took_cli = wait_until(lambda: by_feed(redis_client).get("cli-feed") == 2, 10 - (time.monotonic() - started),
                              "the CLI's feed polled and published")
        print(f"\npublished {took_api:.1f} s after the API call, {time.monotonic() - started:.1f} s after the CLI "
              f"was started ({took_cli:.1f} s after it returned)")
        assert not [r for r in site_a.requests if "wp-json" in r.path]

        # paused: refused a refresh; resumed: the next poll is conditional (its validators were kept)
        assert feedstream("sources", "pause", "cli-feed", env=env).returncode == 0
        refused = feedstream("sources", "refresh", "cli-feed", env=env)
        assert refused.returncode == 1 and "is paused: resume it first" in refused.stderr
        polls = len(site_b.hits("/feed/"))
        assert feedstream("sources", "resume", "cli-feed", env=env).returncode == 0
        assert api(web_port, "POST", "/api/sources/cli-feed/refresh")[0] == 202
        wait_until(lambda: len(site_b.hits("/feed/")) > polls, 10, "the resumed feed polled")
        assert site_b.hits("/feed/")[-1].headers.get("if-none-match") == '"/feed/-v1"'

        # removed while its poll is due: never fetched again; what it published stays
        a_polls = len(site_a.hits("/blog/feed/"))
        assert api(web_port, "POST", f"/api/sources/{created['name']}/refresh")[0] == 202
        assert api(web_port, "DELETE", f"/api/sources/{created['name']}")[0] == 204
        time.sleep(3)  # several scheduler ticks and worker checks
        assert len(site_a.hits("/blog/feed/")) <= a_polls + 1  # at most the poll already queued before the removal
        removed_at = len(site_a.hits("/blog/feed/"))
        time.sleep(2)
        assert len(site_a.hits("/blog/feed/")) == removed_at
        assert by_feed(redis_client)[created["name"]] == 3

        # the file edited, only the scheduler restarted: its changes applied, API/CLI-made sources untouched
        g_url = serve_feed(site_f, range(30, 32), "/g.xml", "/g")
        feeds_file.write_text(f'[[feeds]]\nname = "filed"\nurl = "{f_url}"\ntags = ["edited"]\n\n'
                              f'[[feeds]]\nname = "grown"\nurl = "{g_url}"\n\n'
                              f'[[feeds]]\nname = "cli-feed"\nurl = "{site_b.url("/other.xml")}"\n')
        service.stop("scheduler")
        service.start("scheduler", "scheduler")
        wait_until(lambda: by_feed(redis_client).get("grown") == 2, 30, "the file's new feed published")
        sources = {s["name"]: s for s in api(web_port, "GET", "/api/sources")[1]["sources"]}
        assert set(sources) == {"filed", "grown", "cli-feed"}  # "dropped" went with the file
        assert sources["filed"]["tags"] == ["edited"] and sources["filed"]["managed_by"] == "file"
        assert sources["cli-feed"]["url"] == site_b.url("/feed/") and sources["cli-feed"]["managed_by"] == "api"
        output = service.stop("scheduler")
        service.stop_all()
    finally:
        for proc in service.procs.values():
            proc.kill()
    assert by_feed(redis_client)["dropped"] == 1  # its articles stay on the stream
    assert "cli-feed (made through the API; the file's entry is not applied)" in output
