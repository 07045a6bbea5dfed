"""``feedstream sources``, ``discover`` and ``opml`` as an operator runs them: straight to Redis, one line
and a non-zero exit for what they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from tests.site import Site
from tests.sitegen import rss2, story
from tests.test_cli import base_env, feedstream
from tests.test_opml import FRESHRSS, MINIFLUX


def test_add_list_discover_and_refusals(site: Site, redis_url: str, redis_client: redis.Redis,
                                        tmp_path: Path) -> None:
    feeds = tmp_path / "feeds.toml"
    feeds.write_text('[[feeds]]\nname = "filed"\nurl = "https://filed.example/feed"\n')
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(feeds))
    site.add("/", f'<html><head><link rel="alternate" type="application/rss+xml" href="{site.base}/rss"></head>')
    site.add("/rss", rss2("Weekly", [(story(1), "https://example.test/a")]), "application/rss+xml")
    site.add("/empty/", "<html><body>nothing</body></html>")

    found = feedstream("discover", site.url("/"), env=env)
    assert found.returncode == 0 and found.stdout.startswith(f"{site.url('/rss')}  (link; 1 entries) Weekly")
    added = feedstream("sources", "add", site.url("/"), "--tag", "a", "--tag", "b", "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert {k: json.loads(added.stdout)[k] for k in ("name", "url", "tags")} == {
        "name": "weekly", "url": site.url("/rss"), "tags": ["a", "b"]}
    listed = json.loads(feedstream("sources", "list", "--json", env=env).stdout)
    assert [(s["name"], s["managed_by"]) for s in listed] == [("filed", "file"), ("weekly", "api")]

    for args, message in [
        (("sources", "add", site.url("/rss"), "--name", "again"), "source 'weekly' has this url already"),
        (("sources", "add", site.url("/empty/")), "no feed found at"),
        (("sources", "add", "notaurl"), "url must be an http(s) URL"),
        (("sources", "add", site.url("/rss"), "--set", "interval=5"), "interval must be whole seconds >= 60"),
        (("sources", "remove", "filed"), "managed by the feeds file"),
        (("discover", site.url("/empty/")), "no feed found at"),
    ]:
        result = feedstream(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()[-1:]
        assert line.startswith("feedstream: ") and message in line, (args, result.stderr)
    assert len(json.loads(feedstream("sources", "list", "--json", env=env).stdout)) == 2  # nothing half-added


def test_opml_export_import_and_other_readers_exports(redis_url: str, redis_client: redis.Redis,
                                                      tmp_path: Path) -> None:
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(tmp_path / "absent.toml"))  # Redis alone will do
    (tmp_path / "miniflux.opml").write_bytes(MINIFLUX)
    (tmp_path / "freshrss.opml").write_bytes(FRESHRSS)
    result = feedstream("opml", "import", str(tmp_path / "miniflux.opml"), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "3 added, 0 skipped, 0 refused"
    result = feedstream("opml", "import", str(tmp_path / "freshrss.opml"), "--json", env=env)
    report = json.loads(result.stdout)
    assert [a["name"] for a in report["added"]] == ["le-monde-telecoms", "the-register"]
    assert [r["reason"] for r in report["refused"]] == ["no xmlUrl: not a feed"]
    before = json.loads(feedstream("sources", "list", "--json", env=env).stdout)
    assert feedstream("opml", "export", str(tmp_path / "out.opml"), env=env).returncode == 0
    redis_client.flushdb()
    again = feedstream("opml", "import", str(tmp_path / "out.opml"), env=env)
    assert again.stdout.strip().splitlines()[-1] == "5 added, 0 skipped, 0 refused"
    after = json.loads(feedstream("sources", "list", "--json", env=env).stdout)
    fields = ("name", "kind", "url", "tags", "managed_by")
    assert [{k: s.get(k) for k in fields} for s in after] == [{k: s.get(k) for k in fields} for s in before]
    (tmp_path / "bomb.opml").write_bytes(b"<opml><body>" + b"<outline/>" * 20_000 + b"</body></opml>")
    refused = feedstream("opml", "import", str(tmp_path / "bomb.opml"), env=env)
    assert refused.returncode == 1 and "more than 10,000 outlines: refused" in refused.stderr
