"""The worker against hostile servers and hostile links: time, memory, connections. PRINTS figures.

Starts, in this process, real servers on loopback: one that trickles a byte every
0.5 s, one that never answers, a gzip bomb inflating to 1 GiB, a 1 GiB body, a
redirect loop, HTML / empty / malformed / entity-expansion "feeds", and a feed whose
item links point at 127.0.0.1, 127.0.0.2, 169.254.169.254, [::ffff:127.0.0.1] and
file:///etc/passwd, beside a good feed. A separate worker process (the production
SSRF policy, except that the test servers' own ports on 127.0.0.1 count as public)
polls every feed once and finishes all the work that makes, then reports.

Prints: each request's duration against deadline + 2 s, the worker process's peak
RSS (limit 300 MB) and how many connections the private-address listeners accepted
(must be 0). The machine is shared, so durations are noisy; the limits have slack.

Usage: .venv/bin/python bench/hostile.py [--deadline SECONDS]   (default: FEEDSTREAM_FETCH_DEADLINE or 20)
Uses REDIS_URL if set (and FLUSHES that database), else an embedded Redis in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from tests.pipeline_helpers import write_feeds  # noqa: E402
from tests.site import Site  # noqa: E402
from tests.sitegen import rss2, story, telecoms_page  # noqa: E402
from tests.test_fetch_client import GiB, RawServer, bomb, hold_silently, trickle  # noqa: E402
from worker.ops.embedded import EmbeddedRedis  # noqa: E402

RSS_LIMIT_MB = 300
SLACK = 2.0


def billion_laughs() -> str:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    return (f'<?xml version="1.0"?>\n<!DOCTYPE rss [{entities}]>\n<rss version="2.0"><channel><title>&lol9;'
            '</title><item><title>x</title><link>https://example.test/x</link></item></channel></rss>')


def start_servers() -> tuple[dict[str, str], list[RawServer], list[RawServer], Site]:
    """(feeds, servers whose ports are allowed, private listeners that must see nothing, site)."""
    body = rss2("T", []).encode()
    gz = bomb("gzip")

    def trickler(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        trickle(body, srv, conn)

    def bomber(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Encoding: gzip\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(gz))
        srv.send(conn, gz)
        hold_silently(conn, srv)

    def gib(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n")
        block = b"<" * (64 * 1024)
        for _ in range(GiB // len(block)):
            srv.send(conn, block)

    allowed = {name: RawServer(handler) for name, handler in
               (("trickle", trickler), ("silent", hold_silently), ("bomb", bomber), ("1gib", gib))}
    private = [RawServer(hold_silently)]
    try:
        private.append(RawServer(hold_silently, host="127.0.0.2"))
    except OSError:
        print("note: no 127.0.0.2 alias here; only the 127.0.0.1 listener is watched")
    site = Site().start()
    site.add("/loop-a", b"", status=302, headers={"Location": "/loop-b"})
    site.add("/loop-b", b"", status=302, headers={"Location": "/loop-a"})
    links = [private[0].url("/admin"), "http://169.254.169.254/latest/meta-data/",
             f"http://[::ffff:127.0.0.1]:{private[0].port}/admin", "file:///etc/passwd"]
    if len(private) > 1:
        links.append(private[1].url("/admin", host="127.0.0.2"))
    good = []
    for n in range(800, 803):
        s = story(n)
        good.append((s, site.add(f"/news/{s.slug}/", telecoms_page(s))))
    feeds = {name: server.url("/feed") for name, server in allowed.items()}
    feeds.update({
        "loop": site.url("/loop-a"),
        "html": site.add("/html", "<!DOCTYPE html><html><body><p>Welcome</p></body></html>"),
        "empty": site.add("/empty", b"", "application/rss+xml"),
        "malformed": site.add("/malformed", "<<<not xml>>> &&&", "application/rss+xml"),
        "entities": site.add("/entities", billion_laughs(), "application/rss+xml"),
        "links": site.add("/links.xml", rss2("L", [(story(900 + i), link) for i, link in enumerate(links)]),
                          "application/rss+xml"),
        "good": site.add("/good.xml", rss2("G", good), "application/rss+xml"),
    })
    return feeds, [*allowed.values()], private, site


def run_worker(config: dict[str, Any]) -> None:
    """The worker process: production settings, timed requests, then report as JSON on stdout."""
    from rq import Queue, SimpleWorker

    from worker.fetch import HttpClient, HttpSettings, PoliteFetcher
    from worker.pipeline.context import Context, install_context
    from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, enqueue_poll
    from worker.settings import Settings

    timings: list[dict[str, Any]] = []
    allowed_ports = set(config["ports"])

    class BenchClient(HttpClient):
        """Production guard, except the bench's own servers on 127.0.0.1; times every request."""

        def _address_allowed(self, ip: str, port: int) -> bool:
            return (ip == "127.0.0.1" and port in allowed_ports) or super()._address_allowed(ip, port)

        def get(self, url: str, **kwargs: Any) -> Any:
            started = time.monotonic()
            outcome = "ok"
            try:
                return super().get(url, **kwargs)
            except Exception as exc:
                outcome = str(exc)[:90]
                raise
            finally:
                timings.append({"url": url, "seconds": time.monotonic() - started, "outcome": outcome})

    base = Settings.from_env({"REDIS_URL": config["redis_url"], "FEEDSTREAM_FEEDS": config["feeds"],
                              "FEEDSTREAM_FETCH_DEADLINE": str(config["deadline"])})
    assert not base.allow_private
    context = Context.build(base, config["redis_url"])
    http = BenchClient(HttpSettings(deadline=base.http.deadline, max_bytes=base.http.max_bytes))
    context.http = http
    context.fetcher = PoliteFetcher(http, context.store, host_concurrency=base.host_concurrency,
                                    robots=base.robots, robots_ttl=base.robots_ttl)
    install_context(context)
    client = context.store.redis
    for name in context.feeds:
        enqueue_poll(context.poll_queue, name)
    worker = SimpleWorker([Queue(POLL_QUEUE, connection=client), Queue(EXTRACT_QUEUE, connection=client)],
                          connection=client)
    worker.work(burst=True, logging_level="ERROR")
    status = {name: context.store.feed_status(name) for name in context.feeds}
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"timings": timings, "peak_rss_mb": peak_kb / 1024, "status": status,
                      "published": context.store.stream_length()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=float(os.environ.get("FEEDSTREAM_FETCH_DEADLINE", 20)))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(json.loads(args.worker))
        return 0

    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    tmp = tempfile.TemporaryDirectory()
    if not redis_url:
        embedded = EmbeddedRedis(Path(tmp.name) / "redis")
        redis_url = embedded.start()
    redis.Redis.from_url(redis_url).flushdb()
    feeds, allowed, private, site = start_servers()
    feeds_path = write_feeds(Path(tmp.name) / "feeds.toml", feeds)
    config = {"redis_url": redis_url, "feeds": str(feeds_path), "deadline": args.deadline,
              "ports": [s.port for s in allowed] + [int(site.base.rsplit(":", 1)[1])]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSTREAM_")}
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], env=env,
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            print(result.stderr[-3000:])
            return 1
        report = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        time.sleep(0.2)
        accepts = sum(s.accepts for s in private)
        for server in [*allowed, *private]:
            server.stop()
        site.stop()
        if embedded:
            embedded.stop()
        tmp.cleanup()

    limit = args.deadline + SLACK
    print(f"hostile bench: deadline {args.deadline:g} s, limit per request {limit:g} s, "
          f"whole run {time.monotonic() - started:.1f} s (shared 2-core machine: timings are noisy)")
    print(f"{'seconds':>8}  {'within':<6}  request -> outcome")
    worst = 0.0
    for t in sorted(report["timings"], key=lambda t: -t["seconds"]):
        worst = max(worst, t["seconds"])
        print(f"{t['seconds']:8.2f}  {'yes' if t['seconds'] <= limit else 'NO':<6}  {t['url'][:70]} -> {t['outcome']}")
    print("\nfeed statuses:")
    for name, state in report["status"].items():
        said = state.get("last_error") or state.get("last_warning") or f"ok (HTTP {state.get('last_status')})"
        print(f"  {name:<10} {said[:110]}")
    print(f"\nrequests: {len(report['timings'])}, slowest {worst:.2f} s vs limit {limit:g} s: "
          f"{'OK' if worst <= limit else 'OVER'}")
    print(f"worker peak RSS: {report['peak_rss_mb']:.0f} MB vs limit {RSS_LIMIT_MB} MB: "
          f"{'OK' if report['peak_rss_mb'] < RSS_LIMIT_MB else 'OVER'}")
    print(f"connections accepted by private-address listeners: {accepts} (must be 0): "
          f"{'OK' if accepts == 0 else 'FAIL'}")
    print(f"articles published: {report['published']}")
    return 0 if worst <= limit and report["peak_rss_mb"] < RSS_LIMIT_MB and accepts == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
