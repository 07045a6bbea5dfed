"""Sources in a real Redis: atomic changes, the version counter, live views, and the shared operations."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.site import Site
from tests.sitegen import rss2, story
from worker.errors import SourceConflict, SourceInvalid
from worker.fetch import HttpClient, HttpSettings
from worker.models import Feed, NewsletterSource
from worker.sources.live import LiveSources
from worker.sources.manage import AdminOptions, SourceAdmin, apply_feeds_file, fetch_for_discovery
from worker.sources.opml import render_opml
from worker.store import Store


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client)


@pytest.fixture
def admin(store: Store) -> Iterator[SourceAdmin]:
    client = HttpClient(HttpSettings(allow_private=True, deadline=5))
    yield SourceAdmin(store, fetch_for_discovery(client.get), AdminOptions(allow_private=True,
                                                                           mail_domain="news.example"))
    client.close()


def test_creating_finds_the_feed_names_it_and_schedules_it(admin: SourceAdmin, store: Store, site: Site) -> None:
    site.add("/", f'<html><head><link rel="alternate" type="application/rss+xml" href="{site.base}/rss"></head>')
    site.add("/rss", rss2("Telecoms Weekly", [(story(1), "https://example.test/a")]), "application/rss+xml")
    created = admin.create({"url": site.url("/"), "tags": ["telecoms"]})
    assert (created["name"], created["url"], created["tags"], created["managed_by"]) == (
        "telecoms-weekly", site.url("/rss"), ["telecoms"], "api")
    assert store.sources_version() == 1 and "telecoms-weekly" in store.due_times()
    with pytest.raises(SourceConflict) as caught:
        admin.create({"url": site.url("/rss"), "name": "other"})
    assert caught.value.fields == {"url": "is already used by source 'telecoms-weekly'"}
    assert store.sources_version() == 1  # refused: nothing written


def test_bad_input_changes_nothing(admin: SourceAdmin, store: Store, site: Site) -> None:
    site.add("/", "<html><body>no feed</body></html>")
    strict = SourceAdmin(store, None, AdminOptions(allow_private=False))
    attempts = [
        (lambda: admin.create({"name": "x", "url": "ftp://example.com/"}), "url"),
        (lambda: admin.create({"name": "x", "url": site.url("/")}), "url"),
        (lambda: strict.create({"name": "x", "url": "http://10.1.2.3/feed"}, check=False), "url"),
        (lambda: strict.create({"name": "x", "url": "http://localhost:8080/feed"}, check=False), "url"),
        (lambda: admin.create({"name": "x y", "url": site.url("/"), "bogus": 1}), "name"),
        (lambda: admin.create({"name": "n", "kind": "smtp"}) and strict.create({"name": "m", "kind": "smtp"}),
         "address"),
    ]
    for attempt, field in attempts:
        with pytest.raises(SourceInvalid) as caught:
            attempt()
        assert field in caught.value.fields, caught.value.fields
    assert set(store.sources_snapshot().records) == {"n"}  # only the one with a made address
    assert store.sources_snapshot().records["n"].source.address.startswith("n.")  # type: ignore[union-attr]
    assert store.sources_snapshot().records["n"].source.address.endswith("@news.example")  # type: ignore[union-attr]


def test_concurrent_creates_lose_nothing(admin: SourceAdmin, store: Store) -> None:
    errors: list[Exception] = []

    def add(i: int) -> None:
        try:
            admin.create({"name": f"f{i}", "url": f"https://f{i}.example/feed"}, check=False)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(store.sources_snapshot().records) == 12 and store.sources_version() == 12


def test_remove_pause_resume_and_refresh(admin: SourceAdmin, store: Store, redis_client: redis.Redis) -> None:
    admin.create({"name": "a", "url": "https://a.example/feed"}, check=False)
    store.schedule("a", 2_000_000_000.0)
    redis_client.hset(store.feed_key("a"), mapping={"etag": '"v1"', "last_poll": "x"})
    store.mark_seen("a", ["ab" * 12], time.time())
    paused = admin.pause("a")
    assert paused["paused"] and "a" not in store.due_times()
    assert paused["status"]["last_poll"] == "x"  # the status (and its validators) stay
    with pytest.raises(SourceConflict, match="paused"):
        admin.refresh("a")
    admin.resume("a")
    assert store.due_times()["a"] == 2_000_000_000.0  # its slot back
    admin.refresh("a")
    assert store.due_times()["a"] <= time.time()
    admin.delete("a")
    assert "a" not in store.due_times() and not redis_client.exists(store.feed_key("a"))
    assert 0 < redis_client.ttl("feedstream:seen:a") <= 90 * 86400  # kept a while, then forgotten
    admin.create({"name": "a", "url": "https://a.example/feed"}, check=False)
    assert redis_client.ttl("feedstream:seen:a") == -1  # back: its seen items are its own again


def test_the_file_is_applied_once_and_left_alone_the_second_time(store: Store) -> None:
    feeds = [Feed(name="a", url="https://a.example/feed")]
    letters = [NewsletterSource(name="n", kind="smtp", address="n@x.example")]
    report = apply_feeds_file(store, feeds, letters)
    assert report.created == ["a", "n"] and store.sources_version() == 1
    assert apply_feeds_file(store, feeds, letters).summary() == "no change"
    assert store.sources_version() == 1  # no change, no new version: nobody reloads for nothing
    assert list(store.due_times()) == ["a"]  # an smtp source is not polled
    report = apply_feeds_file(store, [], [])
    assert sorted(report.removed) == ["a", "n"] and not store.sources_snapshot().records


def test_a_live_view_sees_changes_and_finds_new_names_at_once(admin: SourceAdmin, store: Store) -> None:
    changes: list[int] = []
    live = LiveSources(store, check_every=30.0, on_change=lambda snapshot: changes.append(snapshot.version))
    assert live.feeds() == {}
    admin.create({"name": "a", "url": "https://a.example/feed"}, check=False)
    assert live.feeds() == {}  # within its check interval it keeps its copy...
    assert live.feed("a") == Feed(name="a", url="https://a.example/feed")  # ...but an unknown name looks again
    admin.pause("a")
    assert live.refresh(force=True) and live.paused("a")
    assert changes == [0, 1, 2]


def test_opml_import_reports_each_outline_and_export_round_trips(admin: SourceAdmin, store: Store) -> None:
    admin.create({"name": "known", "url": "https://known.example/feed"}, check=False)
    data = b"""<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>
      <outline text="Tech">
        <outline text="Ars Technica" xmlUrl="https://ars.example/feed"/>
        <outline text="Known again" xmlUrl="https://KNOWN.example/feed"/>
        <outline text="Inside" xmlUrl="http://192.168.1.10/feed"/>
        <outline text="Ars twice" xmlUrl="https://ars.example/feed"/>
        <outline text="No URL"/>
        <outline text="Bad" xmlUrl="javascript:alert(1)"/>
      </outline></body></opml>"""
    strict = SourceAdmin(store, None, AdminOptions(allow_private=False))
    report = strict.import_opml(data).as_dict()
    assert [(a["name"], a["url"]) for a in report["added"]] == [("ars-technica", "https://ars.example/feed")]
    assert sorted(s["title"] for s in report["skipped"]) == ["Ars twice", "Known again"]
    assert sorted(r["title"] for r in report["refused"]) == ["Bad", "Inside", "No URL"]
    assert all(r["line"] and r["reason"] for r in report["refused"])
    exported = admin.export_opml()
    before = store.sources_snapshot().records
    store.redis.flushdb()
    again = admin.import_opml(exported)
    assert len(again.added) == 2 and not again.skipped and not again.refused
    after = store.sources_snapshot().records
    assert {n: r.source for n, r in after.items()} == {n: r.source for n, r in before.items()}
    with pytest.raises(SourceInvalid, match="entity"):
        admin.import_opml(b'<!DOCTYPE opml [<!ENTITY a "b">]><opml><body/></opml>')
    assert render_opml([]).startswith(b"<?xml")
