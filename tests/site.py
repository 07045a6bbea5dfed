"""A real HTTP server on loopback that tests fill with their own feeds and pages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.time)  # arrival, epoch seconds


Handler = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many workers may connect at once (the default backlog is 5)


class Site:
    """Serves fixed routes, or hand-written handlers, and records every request.

    Validators are honoured like a real server would: a route with an ETag or
    Last-Modified header answers 304 when the request sends them back. With a
    ``latency`` every request is answered that many seconds after it arrives, as a
    distant publisher would (each in its own thread: requests wait side by side);
    ``peak_inflight`` is the most requests it was handling at once.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.routes: dict[str, Route | Handler] = {}
        self.requests: list[Request] = []
        self.latency = latency
        self.inflight = 0
        self.peak_inflight = 0
        self._lock = threading.Lock()
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, the body waits
            # for the client's delayed ACK (~40 ms per keep-alive response). Real
            # servers (nginx's tcp_nodelay, the default) do not make clients wait so.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                with site._lock:
                    site.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))
                    site.inflight += 1
                    site.peak_inflight = max(site.peak_inflight, site.inflight)
                try:
                    if site.latency:
                        time.sleep(site.latency)
                    self._answer()
                finally:
                    with site._lock:
                        site.inflight -= 1

            def _answer(self) -> None:
                route = site.routes.get(self.path)
                if route is None:
                    route = site.routes.get(self.path.split("?", 1)[0])
                if callable(route):
                    route(self)
                    return
                if route is None:
                    route = Route(404, b"<html><body><h1>Not Found</h1></body></html>",
                                  {"Content-Type": "text/html"})
                etag = route.headers.get("ETag")
                last_modified = route.headers.get("Last-Modified")
                if (etag and self.headers.get("If-None-Match") == etag) or (
                    last_modified and not etag and self.headers.get("If-Modified-Since") == last_modified
                ):
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes | str, content_type: str = "text/html; charset=utf-8",
            status: int = 200, headers: dict[str, str] | None = None) -> str:
        """Serve ``body`` at ``path``; returns the absolute URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = Route(status, data, {"Content-Type": content_type, **(headers or {})})
        return self.url(path)

    def handle(self, path: str, handler: Handler) -> str:
        """Answer ``path`` with a hand-written handler (for misbehaving servers)."""
        self.routes[path] = handler
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> Site:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
