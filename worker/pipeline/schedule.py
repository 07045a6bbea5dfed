"""When to poll a feed next, and which permanent redirect it follows. Pure: no I/O.

The rhythm follows Miniflux's "entry frequency" scheduler: a feed that published
``n`` entries in the last week is polled every ``week / n`` seconds, clamped
between a minimum and a maximum interval. A feed's own hints (Cache-Control
``max-age``, RSS ``<ttl>``) are lower bounds: polling sooner than the publisher
asks only costs them. A feed with no dated entries keeps its configured interval.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from worker.timefmt import epoch_from_iso

WEEK = 7 * 86400
# A publisher's hint is honoured up to a day; beyond that it is more likely a mistake
# than a plan, and the feed would silently stop.
MAX_HINT = 86400


@dataclass(frozen=True)
class Limits:
    """One feed's bounds, in seconds: its global defaults overridden per feed."""

    min_interval: int
    max_interval: int
    fallback: int  # the feed's configured ``interval``, used when entries carry no dates
    max_backoff: int


def rhythm_interval(published: Iterable[str | None], now: float, limits: Limits) -> int:
    """Seconds until the next poll from the entries' publication dates (ISO 8601), clamped."""
    dates = [t for t in (epoch_from_iso(p) for p in published) if t is not None and t <= now + 3600]
    if not dates:
        interval = float(limits.fallback)
    else:
        recent = sum(1 for t in dates if now - t <= WEEK)
        # Nothing this week: the feed is quiet; poll it as seldom as allowed.
        interval = WEEK / recent if recent else float(limits.max_interval)
    return int(min(max(interval, limits.min_interval), limits.max_interval))


def cache_max_age(headers: dict[str, str]) -> int | None:
    """``max-age`` (or ``s-maxage``) seconds of a Cache-Control header, if any."""
    value = headers.get("cache-control", "")
    if re.search(r"(?:^|,)\s*(?:no-cache|no-store)\b", value, re.I):
        return None
    match = re.search(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?([0-9]{1,10})", value, re.I)
    return int(match.group(1)) if match else None


def next_interval(published: Sequence[str | None], now: float, limits: Limits, *,
                  max_age: int | None = None, ttl_minutes: int | None = None) -> int:
    """The seconds to wait before the next poll after a successful one."""
    interval = rhythm_interval(published, now, limits)
    hints = [h for h in (max_age, ttl_minutes * 60 if ttl_minutes else None) if h]
    if hints:
        interval = max(interval, min(max(hints), MAX_HINT))
    return interval


def backoff_interval(limits: Limits, errors: int, retry_after: float | None, *,
                     rng: random.Random | None = None) -> float:
    """Seconds to wait after ``errors`` consecutive failures: exponential with jitter, capped.

    A server's Retry-After wins when it asks for longer (up to a day).
    """
    rng = rng or random.Random()
    base = max(limits.min_interval, 60)
    delay = min(base * 2 ** max(errors - 1, 0), limits.max_backoff)
    # +-20 % jitter so feeds that failed together do not all come back together.
    delay *= rng.uniform(0.8, 1.2)
    return max(delay, min(retry_after or 0.0, MAX_HINT))


PERMANENT = frozenset({301, 308})


def permanent_target(redirects: Sequence[tuple[int, str]]) -> str | None:
    """Where the leading permanent redirects (301/308) of a fetch lead, or None.

    Only the permanent part of a chain is adopted: ``301 -> 302 -> x`` moves the
    feed to the 301's target, not to the temporary one's.
    """
    target = None
    for status, location in redirects:
        if status not in PERMANENT:
            break
        target = location
    return target
