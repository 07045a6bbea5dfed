"""One download's wall-clock deadline, enforced by a watchdog that cuts its sockets.

Read timeouts apply per socket read, so a server that trickles a byte at a time
holds them forever; only cutting the connection at the deadline bounds it.

One watchdog thread per process serves every download's deadline (a heap of
expiry times), rather than a ``threading.Timer`` per download: a thread started
and torn down for each page cost ~60 us of CPU and a thread's stack, for a
deadline that almost never fires.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable

from urllib3.connection import HTTPConnection

from worker.errors import DeadlineExceeded

__all__ = ["Deadline", "process_watchdog"]


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed or never connected
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """Calls each registered function once its monotonic time comes, from one daemon thread.

    Made on first use in each process (a thread does not survive the fork that starts a worker).
    Cancelled entries stay in the heap until their time and are skipped then; a download's
    deadline is seconds, so the heap holds at most the downloads of the last deadline.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._wake = threading.Condition()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
        self._thread.start()

    def schedule(self, at: float, action: Callable[[], None]) -> int:
        with self._wake:
            handle = next(self._ids)
            heapq.heappush(self._heap, (at, handle, action))
            if self._heap[0][1] == handle:  # sooner than what the thread sleeps towards
                self._wake.notify()
        return handle

    def cancel(self, handle: int) -> None:
        with self._wake:
            self._cancelled.add(handle)

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    while self._heap and self._heap[0][1] in self._cancelled:
                        self._cancelled.discard(heapq.heappop(self._heap)[1])
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, action = heapq.heappop(self._heap)
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            with contextlib.suppress(Exception):  # one download's cut must not stop the others' deadlines
                action()


_watchdog: tuple[int, _Watchdog] | None = None
_watchdog_lock = threading.Lock()


def process_watchdog() -> _Watchdog:
    """This process's watchdog: ``schedule(monotonic_at, action)`` returns a handle for ``cancel``."""
    global _watchdog
    current = _watchdog
    if current is None or current[0] != os.getpid():
        with _watchdog_lock:
            current = _watchdog
            if current is None or current[0] != os.getpid():
                current = _watchdog = (os.getpid(), _Watchdog())
    return current[1]


class Deadline:
    """One call of ``get``: its deadline, and the connections to cut when it passes.

    A watchdog timer shuts the watched sockets down at the deadline, which ends
    any read blocked on them; nothing else bounds a server that trickles bytes.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.deadline_at = time.monotonic() + deadline
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        # Each connection's socket as a duplicate descriptor: TLS wrapping detaches the
        # socket object we created, and an SSLSocket cannot be shut down from another
        # thread safely; shutting down a duplicate cuts the same connection.
        self._watched: dict[HTTPConnection, socket.socket] = {}
        self._watchdog = process_watchdog()
        self._handle = self._watchdog.schedule(self.deadline_at, self._expire)

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def watch(self, conn: HTTPConnection, sock: socket.socket) -> None:
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            old = self._watched.pop(conn, None)
            if self._done:
                old, dup = dup, None
            else:
                self._watched[conn] = dup
                if self.expired:
                    _cut(dup)
        if old is not None:
            old.close()

    def release(self, conn: HTTPConnection) -> bool:
        """Stop watching ``conn``; True when the watchdog has cut it (it must not be reused)."""
        with self._lock:
            dup = self._watched.pop(conn, None)
            cut = self.expired and dup is not None
        if dup is not None:
            dup.close()
        return cut

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for dup in self._watched.values():
                _cut(dup)

    def finish(self) -> None:
        self._watchdog.cancel(self._handle)
        with self._lock:
            self._done = True
            watched = list(self._watched.values())
            self._watched.clear()
        for dup in watched:
            dup.close()

    def exceeded(self, url: str) -> DeadlineExceeded:
        return DeadlineExceeded(f"no complete response within {self.deadline:g} s from {url}", url=url)
