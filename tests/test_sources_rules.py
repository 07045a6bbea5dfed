"""Sources as data: the spec's rules per field, and the decisions about the set (no Redis, no HTTP)."""

from __future__ import annotations

import pytest

from worker.errors import SourceConflict, SourceInvalid, SourceNotFound
from worker.models import Feed, NewsletterSource
from worker.sources.plan import (
    MANAGED_BY_API,
    MANAGED_BY_FILE,
    Snapshot,
    SourceRecord,
    normal_url,
    plan_create,
    plan_delete,
    plan_file,
    plan_import,
    plan_pause,
    plan_poll_now,
    plan_resume,
    plan_update,
)
from worker.sources.spec import merged, source_from_dict, source_to_dict

NOW, ISO = 1_700_000_000.0, "2023-11-14T22:13:20Z"


def errors_of(data: object) -> dict[str, str]:
    with pytest.raises(SourceInvalid) as caught:
        source_from_dict(data)
    return caught.value.fields


def test_a_feed_from_a_json_body_and_back() -> None:
    feed = source_from_dict({"name": "ars", "url": "https://example.com/feed", "tags": ["tech", "tech", " a "],
                             "interval": 1800})
    assert feed == Feed(name="ars", url="https://example.com/feed", interval=1800, tags=("tech", "a"))
    assert source_to_dict(feed) == {"name": "ars", "kind": "feed", "url": "https://example.com/feed",
                                    "interval": 1800, "tags": ["tech", "a"]}
    assert source_from_dict(source_to_dict(feed)) == feed


def test_newsletters_of_each_kind_round_trip() -> None:
    for data in ({"name": "n", "kind": "smtp", "address": "News@Example.org"},
                 {"name": "i", "kind": "imap", "host": "h", "user": "u", "password_env": "P", "security": "starttls"},
                 {"name": "m", "kind": "maildir", "path": "/m", "follow_links": True}):
        source = source_from_dict(data)
        assert isinstance(source, NewsletterSource)
        assert source_from_dict(source_to_dict(source)) == source
    assert source_from_dict({"name": "n", "kind": "smtp", "address": "News@Example.org"}).address == "news@example.org"
    assert source_from_dict({"name": "i", "kind": "imap", "host": "h", "user": "u", "password_env": "P",
                             "security": "starttls"}).port == 143


def test_every_bad_field_is_named_with_its_rule() -> None:
    errors = errors_of({"name": "a b", "url": "ftp://x/", "interval": 5, "full_text": "yes", "tags": "t",
                        "colour": "red"})
    assert set(errors) == {"name", "url", "interval", "full_text", "tags", "colour"}
    assert "must be an http(s) URL" in errors["url"] and "60" in errors["interval"]
    assert errors["colour"] == "unknown key for kind 'feed'"
    assert errors_of({"name": "a"}) == {"url": "must be an http(s) URL (got None)"}
    assert "must name a host" in errors_of({"name": "a", "url": "http:///feed"})["url"]
    assert "kind" in errors_of({"name": "a", "kind": "pop3"})
    assert errors_of({"name": "a", "url": "https://x/", "min_interval": 600, "max_interval": 120}) == {
        "max_interval": "is below min_interval"}
    assert "password_env" in errors_of({"name": "i", "kind": "imap", "host": "h", "user": "u"})
    assert errors_of(["not", "an", "object"]) == {"": "must be an object"}


def test_an_update_merges_fields_and_keeps_the_identity() -> None:
    feed = Feed(name="a", url="https://x/feed", tags=("t",))
    assert merged(feed, {"tags": None, "full_text": False}) == Feed(name="a", url="https://x/feed", full_text=False)
    with pytest.raises(SourceInvalid) as caught:
        merged(feed, {"name": "b"})
    assert "name" in caught.value.fields


def test_urls_compare_without_case_default_ports_or_fragments() -> None:
    assert normal_url("HTTPS://Example.COM:443/feed#x") == normal_url("https://example.com/feed")
    assert normal_url("http://example.com") == "http://example.com/"
    assert normal_url("http://example.com/Feed") != normal_url("http://example.com/feed")


def snap(*records: SourceRecord, due: dict[str, float] | None = None) -> Snapshot:
    return Snapshot(1, {r.name: r for r in records}, due or {})


def api(name: str, url: str, **kw: object) -> SourceRecord:
    return SourceRecord(Feed(name=name, url=url), MANAGED_BY_API, **kw)  # type: ignore[arg-type]


def filed(name: str, url: str, **kw: object) -> SourceRecord:
    return SourceRecord(Feed(name=name, url=url), MANAGED_BY_FILE, **kw)  # type: ignore[arg-type]


def test_create_refuses_a_name_or_url_in_use_and_schedules_the_new_one_now() -> None:
    current = snap(api("a", "https://x/feed"))
    with pytest.raises(SourceConflict) as caught:
        plan_create(current, Feed(name="a", url="https://y/feed"), NOW, ISO)
    assert caught.value.status == 409 and "name" in caught.value.fields
    with pytest.raises(SourceConflict) as caught:
        plan_create(current, Feed(name="b", url="https://X/feed#top"), NOW, ISO)
    assert caught.value.fields == {"url": "is already used by source 'a'"}
    change = plan_create(current, Feed(name="b", url="https://y/feed"), NOW, ISO)
    assert change.put["b"].managed_by == MANAGED_BY_API and change.schedule_new == {"b": NOW}
    mail = plan_create(current, NewsletterSource(name="n", kind="smtp", address="n@x"), NOW, ISO)
    assert not mail.schedule_new  # an smtp source is never polled


def test_the_file_manages_only_what_it_created() -> None:
    current = snap(filed("kept", "https://k/f"), filed("gone", "https://g/f"), filed("edited", "https://e/f"),
                   api("mine", "https://m/f"), due={"kept": NOW + 300, "edited": NOW + 600})
    file_sources = [Feed(name="kept", url="https://k/f"), Feed(name="edited", url="https://e/new"),
                    Feed(name="mine", url="https://other/f"), Feed(name="new", url="https://n/f"),
                    Feed(name="clash", url="https://m/f")]
    change, report = plan_file(current, file_sources, NOW, ISO)
    assert report.created == ["new"] and report.updated == ["edited"] and report.removed == ["gone"]
    assert len(report.ignored) == 2 and "mine (made through the API" in report.ignored[0]
    assert "'mine'" in report.ignored[1]
    assert change.delete == ["gone"] and set(change.put) == {"edited", "new"}
    assert change.put["new"].managed_by == MANAGED_BY_FILE
    assert change.schedule == {"edited": NOW}  # a new URL is polled now
    assert change.schedule_new["new"] == NOW and "mine" not in change.schedule_new
    # applying the same file again changes nothing but the (NX) schedule
    applied = snap(*[r for n, r in current.records.items() if n != "gone"], *change.put.values())
    again, report = plan_file(applied, file_sources, NOW, ISO)
    assert not again.put and not again.delete and report.created == report.updated == report.removed == []


def test_the_api_cannot_change_or_remove_a_file_source() -> None:
    current = snap(filed("f", "https://f/f"))
    for attempt in (lambda: plan_update(current, Feed(name="f", url="https://f/g"), NOW, ISO),
                    lambda: plan_delete(current, "f")):
        with pytest.raises(SourceConflict, match="managed by the feeds file"):
            attempt()
    with pytest.raises(SourceNotFound):
        plan_delete(current, "nope")
    assert plan_pause(current, "f", ISO).unschedule == ["f"]  # pausing is allowed: the file does not pause


def test_pause_keeps_the_slot_and_resume_gives_it_back() -> None:
    current = snap(api("a", "https://a/f"), due={"a": NOW + 500})
    paused = plan_pause(current, "a", ISO)
    record = paused.put["a"]
    assert record.paused and record.resume_at == NOW + 500 and paused.unschedule == ["a"]
    resumed = plan_resume(snap(record), "a", NOW, ISO)
    assert resumed.schedule == {"a": NOW + 500} and not resumed.put["a"].paused
    late = plan_resume(snap(record), "a", NOW + 900, ISO)
    assert late.schedule == {"a": NOW + 900}
    with pytest.raises(SourceConflict, match="paused"):
        plan_poll_now(snap(record), "a", NOW)
    # the file never unpauses what an operator paused
    change, _ = plan_file(snap(SourceRecord(Feed(name="a", url="https://a/f"), MANAGED_BY_FILE, paused=True)),
                          [Feed(name="a", url="https://a/f")], NOW, ISO)
    assert not change


def test_import_adds_new_feeds_renames_clashing_names_and_skips_known_urls() -> None:
    current = snap(api("a", "https://a/f"))
    candidates = [({"line": 3}, Feed(name="a", url="https://b/f")), ({"line": 4}, Feed(name="c", url="https://A/f"))]
    change, report = plan_import(current, candidates, NOW, ISO)
    assert [item["name"] for item in report.added] == ["a-2"]
    assert report.skipped == [{"line": 4, "reason": "duplicate: source 'a' has this URL"}]
    assert set(change.put) == {"a-2"}
