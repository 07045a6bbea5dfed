"""The pure parts of scheduling and politeness: rhythm, hints, backoff, redirects, robots.txt."""

from __future__ import annotations

import random

import pytest

from worker.fetch.robots import agent_token, robots_allows, robots_url
from worker.pipeline.schedule import (
    Limits,
    backoff_interval,
    cache_max_age,
    next_interval,
    permanent_target,
    rhythm_interval,
)

LIMITS = Limits(min_interval=300, max_interval=86400, fallback=900, max_backoff=6 * 3600)
NOW = 1_800_000_000.0


def iso(ts: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("ages", "expected"), [
    ([], 900),  # no dates: the configured interval
    ([None, None], 900),
    ([i * 3600 for i in range(7)], 86400),  # 7 a week: daily
    ([i * 60 for i in range(3000)], 300),  # a firehose: clamped to the minimum
    ([30 * 86400, 40 * 86400], 86400),  # quiet for a month: the maximum
    ([i * 3600 for i in range(14)] + [60 * 86400], 43200),  # old entries do not count
])
def test_rhythm_interval(ages: list[float | None], expected: int) -> None:
    published = [None if a is None else iso(NOW - a) for a in ages]
    assert rhythm_interval(published, NOW, LIMITS) == expected


def test_future_dates_are_ignored() -> None:
    assert rhythm_interval([iso(NOW + 30 * 86400)] * 50, NOW, LIMITS) == 900


def test_hints_are_lower_bounds_up_to_a_day() -> None:
    busy = [iso(NOW - i * 60) for i in range(3000)]
    assert next_interval(busy, NOW, LIMITS) == 300
    assert next_interval(busy, NOW, LIMITS, max_age=3600) == 3600
    assert next_interval(busy, NOW, LIMITS, ttl_minutes=120) == 7200
    assert next_interval(busy, NOW, LIMITS, max_age=10 * 86400) == 86400
    quiet: list[str | None] = []
    assert next_interval(quiet, NOW, LIMITS, max_age=60) == 900  # a short hint does not speed polling up


@pytest.mark.parametrize(("header", "seconds"), [
    ("public, max-age=600", 600),
    ("max-age=\"120\", must-revalidate", 120),
    ("s-maxage=900", 900),
    ("no-cache, max-age=600", None),
    ("private", None),
    ("", None),
])
def test_cache_max_age(header: str, seconds: int | None) -> None:
    assert cache_max_age({"cache-control": header} if header else {}) == seconds


def test_backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() -> None:
    rng = random.Random(7)
    for errors, base in [(1, 300), (2, 600), (3, 1200), (8, 21600), (30, 21600)]:
        delays = [backoff_interval(LIMITS, errors, None, rng=rng) for _ in range(200)]
        assert 0.8 * base <= min(delays) < max(delays) <= 1.2 * base
    assert backoff_interval(LIMITS, 1, 5000, rng=rng) == 5000
    assert backoff_interval(LIMITS, 1, 10 * 86400, rng=rng) == 86400


@pytest.mark.parametrize(("redirects", "target"), [
    ((), None),
    (((301, "https://b/"),), "https://b/"),
    (((308, "https://b/"), (301, "https://c/")), "https://c/"),
    (((301, "https://b/"), (302, "https://c/")), "https://b/"),
    (((302, "https://b/"), (301, "https://c/")), None),
    (((307, "https://b/"),), None),
])
def test_permanent_target(redirects: tuple[tuple[int, str], ...], target: str | None) -> None:
    assert permanent_target(redirects) == target


def test_robots() -> None:
    body = b"User-agent: *\nDisallow: /\n\nUser-agent: feedstream\nDisallow: /private/\nAllow: /\n"
    assert robots_allows(body, "https://h/news/1", "feedstream")
    assert not robots_allows(body, "https://h/private/1", "feedstream")
    assert not robots_allows(body, "https://h/news/1", "otherbot")
    assert robots_allows(b"", "https://h/anything", "feedstream")
    assert robots_allows(b"\xff\xfe garbage \x00", "https://h/x", "feedstream")
    assert robots_url("https://h:8443/a/b?c=d") == "https://h:8443/robots.txt"
    assert agent_token("feedstream/0.1 (+https://github.com/feedstream/feedstream)") == "feedstream"
