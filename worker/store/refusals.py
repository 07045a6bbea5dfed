"""When Redis says no: which errors are transient refusals, and saying so once per kind.

A Redis server can refuse writes for a while and come back: ``maxmemory`` reached under
``noeviction`` (OOM), a replica answering READONLY during a failover, a connection
reset, a restart (LOADING), a failed background save (MISCONF), a busy script. None of
these is a bug of ours, so no long-lived process may exit on one, and a loop that retries
every second must not print a traceback every second: :class:`Refusals` logs the first
of each kind, then the recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

T = TypeVar("T")

# Substrings of a reply error (a script's error carries the inner one as text, e.g. "-OOM ...").
_REPLY_KINDS = (
    ("OOM command not allowed", "out of memory (maxmemory reached)"),
    ("command not allowed when used memory", "out of memory (maxmemory reached)"),
    ("READONLY", "read-only replica"),
    ("LOADING", "loading its data"),
    ("MISCONF", "cannot persist (MISCONF)"),
    ("BUSY", "busy running a script"),
    ("MASTERDOWN", "replica without a master"),
    ("NOREPLICAS", "not enough replicas"),
)


def refusal_kind(exc: BaseException) -> str | None:
    """What kind of transient refusal ``exc`` is ("out of memory", "connection lost", ...), or None."""
    if isinstance(exc, redis.TimeoutError):
        return "timed out"
    if isinstance(exc, redis.BusyLoadingError):
        return "loading its data"
    if isinstance(exc, redis.ConnectionError):
        return "connection lost"
    if isinstance(exc, redis.OutOfMemoryError):
        return "out of memory (maxmemory reached)"
    if isinstance(exc, redis.ReadOnlyError):
        return "read-only replica"
    if isinstance(exc, redis.ResponseError):
        message = str(exc)
        for marker, kind in _REPLY_KINDS:
            if marker in message:
                return kind
    return None


def is_refusal(exc: BaseException) -> bool:
    return refusal_kind(exc) is not None


class Refusals:
    """One warning per kind of refusal while it lasts, one line when Redis accepts again; thread-safe."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what  # who is speaking, e.g. "scheduler"
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def note(self, exc: BaseException) -> bool:
        """True (and a warning the first time of its kind) when ``exc`` is a transient refusal."""
        kind = refusal_kind(exc)
        if kind is None:
            return False
        with self._lock:
            first = kind not in self._since
            self._since.setdefault(kind, time.monotonic())
        if first:
            self.log.warning("%s: Redis refuses: %s (%s); retrying with backoff, logged once until it passes",
                             self.what, kind, str(exc).splitlines()[0][:200])
        return True

    def clear(self) -> None:
        """Redis accepted again: say how long each refusal lasted."""
        with self._lock:
            if not self._since:
                return
            gone, self._since = self._since, {}
        for kind, since in gone.items():
            self.log.warning("%s: Redis accepts again after %.0f s of %s", self.what, time.monotonic() - since, kind)

    @property
    def active(self) -> bool:
        return bool(self._since)


class Backoff:
    """Seconds to wait before the next try: doubling from ``base`` up to ``cap``, back to ``base`` on success."""

    def __init__(self, base: float = 0.5, cap: float = 10.0) -> None:
        self.base, self.cap = base, cap
        self.current = base

    def next(self) -> float:
        wait, self.current = self.current, min(self.current * 2, self.cap)
        return wait

    def reset(self) -> None:
        self.current = self.base


def attempt(step: Callable[[], T], refusals: Refusals, backoff: Backoff,
            wait: Callable[[float], object] = time.sleep) -> tuple[bool, T | None]:
    """Run ``step()`` once: ``(True, its result)`` when it went through (backoff reset, recovery logged);
    ``(False, None)``, after waiting the next backoff, when Redis refused it. Any other error propagates."""
    try:
        result = step()
    except redis.RedisError as exc:
        if not refusals.note(exc):
            raise
        wait(backoff.next())
        return False, None
    refusals.clear()
    backoff.reset()
    return True, result


def until_accepted(step: Callable[[], T], refusals: Refusals) -> T:
    """``step()``, tried again with backoff for as long as Redis refuses it (any other error propagates)."""
    backoff = Backoff()
    while True:
        done, result = attempt(step, refusals, backoff)
        if done:
            return result  # type: ignore[return-value]
