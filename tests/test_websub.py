"""WebSub subscriptions: the rules (pure), then a running service (scheduler, worker, serve) with a hub
written for the tests: subscribe, verify, a pushed feed published, a forged push refused, renewal
before the lease ends, unsubscribe on removal, and what `feedstream status` shows."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import redis

from tests.dovecot import free_port
from tests.pipeline_helpers import articles
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from tests.test_cli import base_env, feedstream
from tests.test_sources_service import Service, wait_until
from tests.websub_hub import Hub, http
from worker.feeds import parse_feed
from worker.push.websub import (
    VERIFY_TIMEOUT,
    Subscription,
    answer_verification,
    check_signature,
    decide,
    push_links,
)
from worker.sources.manage import AdminOptions, SourceAdmin
from worker.store import Store

RSS_WITH_HUB = b"""<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>T</title><atom:link rel="hub" href="https://hub.example/"/><atom:link rel="self" href="/feed.xml"/>
<item><link>https://x.example/1</link></item></channel></rss>"""


# -- the rules --------------------------------------------------------------------------------------

def test_hub_and_self_from_the_document_or_the_link_header_first() -> None:
    parsed = parse_feed(RSS_WITH_HUB, url="https://x.example/feed.xml")
    assert push_links(parsed, {}, "https://x.example/feed.xml") == ("https://hub.example/",
                                                                     "https://x.example/feed.xml")
    header = {"link": '<https://other.example/hub>; rel="hub", </topic>; rel="self"'}
    assert push_links(parsed, header, "https://x.example/feed.xml") == ("https://other.example/hub",
                                                                         "https://x.example/topic")
    assert push_links(parse_feed(b'{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [], '
                                 b'"hubs": [{"type": "WebSub", "url": "https://h.example/"}]}',
                                 url="https://x.example/f.json"), {}, "https://x.example/f.json")[0] \
        == "https://h.example/"


def test_signatures_sha256_or_better_and_sha1_only_from_a_hub_that_never_signed_stronger() -> None:
    body = b"<rss/>"

    def sign(method: str, secret: str = "s3cret") -> str:
        return f"{method}={hmac.new(secret.encode(), body, getattr(hashlib, method)).hexdigest()}"

    assert check_signature(sign("sha256"), body, "s3cret", "") == (True, "sha256")
    assert check_signature(sign("sha512"), body, "s3cret", "sha256") == (True, "sha512")
    assert check_signature(sign("sha1"), body, "s3cret", "") == (True, "sha1")
    assert not check_signature(sign("sha1"), body, "s3cret", "sha256")[0]  # a downgrade
    assert not check_signature(sign("sha256", "forged"), body, "s3cret", "")[0]
    assert not check_signature(None, body, "s3cret", "")[0]
    assert not check_signature("md5=00", body, "s3cret", "")[0]


def test_only_the_verifications_we_asked_for_are_answered() -> None:
    sub = Subscription("news", found_hub="https://h/", found_topic="https://t/", hub="https://h/", topic="https://t/",
                       token="tok", secret="s", state="requested",
                       asked="subscribe")
    ask = {"hub.mode": "subscribe", "hub.topic": "https://t/", "hub.challenge": "c1", "hub.lease_seconds": "60"}
    assert answer_verification(sub, "other-token", ask, 0)[0] == 404
    assert answer_verification(sub, "tok", {**ask, "hub.topic": "https://elsewhere/"}, 0)[0] == 404
    assert answer_verification(sub, "tok", {**ask, "hub.mode": "unsubscribe"}, 0)[0] == 404
    status, body, after = answer_verification(sub, "tok", ask, 100.0)
    assert (status, body) == (200, b"c1") and after is not None and after.live(150) and not after.live(161)
    assert answer_verification(after, "tok", ask, 101.0)[0] == 404  # asked once, answered once
    assert decide(after, active=True, exists=True, can_subscribe=True, now=120).kind == "wait"
    assert decide(after, active=True, exists=True, can_subscribe=True, now=146).kind == "subscribe"  # 3/4 lease
    assert decide(after, active=False, exists=False, can_subscribe=True, now=120).kind == "unsubscribe"
    silent = decide(sub, active=True, exists=True, can_subscribe=True, now=sub.requested_at + VERIFY_TIMEOUT + 1)
    assert silent.kind == "wait" and silent.subscription.state == "failed" and "did not verify" in \
        silent.subscription.last_error and silent.due == sub.requested_at + VERIFY_TIMEOUT + 1 + 60


# -- a running service ------------------------------------------------------------------------------

def test_a_subscription_through_its_life(site: Site, redis_client: redis.Redis, redis_url: str,
                                         tmp_path: Path) -> None:
    hub = Hub(lease=4)
    stories = [story(n) for n in range(3)]
    links = [site.add(f"/news/{s.slug}/", telecoms_page(s)) for s in stories]
    feed_url = site.url("/feed.xml")
    hub_links = {"Link": f'<{hub.url}>; rel="hub", <{feed_url}>; rel="self"'}
    site.add("/feed.xml", rss2("News", [(stories[0], links[0])]), "application/rss+xml", headers=hub_links)
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text("feeds = []\n")
    web_port = free_port()
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(feeds_file), FEEDSTREAM_SERVE_PORT=str(web_port),
                   FEEDSTREAM_PUBLIC_URL=f"http://127.0.0.1:{web_port}", FEEDSTREAM_FETCH_DEADLINE="5",
                   FEEDSTREAM_ROBOTS="0")
    store = Store(redis_client)
    admin = SourceAdmin(store, None, AdminOptions(allow_private=True))
    service = Service(env)
    try:
        for name, args in (("scheduler", ("scheduler",)), ("worker", ("worker", "--processes", "1")),
                           ("web", ("serve",))):
            service.start(name, *args)
        admin.create({"name": "news", "url": feed_url, "full_text": False, "max_interval": 7200}, check=False)
        wait_until(lambda: len(articles(redis_client)) == 1, 60, "the first poll published")  # start-up
        wait_until(lambda: any(r.verified for r in hub.asked("subscribe")), 10, "subscribed and verified")
        first = hub.asked("subscribe")[0]
        assert first.topic == feed_url and first.callback.startswith(f"http://127.0.0.1:{web_port}/websub/news/")
        assert len(first.secret) >= 32

        # polled again while live: the next poll waits max_interval (the safety net)
        admin.refresh("news")
        wait_until(lambda: store.due_times().get("news", 0) > time.time() + 3600, 10, "safety-net schedule")

        # a push: the new entry is published without a fetch of the feed
        fetched_before = len(site.hits("/feed.xml"))
        pushed = rss2("News", [(stories[1], links[1]), (stories[0], links[0])]).encode()
        pushed_at = time.monotonic()
        assert hub.publish(feed_url, pushed) == [202]
        took = wait_until(lambda: len(articles(redis_client)) == 2, 2, "the pushed article published")
        print(f"\npublished {took:.2f} s after the push")
        assert articles(redis_client)[1]["url"] == links[1] and len(site.hits("/feed.xml")) == fetched_before
        assert time.monotonic() - pushed_at < 5

        # forged: a wrong secret, an unknown token, a body over the cap, a verification we did not ask for
        forged = rss2("News", [(stories[2], links[2])]).encode()
        assert hub.publish(feed_url, forged, secret="not-the-secret") == [202]  # 2xx, and ignored
        assert "signature does not match" in store.websub_subscription("news").last_refused  # type: ignore[union-attr]
        callback = first.callback
        assert http("POST", callback.rsplit("/", 1)[0] + "/wrong-token", forged,
                    {"X-Hub-Signature": "sha256=00"})[0] == 404
        assert http("POST", callback, b"x" * (3 * 1024 * 1024 + 1), {"X-Hub-Signature": "sha256=00"})[0] == 413
        assert http("GET", callback + "?hub.mode=unsubscribe&hub.topic=" + feed_url + "&hub.challenge=x")[0] == 404
        time.sleep(1.0)
        assert len(articles(redis_client)) == 2  # nothing from the forged push
        assert store.websub_subscription("news").refused == 3  # type: ignore[union-attr]

        # renewal before the 4 s lease ends
        wait_until(lambda: len([r for r in hub.asked("subscribe") if r.verified]) >= 2, 8, "renewed")
        renewal = [r for r in hub.asked("subscribe") if r.verified][1]
        assert renewal.at < first.at + hub.lease + 1 and renewal.callback == first.callback

        status = feedstream("status", env=env)
        assert status.returncode == 0, status.stderr
        line = next(line for line in status.stdout.splitlines() if "websub:" in line)
        assert f"websub: live at {hub.url}" in line and "last push" in line and "refused" in line, line

        # removal: unsubscribed at the hub, and its callback takes no more pushes
        admin.delete("news")
        wait_until(lambda: any(r.verified for r in hub.asked("unsubscribe")), 10, "unsubscribed")
        assert http("POST", callback, pushed, {"X-Hub-Signature": "sha256=00"})[0] == 404
    finally:
        service.stop_all()
        hub.stop()
