"""Newsletter and feeds-out figures, measured in one run (printed, never asserted).

- parse: ``parse_newsletter`` on a 30-paragraph HTML newsletter (CPU ms per mail);
- smtp: mails/s accepted by our aiosmtpd endpoint from smtplib over loopback, each
  queued to RQ in a real (embedded) Redis before the 250;
- serve: requests/s for ``/feed.atom`` (50 entries) fresh, and answered 304 with the ETag.

The machine is shared (2 cores, other sessions running): figures are noisy; compare
ratios taken in one run rather than absolute numbers across runs.

Usage: .venv/bin/python bench/newsletters.py [--mails N]
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from rq import Queue  # noqa: E402

from tests.mailgen import STORY, mail_bytes, newsletter_html  # noqa: E402
from worker.dedupe.keys import text_key  # noqa: E402
from worker.mail import parse_newsletter  # noqa: E402
from worker.mail.smtp import start_smtp  # noqa: E402
from worker.models import Article, NewsletterSource  # noqa: E402
from worker.ops.embedded import EmbeddedRedis  # noqa: E402
from worker.out.server import make_server  # noqa: E402
from worker.pipeline.queues import EXTRACT_QUEUE, enqueue_mail  # noqa: E402
from worker.store import Store  # noqa: E402


def bench_parse(mails: int) -> float:
    raw = mail_bytes(html=newsletter_html([f"{p} (part {i})" for i in range(10) for p in STORY]))
    start = time.process_time()
    for _ in range(mails):
        parse_newsletter(raw)
    return (time.process_time() - start) * 1000 / mails


def bench_smtp(client: redis.Redis, mails: int) -> float:
    queue = Queue(EXTRACT_QUEUE, connection=client)
    source = NewsletterSource(name="bench", kind="smtp", address="bench@feeds.example")
    with socket.socket() as probe:  # aiosmtpd's Controller cannot bind port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = start_smtp([source], lambda name, raw: enqueue_mail(queue, name, raw), host="127.0.0.1", port=port)
    raw = mail_bytes(html=newsletter_html())
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _ in range(mails):
            smtp.sendmail("n@x.example", ["bench@feeds.example"], raw)
    elapsed = time.perf_counter() - start
    controller.stop()
    assert queue.count >= mails
    return mails / elapsed


def bench_serve(client: redis.Redis, requests: int) -> tuple[float, float]:
    store = Store(client)
    for n in range(60):
        text = f"Story {n}. " + " ".join(STORY)
        store.publish(Article(id=f"b{n}", url=f"https://x.example/{n}", title=f"Story {n}", text=text, feed="bench",
                              tags=["t"]), url_keys=[f"b{n}"], text_key=text_key(text))
    server = make_server(store, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/feed.atom"
    etag = urllib.request.urlopen(url).headers["ETag"]
    rates = []
    for headers in ({}, {"If-None-Match": etag}):
        start = time.perf_counter()
        for _ in range(requests):
            try:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
            except urllib.error.HTTPError as exc:
                assert exc.code == 304
        rates.append(requests / (time.perf_counter() - start))
    server.shutdown()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=300)
    args = parser.parse_args()
    print(f"parse: {bench_parse(args.mails):.2f} ms CPU per 30-paragraph HTML newsletter")
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        client = redis.Redis.from_url(server.start())
        try:
            print(f"smtp: {bench_smtp(client, args.mails):.0f} mails/s accepted and queued (one smtplib session)")
            client.flushdb()
            fresh, not_modified = bench_serve(client, args.mails)
            print(f"serve: {fresh:.0f} req/s for /feed.atom (50 entries), {not_modified:.0f} req/s answered 304; "
                  f"ratio {not_modified / fresh:.1f}x")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
