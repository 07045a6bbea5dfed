"""Capacity: what one Redis holds and spends per feed, per poll and per article, and where it ends.

Fills a Redis of its own (the embedded one, AOF on, automatic AOF rewrites off so the file's growth is
the writes' own) through the project's code paths, in this process:

1. feeds: --feeds feeds on a loopback site (tests/site.py, each with an ETag and --guids items) polled once
   by the real poll code (``poll_feeds``); bytes per feed (status hash + due set) and per seen GUID are
   ``MEMORY USAGE`` of those keys. Then every feed is polled again through RQ as the service does it
   (``enqueue_polls`` + a SimpleWorker burst): each gets 304; Redis CPU per unchanged poll is the
   ``INFO commandstats`` usec delta (every command, RQ's included) over the polls, with ``INFO cpu``.
2. publishing: the near-duplicate index is filled with synthetic articles (random signatures, through
   the publish script, as bench/dedupe.py does) to 10,000 and then to --index articles; at each size
   --window real-looking articles (distinct ~350-word texts, a recurring promo line per feed, two tags)
   go through the real publish path (``pipeline.entries``' requests: boilerplate, MinHash, claims, the
   entry's outbox record; then ``publish_many``): Redis CPU per publish (commandstats) and AOF bytes per
   publish (``aof_current_size``).
   Bytes per claim, per indexed article and per feeds-out index entry are ``MEMORY USAGE`` of their keys.
3. feeds out: 8 articles of a quiet tag, then --others newer articles of other tags; the real server
   answers ``/tags/quiet.atom`` and ``/tags/busy.atom`` over loopback; Redis time per request is the
   commandstats usec delta per request (median of 20), and the same for a 304.
4. an extrapolation table for 10k / 100k / 1M feeds (polled every 30 minutes) and 10k / 100k / 1M
   articles a day.

Usage: .venv/bin/python bench/capacity.py [--feeds 1000] [--index 300000] [--window 400] [--others 20000]
Commandstats usec and AOF bytes are Redis's own work, little disturbed by other load on the machine;
wall times are. Takes a few minutes (most of it filling the index).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import redis  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402

from tests.site import Site  # noqa: E402
from worker.dedupe import minhash  # noqa: E402
from worker.dedupe.keys import guid_key, url_key  # noqa: E402
from worker.fetch import HttpSettings  # noqa: E402
from worker.models import Article, Feed  # noqa: E402
from worker.ops.embedded import EmbeddedRedis  # noqa: E402
from worker.out.server import make_server  # noqa: E402
from worker.pipeline.context import Context, install_context  # noqa: E402
from worker.pipeline.entries import _publish_requests  # noqa: E402  (the extract job's own request builder)
from worker.pipeline.poll import poll_feeds  # noqa: E402
from worker.pipeline.queues import EXTRACT_QUEUE, POLL_QUEUE, batches, enqueue_polls  # noqa: E402
from worker.settings import Settings, Sources  # noqa: E402
from worker.sources.manage import apply_feeds_file  # noqa: E402
from worker.store import NearKey, Store  # noqa: E402

DAY = 86400
WORDS = [f"w{n}" for n in range(5000)]


def commandstats(client: redis.Redis) -> tuple[int, int]:
    """(calls, usec) of every command so far."""
    stats = client.info("commandstats")
    return sum(int(s["calls"]) for s in stats.values()), sum(int(s["usec"]) for s in stats.values())


def cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def aof_size(client: redis.Redis) -> int:
    return int(client.info("persistence")["aof_current_size"])


def memory_of(client: redis.Redis, pattern: str) -> tuple[int, int]:
    """(keys, MEMORY USAGE bytes) of the keys matching ``pattern``."""
    keys = list(client.scan_iter(match=pattern, count=5000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return len(keys), sum(v or 0 for v in pipe.execute())


def measured(client: redis.Redis, run: Callable[[], Any]) -> dict[str, float]:
    """Redis calls, usec, CPU seconds and AOF bytes spent while ``run`` runs."""
    calls0, usec0 = commandstats(client)
    cpu0, aof0, t0 = cpu_seconds(client), aof_size(client), time.perf_counter()
    run()
    time.sleep(1.1)  # appendfsync everysec: the AOF buffer is written within a second
    calls1, usec1 = commandstats(client)
    return {"calls": calls1 - calls0, "usec": usec1 - usec0, "cpu": cpu_seconds(client) - cpu0,
            "aof": aof_size(client) - aof0, "seconds": time.perf_counter() - t0}


def rss(n: int, site: Site, guids: int) -> str:
    items = "".join(f"<item><title>Story {n}-{i}</title><link>{site.url}/p/{n}/{i}</link>"
                    f"<guid>urn:bench:{n}:{i}</guid><description>Teaser {i}.</description></item>"
                    for i in range(guids))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Feed {n}</title>'
            f"<link>{site.url}/</link><description>bench</description>{items}</channel></rss>")


def context_for(url: str, feeds: list[Feed]) -> Context:
    settings = Settings(redis_url=url, http=HttpSettings(allow_private=True, deadline=10))
    context = Context.build(settings, url, Sources(feeds, []))
    install_context(context)
    return context


def feeds_phase(client: redis.Redis, url: str, n_feeds: int, guids: int) -> dict[str, float]:
    site = Site().start()
    try:
        feeds = [Feed(name=f"feed{n}", url=site.add(f"/f{n}.xml", rss(n, site, guids), "application/rss+xml",
                                                      headers={"ETag": f'"f{n}"'}), full_text=False)
                 for n in range(n_feeds)]
        context = context_for(url, feeds)
        store = context.store
        apply_feeds_file(store, feeds, [])  # as a process starting with this feeds file does
        for batch in batches([f.name for f in feeds], 16):
            poll_feeds(context, list(batch))
        for key in client.scan_iter(match="rq:*", count=5000):  # the first round's extract jobs: not feed state
            client.unlink(key)
        _, feed_bytes = memory_of(client, "feedstream:feed:*")
        _, due_bytes = memory_of(client, "feedstream:due")
        _, source_bytes = memory_of(client, "feedstream:sources")
        _, seen_bytes = memory_of(client, "feedstream:seen:*")
        queue = Queue(POLL_QUEUE, connection=client)

        def unchanged_round() -> None:
            enqueue_polls(queue, [f.name for f in feeds])
            worker = SimpleWorker([queue, Queue(EXTRACT_QUEUE, connection=client)], connection=client)
            worker.work(burst=True, logging_level="WARNING")

        before = store.counters().get("polls_not_modified", 0)
        cost = measured(client, unchanged_round)
        polls = store.counters().get("polls_not_modified", 0) - before
        if polls != n_feeds:
            raise SystemExit(f"bench/capacity.py: {polls} of {n_feeds} polls came back unchanged")
    finally:
        site.stop()
    return {"feed": (feed_bytes + due_bytes + source_bytes) / n_feeds, "state_hash": feed_bytes / n_feeds,
            "source": source_bytes / n_feeds,
            "due": due_bytes / n_feeds, "guid": seen_bytes / (n_feeds * guids),
            "poll_usec": cost["usec"] / polls, "poll_calls": cost["calls"] / polls, "poll_aof": cost["aof"] / polls,
            "poll_cpu": cost["cpu"] / polls}


def fill_index(store: Store, start: int, stop: int, seed: int = 7) -> None:
    """Index synthetic distinct articles ``start`` .. ``stop`` (random signatures) through the publish script."""
    rng = np.random.default_rng(seed + start)
    need = round(minhash.THRESHOLD * minhash.PERMUTATIONS)
    from worker.store import PublishRequest
    for first in range(start, stop, 200):
        requests = []
        for i in range(first, min(first + 200, stop)):
            sig = minhash.Signature(rng.integers(0, 2**32, size=minhash.PERMUTATIONS, dtype=np.uint64)
                                    .astype(np.uint32))
            url = f"https://synthetic.example/{i}"
            article = Article(id=url_key(url), url=url, title="", text="", feed="fill")
            requests.append(PublishRequest(article, [url_key(url)], None, NearKey(sig.packed(), sig.bands(), need)))
        store.publish_many(requests)


def story_text(rng: random.Random, feed: int) -> str:
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 45))) + "." for _ in range(10)]
    paragraphs.append(f"Subscribe to the Feed {feed} weekly for more stories like this one.")
    return "\n\n".join(paragraphs)


def real_articles(rng: random.Random, start: int, count: int) -> list[tuple[Article, list[str], str]]:
    ready = []
    for n in range(start, start + count):
        feed = n % 100
        url = f"https://pub{feed}.example/story/{n}"
        article = Article(id=url_key(url), url=url, title=f"Story {n}", text=story_text(rng, feed),
                          feed=f"pub{feed}", tags=[f"topic{n % 7}", "news"], published=None)
        article.markdown = article.text
        ready.append((article, [url_key(url)], guid_key(article.feed, url)))
    return ready


def publish_window(context: Context, rng: random.Random, start: int, count: int) -> dict[str, float]:
    client = context.store.publishing
    ready = real_articles(rng, start, count)
    # each entry pending in the outbox, as the poll that found it left it (not measured): publishing settles it
    pipe = context.store.redis.pipeline(transaction=True)
    context.store._queue_pending(pipe, {"bench-job": [(token, {"url": a.url}) for a, _, token in ready]},
                                 time.time() + 300)
    pipe.execute()

    def run() -> None:
        for batch in batches(ready, 8):  # as the extract job: one round trip per batch
            results = context.store.publish_many(_publish_requests(context, list(batch)))
            assert all(r.outcome == "published" for r in results), results

    cost = measured(client, run)
    return {k: v / count for k, v in cost.items()}


CLAIMS_PER_ARTICLE = 2  # a feed entry's URL (its page's final URL and canonical, when they differ, add one) + text


def publish_phase(client: redis.Redis, url: str, index: int, window: int) -> dict[str, Any]:
    client.flushall()
    context = context_for(url, [])
    store = context.store
    rng = random.Random(3)
    out: dict[str, Any] = {}
    filled = 0
    for size in sorted({10_000, index}):
        t0 = time.perf_counter()
        fill_index(store, filled, size)
        filled = size
        out[f"fill_{size}"] = time.perf_counter() - t0
        out[size] = publish_window(context, rng, 10 * size, window)
        print(f"  index {size:>7}: {out[size]['usec']:.0f} us Redis per publish, {out[size]['aof']:.0f} AOF bytes "
              f"(filled in {out[f'fill_{size}']:.0f} s)", flush=True)
    published = filled + len(out) // 2 * window
    n_claims = sum(int(client.hlen(k)) for k in client.scan_iter(match="feedstream:claims:*", count=5000))
    _, claim_bytes = memory_of(client, "feedstream:claims:*")
    _, nd_bytes = memory_of(client, "feedstream:nd:*")
    _, out_bytes = memory_of(client, "feedstream:out:*")
    out_entries = sum(int(client.xlen(k))
                      for k in client.scan_iter(match="feedstream:out:*", count=1000, _type="stream"))
    _, boiler_bytes = memory_of(client, "feedstream:boiler*")
    out.update(claim=claim_bytes / n_claims, indexed=nd_bytes / published, out_entry=out_bytes / max(out_entries, 1),
               boiler_feed=boiler_bytes / 100, claims=n_claims, real_articles=len(out) // 2 * window)
    return out


def serve_phase(client: redis.Redis, url: str, others: int) -> dict[str, float]:
    client.flushall()
    context = context_for(url, [])
    store = context.store
    from worker.store import PublishRequest

    def article(n: int, tag: str) -> PublishRequest:
        link = f"https://{tag}.example/{n}"
        doc = Article(id=url_key(link), url=link, title=f"{tag} {n}", feed=tag, tags=[tag],
                      text=f"Paragraph of {tag} story {n}. " * 40)
        return PublishRequest(doc, [url_key(link)], None)

    store.publish_many([article(n, "quiet") for n in range(8)])
    for first in range(0, others, 500):
        store.publish_many([article(n, "busy") for n in range(first, min(first + 500, others))])
    result: dict[str, float] = {"stream_entry": int(client.memory_usage("articles", samples=0) or 0)
                                / int(client.xlen("articles")),
                                "doc": len(client.xrange("articles", count=1)[0][1][b"article"])}
    server = make_server(store, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for name in ("quiet", "busy"):
            costs, costs_304, etag = [], [], ""
            for _ in range(20):
                _, usec0 = commandstats(client)
                with urllib.request.urlopen(f"{base}/tags/{name}.atom", timeout=30) as response:
                    body = response.read()
                    etag = response.headers["ETag"]
                costs.append(commandstats(client)[1] - usec0)
                _, usec0 = commandstats(client)
                request = urllib.request.Request(f"{base}/tags/{name}.atom", headers={"If-None-Match": etag})
                try:
                    urllib.request.urlopen(request, timeout=30)
                except urllib.error.HTTPError as exc:
                    assert exc.code == 304
                costs_304.append(commandstats(client)[1] - usec0)
            entries = body.count(b"<entry")
            # INFO commandstats itself is counted in each delta: subtract the median cost of one INFO
            _, a = commandstats(client)
            _, b = commandstats(client)
            result[name] = statistics.median(costs) - (b - a)
            result[f"{name}_304"] = statistics.median(costs_304) - (b - a)
            result[f"{name}_entries"] = entries
    finally:
        server.shutdown()
        server.server_close()
    return result


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def extrapolate(feeds: dict[str, float], pub: dict[str, Any], served: dict[str, float], top: int,
                maxlen: int = 100_000) -> None:
    at = pub[top]
    claim_days = 90 + 22.5 / 2  # a claim lives 90 days past its period's end: 90-112.5 days
    index_days = 30 + 7.5 / 2
    print("\n| deployment | Redis memory | Redis CPU (share of one core) | AOF written per day |")
    print("| --- | --- | --- | --- |")
    for n in (10_000, 100_000, 1_000_000):
        polls = n * 48  # every 30 minutes
        memory = n * (feeds["feed"] + 20 * feeds["guid"])
        cpu = polls * feeds["poll_usec"] / 1e6 / DAY
        print(f"| {n:,} feeds, polled every 30 min, 20 items listed each | {human(memory)} | {cpu:.1%} "
              f"| {human(polls * feeds['poll_aof'])} |")
    for n in (10_000, 100_000, 1_000_000):
        memory = (n * claim_days * CLAIMS_PER_ARTICLE * pub["claim"] + n * index_days * pub["indexed"]
                  + n * 90 * feeds["guid"]  # each article's GUID stays seen 90 days after its feed last listed it
                  + min(maxlen, n * 365) * (served["stream_entry"] + 4 * pub["out_entry"]))
        cpu = n * at["usec"] / 1e6 / DAY
        print(f"| {n:,} articles a day (30-day near window, 90-day claims, stream capped at {maxlen:,}) "
              f"| {human(memory)} | {cpu:.1%} | {human(n * at['aof'])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--guids", type=int, default=20, help="items each feed lists")
    parser.add_argument("--index", type=int, default=300_000, help="articles in the near-duplicate index at the end")
    parser.add_argument("--window", type=int, default=400, help="real articles published at each index size")
    parser.add_argument("--others", type=int, default=20_000, help="articles of other tags newer than the quiet one's")
    args = parser.parse_args()
    embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-capacity-")))
    url = embedded.start()
    client = redis.Redis.from_url(url)
    client.config_set("auto-aof-rewrite-percentage", 0)
    print(f"Redis {client.info('server')['redis_version']} (embedded, appendonly yes, appendfsync everysec, "
          f"no automatic AOF rewrite); load average at start {load()}")
    try:
        t0 = time.perf_counter()
        feeds = feeds_phase(client, url, args.feeds, args.guids)
        print(f"\nfeeds ({args.feeds}, {args.guids} items each):")
        print(f"  bytes per feed {feeds['feed']:.0f} (status hash {feeds['state_hash']:.0f}, due set "
              f"{feeds['due']:.0f}, source record {feeds['source']:.0f}); bytes per seen GUID {feeds['guid']:.0f}")
        print(f"  unchanged poll (RQ job of 16 feeds included): {feeds['poll_usec']:.0f} us of Redis CPU in "
              f"commands (INFO cpu: {feeds['poll_cpu'] * 1e6:.0f} us, idle second included), "
              f"{feeds['poll_calls']:.1f} commands, {feeds['poll_aof']:.0f} AOF bytes")
        print(f"\npublishing ({args.window} real articles at each index size):", flush=True)
        pub = publish_phase(client, url, args.index, args.window)
        small, large = pub[10_000], pub[args.index]
        print(f"  AOF bytes per publish: {small['aof']:.0f} at 10,000 indexed, {large['aof']:.0f} at {args.index:,} "
              f"(ratio {large['aof'] / small['aof']:.2f})")
        print(f"  Redis CPU per publish (commandstats): {small['usec']:.0f} us at 10,000, {large['usec']:.0f} us at "
              f"{args.index:,} (INFO cpu: {small['cpu'] * 1e6:.0f} / {large['cpu'] * 1e6:.0f} us); "
              f"{large['calls']:.0f} commands")
        print(f"  bytes per claim {pub['claim']:.1f} ({pub['claims']:,} claims); per indexed article "
              f"{pub['indexed']:.0f}; per feeds-out index entry {pub['out_entry']:.1f}; learned boilerplate per "
              f"feed {pub['boiler_feed']:.0f} (100 feeds, {pub['real_articles'] // 100} articles each)")
        print(f"\nfeeds out ({args.others:,} articles of another tag newer than the quiet tag's 8):", flush=True)
        served = serve_phase(client, url, args.others)
        for name in ("quiet", "busy"):
            print(f"  /tags/{name}.atom: {served[name] / 1000:.2f} ms of Redis per request "
                  f"({served[f'{name}_entries']:.0f} entries); 304: {served[f'{name}_304'] / 1000:.2f} ms")
        print(f"  bytes per stream entry {served['stream_entry']:.0f} (article JSON of {served['doc']:.0f} bytes)")
        extrapolate(feeds, pub, served, args.index)
        print(f"\nbench took {time.perf_counter() - t0:.0f} s; load average at the end "
              f"{load()}")
    finally:
        embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
