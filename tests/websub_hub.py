"""A WebSub hub written for the tests, on loopback: it takes subscription requests, verifies them at
the subscriber's callback (intent verification with a challenge), and distributes content signed
with each subscriber's secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode


@dataclass
class HubRequest:
    mode: str
    topic: str
    callback: str
    secret: str
    at: float = field(default_factory=time.time)
    verified: bool | None = None  # None: not yet tried


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Hub:
    """``requests``: every (un)subscription asked, with whether its verification succeeded."""

    def __init__(self, lease: int = 4) -> None:
        self.lease = lease
        self.requests: list[HubRequest] = []
        self.subscribers: dict[str, HubRequest] = {}  # callback -> its verified subscription
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"]))
                                                     .decode()).items()}
                request = HubRequest(form.get("hub.mode", ""), form.get("hub.topic", ""),
                                     form.get("hub.callback", ""), form.get("hub.secret", ""))
                with hub.lock:
                    hub.requests.append(request)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                threading.Thread(target=hub.verify, args=(request,), daemon=True).start()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def verify(self, request: HubRequest) -> None:
        challenge = secrets.token_hex(8)
        query = {"hub.mode": request.mode, "hub.topic": request.topic, "hub.challenge": challenge}
        if request.mode == "subscribe":
            query["hub.lease_seconds"] = str(self.lease)
        sep = "&" if "?" in request.callback else "?"
        status, body = http("GET", request.callback + sep + urlencode(query))
        request.verified = status == 200 and body == challenge.encode()
        with self.lock:
            if request.verified and request.mode == "subscribe":
                self.subscribers[request.callback] = request
            elif request.verified:
                self.subscribers.pop(request.callback, None)

    def asked(self, mode: str) -> list[HubRequest]:
        with self.lock:
            return [r for r in self.requests if r.mode == mode]

    def publish(self, topic: str, body: bytes, secret: str | None = None, method: str = "sha256") -> list[int]:
        """Push ``body`` to each verified subscriber of ``topic``, signed with its secret (``secret``: a forger's)."""
        with self.lock:
            targets = [r for r in self.subscribers.values() if r.topic == topic]
        statuses = []
        for request in targets:
            digest = hmac.new((secret or request.secret).encode(), body, getattr(hashlib, method)).hexdigest()
            statuses.append(http("POST", request.callback, body, {"Content-Type": "application/rss+xml",
                                                                   "X-Hub-Signature": f"{method}={digest}"})[0])
        return statuses

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
