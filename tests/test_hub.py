"""Our WebSub hub for the feeds out: advertised, subscribers verified, each new article pushed signed to
the subscribers of every feed it appears in, a failing subscriber retried then dropped."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import redis

from tests.test_sources_service import wait_until
from tests.websub_hub import http
from worker.fetch import HttpClient, HttpSettings
from worker.models import Article
from worker.out.hub import MAX_ATTEMPTS, Hub
from worker.out.server import make_server
from worker.store import PublishRequest, Store


class Subscriber:
    """A WebSub subscriber on loopback: echoes challenges (unless told not to), records pushes."""

    def __init__(self, push_status: int = 204, echo: bool = True) -> None:
        self.pushes: list[tuple[bytes, dict[str, str]]] = []
        self.verified: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                owner.verified.append(query)
                body = query.get("hub.challenge", "").encode() if echo else b"no"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                owner.pushes.append((self.rfile.read(int(self.headers["Content-Length"])),
                                     {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(push_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(redis_client: redis.Redis) -> Iterator[tuple[Store, Hub, str]]:
    store = Store(redis_client)
    client = HttpClient(HttpSettings(allow_private=True, deadline=5))
    server = make_server(store, "127.0.0.1", 0)
    public = f"http://127.0.0.1:{server.server_port}"
    hub = Hub(store, client, public, retry_base=0.1)
    server.hub = hub
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    runner = threading.Thread(target=hub.run, args=(stop, 0.05), daemon=True)
    runner.start()
    yield store, hub, public
    stop.set()
    runner.join(5)
    server.shutdown()
    server.server_close()
    client.close()


def publish(store: Store, n: int, feed: str = "news", tags: tuple[str, ...] = ()) -> str:
    url = f"https://publisher.test/{feed}/{n}"
    article = Article(id=f"{feed}{n:04d}", url=url, title=f"Story {n}", text=f"Text of story {n}.", feed=feed,
                      tags=list(tags))
    assert store.publish_many([PublishRequest(article, [f"u{feed}{n}"], f"t{feed}{n}")])[0].outcome == "published"
    return url


def subscribe(public: str, topic: str, callback: str, secret: str = "", mode: str = "subscribe") -> int:
    form = {"hub.mode": mode, "hub.topic": topic, "hub.callback": callback, "hub.lease_seconds": "3600"}
    if secret:
        form["hub.secret"] = secret
    return http("POST", f"{public}/hub", urlencode(form).encode(),
                {"Content-Type": "application/x-www-form-urlencoded"})[0]


def test_the_hub_verifies_pushes_signed_and_drops_a_failing_subscriber(served: tuple[Store, Hub, str]) -> None:
    store, _, public = served
    good, failing, silent = Subscriber(), Subscriber(push_status=500), Subscriber(echo=False)
    try:
        status, body = http("GET", f"{public}/feeds/news.atom")
        assert status == 200 and f'<link rel="hub" href="{public}/hub"'.encode() in body
        assert subscribe(public, f"{public}/elsewhere.atom", good.url) == 400  # not one of our feeds
        assert subscribe(public, f"{public}/feeds/news.atom", good.url, secret="good-secret") == 202
        assert subscribe(public, f"{public}/feed.json", failing.url, secret="f") == 202
        assert subscribe(public, f"{public}/feed.atom", silent.url) == 202
        wait_until(lambda: len(store.hub_subscriptions(time.time())) == 2 and silent.verified, 5, "verified")
        assert ("/feeds/news.atom", good.url) in store.hub_subscriptions(time.time())
        assert good.verified[0]["hub.mode"] == "subscribe" and good.verified[0]["hub.lease_seconds"] == "3600"

        urls = [publish(store, 1), publish(store, 2, feed="other")]  # "other" is not in good's feed
        urls.append(publish(store, 3))
        wait_until(lambda: sum(body.count(b"<entry>") for body, _ in good.pushes) >= 2, 5, "pushed")
        received = b"".join(body for body, _ in good.pushes)
        assert urls[0].encode() in received and urls[2].encode() in received and urls[1].encode() not in received
        for body, headers in good.pushes:
            expected = hmac.new(b"good-secret", body, hashlib.sha256).hexdigest()
            assert headers["x-hub-signature"] == f"sha256={expected}"
            assert headers["content-type"].startswith("application/atom+xml")

        # the failing one: tried MAX_ATTEMPTS times for its delivery, with backoff, then dropped
        wait_until(lambda: ("/feed.json", failing.url) not in store.hub_subscriptions(time.time()), 10, "dropped")
        first_batch = [body for body, _ in failing.pushes if urls[0].encode() in body]
        assert len(first_batch) == MAX_ATTEMPTS
        assert ("/feeds/news.atom", good.url) in store.hub_subscriptions(time.time())

        assert subscribe(public, f"{public}/feeds/news.atom", good.url, mode="unsubscribe") == 202
        wait_until(lambda: not store.hub_subscriptions(time.time()), 5, "unsubscribed")
    finally:
        for subscriber in (good, failing, silent):
            subscriber.stop()
