"""ISO 8601 UTC times, the one format feedstream writes: ``YYYY-MM-DDTHH:MM:SSZ``.

Every stage that writes or reads a time goes through here, so there is one
answer to "naive means UTC", "Z or +00:00" and the padding of early years.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_utc(moment: datetime) -> str:
    """A datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (a naive one is taken as UTC)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    # Not strftime: "%Y" does not zero-pad years before 1000 on glibc.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def iso_from_epoch(epoch: float) -> str:
    """Seconds since the epoch as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return iso_utc(datetime.fromtimestamp(epoch, UTC))


def now_iso() -> str:
    """The current time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return iso_from_epoch(time.time())


def parse_iso(value: str | None) -> datetime | None:
    """An ISO 8601 date or datetime ("Z", an offset, or none: UTC; a space for the "T") as an aware datetime."""
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if len(text) >= 11 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    try:
        moment = datetime.fromisoformat(text)
        # an offset can carry year 1 below datetime's range ("0001-01-01T00:00:00+14:00")
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def epoch_from_iso(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time; None when absent or unreadable."""
    moment = parse_iso(value)
    return moment.timestamp() if moment else None


def seconds_since(value: str | None, now: float | None = None) -> float | None:
    """Seconds from an ISO 8601 time to ``now`` (default: the clock); None when absent or unreadable."""
    epoch = epoch_from_iso(value)
    if epoch is None:
        return None
    return (time.time() if now is None else now) - epoch
