"""Poll decisions (worker/pipeline/decide.py) as pure functions: no Redis, no server, no clock."""

from __future__ import annotations

import logging
import random
from itertools import pairwise

from worker.models import Feed, NewsletterSource, PublishResult
from worker.pipeline.decide import (
    HostBusy,
    Listed,
    PollFailed,
    PollRules,
    StillRetired,
    Unchanged,
    decide_mail_refused,
    decide_poll,
    is_retired,
    poll_url,
    tally_extract,
)
from worker.pipeline.schedule import Limits
from worker.timefmt import iso_from_epoch

NOW = 1_800_000_000.0
FEED = Feed(name="f", url="https://old.example/feed.xml", interval=900)
NEW_URL = "https://new.example/feed.xml"
RULES = PollRules(Limits(min_interval=300, max_interval=86400, fallback=900, max_backoff=6 * 3600),
                  redirect_adopt_after=3)


def decide(outcome: object, status: dict[str, str] | None = None, seed: int = 1):  # type: ignore[no-untyped-def]
    return decide_poll(FEED, status or {}, RULES, outcome, NOW, rng=random.Random(seed))  # type: ignore[arg-type]


def listed(**overrides: object) -> Listed:
    values: dict[str, object] = {"status": 200, "seen": ("k1", "k2"), "new": 1, "title": "T", "etag": '"e1"'}
    values.update(overrides)
    return Listed(**values)  # type: ignore[arg-type]


def test_a_permanent_redirect_is_adopted_only_after_it_held_for_the_configured_polls() -> None:
    moved = ((301, NEW_URL),)
    first = decide(listed(redirects=moved))
    assert first.fields["moved_to"] == NEW_URL and first.fields["moved_polls"] == 1
    assert "adopted_url" not in first.fields and "moved_to" not in first.clear
    second = decide(listed(redirects=moved), {"moved_to": NEW_URL, "moved_polls": "1"})
    assert second.fields["moved_polls"] == 2 and "adopted_url" not in second.fields
    third = decide(Unchanged(moved), {"moved_to": NEW_URL, "moved_polls": "2"})
    assert third.fields["adopted_url"] == NEW_URL and third.fields["adopted_from"] == FEED.url
    assert third.fields["adopted_at"] == iso_from_epoch(NOW)
    assert {"moved_to", "moved_polls"} <= set(third.clear)
    assert third.log is not None and third.log[0] == logging.INFO and "adopted" in third.log[1]
    # once adopted, the next poll goes to the new URL; a changed configured URL wins over the adoption
    adopted = {"adopted_url": NEW_URL, "adopted_from": FEED.url}
    assert poll_url(FEED, adopted) == NEW_URL
    assert poll_url(Feed(name="f", url="https://other.example/"), adopted) == "https://other.example/"


def test_a_redirect_that_changes_target_starts_counting_again_and_a_temporary_one_is_not_followed() -> None:
    status = {"moved_to": "https://elsewhere.example/", "moved_polls": "2"}
    assert decide(listed(redirects=((308, NEW_URL),)), status).fields["moved_polls"] == 1
    # only the leading permanent part of a chain counts; a 302 alone clears what was being tracked
    temporary = decide(listed(redirects=((302, NEW_URL),)), status)
    assert "moved_to" not in temporary.fields and {"moved_to", "moved_polls"} <= set(temporary.clear)


def test_410_retires_the_feed_at_its_url_and_counts_an_error() -> None:
    intent = decide(PollFailed("fetch: HTTP 410 Gone", status=410, http=410))
    assert intent.next_poll == float("inf") and intent.error is True
    assert intent.fields["retired"] == "gone: fetch: HTTP 410 Gone"
    assert intent.fields["retired_url"] == FEED.url and intent.fields["last_status"] == 410
    assert intent.counters == {"polls_failed": 1, "feeds_retired": 1} and intent.http == ("feed", 410)
    assert intent.report["outcome"].startswith("retired: ")
    # the next poll finds it retired at that URL and makes no request
    status = {k: str(v) for k, v in intent.fields.items()}
    assert is_retired(status, poll_url(FEED, status))
    again = decide(StillRetired(), status)
    assert again.next_poll == float("inf") and again.error is None and not again.fields and not again.counters
    # a changed URL in the feeds file is a fresh start
    assert not is_retired(status, "https://new.example/feed.xml")


def test_429_waits_at_least_its_retry_after_and_counts_an_error() -> None:
    intent = decide(PollFailed("fetch: HTTP 429 Too Many Requests", status=429, retry_after=7200, http=429))
    assert intent.next_poll == NOW + 7200 and intent.error is True
    assert intent.fields["next_poll"] == iso_from_epoch(NOW + 7200) and intent.fields["last_status"] == 429
    assert intent.clear == ("deferred",) and intent.counters == {"polls_failed": 1}
    # a Retry-After beyond a day is taken as a mistake: capped
    far = decide(PollFailed("fetch: HTTP 429", status=429, retry_after=30 * 86400, http=429))
    assert far.next_poll is not None and far.next_poll <= NOW + 86400


def test_backoff_grows_with_consecutive_errors_up_to_the_cap() -> None:
    delays = []
    for errors in range(8):
        intent = decide(PollFailed("fetch: connection refused", http="error"), {"consecutive_errors": str(errors)})
        assert intent.next_poll is not None and intent.fields["last_status"] == "error"
        assert intent.http == ("feed", "error")
        delays.append(intent.next_poll - NOW)
    # same seed, same jitter: each error doubles the wait until max_backoff (6 h) holds it
    assert all(later >= earlier for earlier, later in pairwise(delays))
    assert delays[1] > 1.5 * delays[0]
    assert max(delays) <= 1.2 * 6 * 3600 and delays[-1] >= 0.8 * 6 * 3600


def test_a_parse_error_counts_the_response_that_came_and_backs_off() -> None:
    intent = decide(PollFailed("parse: not a feed", http=200))
    assert intent.http == ("feed", 200) and intent.fields["last_status"] == "error" and intent.error is True


def test_success_resets_errors_and_clears_stale_fields() -> None:
    status = {"consecutive_errors": "4", "last_error": "fetch: boom", "deferred": "x", "retired": "gone",
              "retired_url": "https://old.example/elsewhere", "last_warning": "parse: odd", "etag": '"old"'}
    intent = decide(listed(etag=None, last_modified=None, warning=None), status)
    assert intent.error is False  # the store resets consecutive_errors and drops last_error
    assert {"retired", "retired_url", "retired_at", "deferred", "etag", "last_modified", "last_warning",
            "moved_to", "moved_polls"} <= set(intent.clear)
    assert intent.fields["last_status"] == 200 and intent.fields["last_new"] == 1
    assert intent.fields["last_success"] == iso_from_epoch(NOW)
    assert intent.counters == {"polls_ok": 1, "entries_new": 1} and intent.source_counts == {"entries_seen": 1}
    assert intent.seen == ("k1", "k2") and intent.seen_at == NOW
    assert intent.report == {"feed": "f", "outcome": "ok", "entries": 2, "new": 1}
    with_validators = decide(listed(etag='"e2"', last_modified="Mon", warning="bozo"))
    assert with_validators.fields["etag"] == '"e2"' and with_validators.fields["last_modified"] == "Mon"
    assert with_validators.fields["last_warning"] == "parse: bozo"
    assert not {"etag", "last_modified", "last_warning"} & set(with_validators.clear)


def test_the_next_poll_honours_the_feeds_cache_hints() -> None:
    busy = tuple(iso_from_epoch(NOW - 3000 * n) for n in range(200))  # 200 entries this week: every ~50 min
    assert decide(listed(published=busy)).fields["interval"] == 3024
    intent = decide(listed(max_age=7200, published=busy))  # the publisher asks for no more than every 2 h
    assert intent.next_poll == NOW + 7200 and intent.fields["interval"] == 7200


def test_304_keeps_the_interval_resets_errors_and_lists_nothing() -> None:
    intent = decide(Unchanged(), {"interval": "1800", "consecutive_errors": "2", "deferred": "x"})
    assert intent.error is False and intent.next_poll == NOW + 1800
    assert intent.fields["last_status"] == 304 and intent.fields["last_new"] == 0
    assert intent.http == ("feed", 304) and intent.counters == {"polls_not_modified": 1}
    assert "deferred" in intent.clear and intent.seen_at is None
    # a stored interval outside the feed's bounds is clamped
    assert decide(Unchanged(), {"interval": "10"}).next_poll == NOW + 300


def test_a_busy_host_defers_without_counting_an_error() -> None:
    intent = decide(HostBusy("fetch: host asked us to wait", until=NOW + 120))
    assert intent.error is None and not intent.clear  # not the feed's fault: errors and polls untouched
    assert intent.next_poll is not None and NOW + 120 <= intent.next_poll <= NOW + 125
    assert intent.fields == {"deferred": "fetch: host asked us to wait",
                             "next_poll": iso_from_epoch(intent.next_poll)}
    assert intent.counters == {"polls_deferred": 1} and intent.http is None


def test_a_refused_mail_is_an_error_on_its_source() -> None:
    source = NewsletterSource(name="n", kind="smtp")
    intent = decide_mail_refused(source, "mail: too large", NOW, origin="")
    assert intent.error is True and intent.fields["last_refused"] == "mail: too large"
    assert intent.fields["last_origin"] == "smtp" and intent.source_counts == {"mails_refused": 1}
    assert "last_origin" not in decide_mail_refused(source, "mail: too large", NOW).fields


def test_an_extract_batch_tally() -> None:
    results = [(PublishResult("published", "a", "1-0"), iso_from_epoch(NOW - 600)),
               (PublishResult("published", "b", "2-0", duplicate_of="a", cluster="a"), None),
               (PublishResult("near_dropped", "c", duplicate_of="a"), None),
               (PublishResult("already", "d"), None),
               (PublishResult("duplicate", "e", duplicate_of="a"), None)]
    tally = tally_extract(entries=9, already=1, fallbacks=2, page_http=[200, 200, 404], retried=[], held=2,
                          published=results, now=NOW)
    assert tally.report == {"published": 2, "already": 2, "duplicates": 1, "near_duplicates": 2, "fallbacks": 2,
                            "deferred": 0, "held": 2}
    assert tally.counters == {"fallbacks": 2, "retried_pages": 0, "held_pages": 2, "entries_done": 7}
    assert tally.http == {("page", 200): 2, ("page", 404): 1} and tally.delays == [600.0]
    assert tally.retry is None
    retried = tally_extract(entries=3, already=0, fallbacks=0, page_http=[503], retried=["u: fetch: 503"], held=0,
                            published=[], now=NOW)
    assert retried.retry == "fetch: 1 page(s) will be retried: u: fetch: 503"
    assert retried.counters["entries_done"] == 2
