"""worker.timefmt: the one ISO 8601 UTC format, written and read."""

from datetime import UTC, datetime, timedelta, timezone

from worker.timefmt import epoch_from_iso, iso_from_epoch, iso_utc, parse_iso, seconds_since


def test_writes_zulu_seconds_and_pads_early_years() -> None:
    assert iso_utc(datetime(2026, 11, 30, 4, 5, 6, 789, tzinfo=UTC)) == "2026-11-30T04:05:06Z"
    assert iso_utc(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00Z"  # strftime would print "999"
    assert iso_utc(datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))) == "2025-12-31T23:00:00Z"
    assert iso_from_epoch(0) == "1970-01-01T00:00:00Z"


def test_reads_offsets_zulu_naive_and_a_space() -> None:
    expected = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    for text in ("2026-03-04T05:06:07Z", "2026-03-04T07:06:07+02:00", "2026-03-04 05:06:07", " 2026-03-04T05:06:07z "):
        assert parse_iso(text) == expected, text
    assert epoch_from_iso("1970-01-01T00:01:00Z") == 60.0
    assert seconds_since("1970-01-01T00:01:00Z", now=100.0) == 40.0


def test_unreadable_times_are_none_not_errors() -> None:
    for text in (None, "", "yesterday", "2026-13-01", "0001-01-01T00:00:00+14:00"):
        assert parse_iso(text) is None, text
    assert seconds_since("nope") is None
