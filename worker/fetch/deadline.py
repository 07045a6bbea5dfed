"""One download's wall-clock deadline, enforced by a watchdog that cuts its sockets.

Read timeouts apply per socket read, so a server that trickles a byte at a time
holds them forever; only cutting the connection at the deadline bounds it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from urllib3.connection import HTTPConnection

from worker.errors import DeadlineExceeded

__all__ = ["Deadline"]


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed or never connected
        sock.shutdown(socket.SHUT_RDWR)


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
        self._timer = threading.Timer(max(deadline, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

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
        self._timer.cancel()
        with self._lock:
            self._done = True
            watched = list(self._watched.values())
            self._watched.clear()
        for dup in watched:
            dup.close()

    def exceeded(self, url: str) -> DeadlineExceeded:
        return DeadlineExceeded(f"no complete response within {self.deadline:g} s from {url}", url=url)
