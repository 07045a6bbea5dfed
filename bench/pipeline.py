"""End-to-end burst throughput on the real pages of ../shared/corpus/aeb-dev.

Serves RSS feeds on loopback whose items point at the corpus pages (each page
repeated under distinct URLs), runs the real service (`feedstream run --burst`,
one worker per core, embedded Redis) and prints, in one run:

- pages processed per second end to end (published + exact duplicates: copies of a
  page share its text, so only the first copy is published; every copy is fetched
  and extracted all the same);
- the ceiling: trafilatura alone on the same pages, same settings, one process per core;
- a naive script: feedparser + urllib + trafilatura, one process, sequential;
- the worker tree's peak RSS.

Usage: .venv/bin/python bench/pipeline.py [--copies N] [--workers N]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing import Pool
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "aeb-dev"
sys.path.insert(0, str(REPO))

from tests.site import Site  # noqa: E402
from worker.embedded import EmbeddedRedis  # noqa: E402

ITEMS_PER_FEED = 50


def load_pages() -> dict[str, bytes]:
    return {p.name.removesuffix(".html.gz"): gzip.decompress(p.read_bytes())
            for p in sorted((CORPUS / "html").glob("*.html.gz"))}


def rss(items: list[tuple[str, str]]) -> str:
    """RSS 2.0 as WordPress writes it: every item dated and credited, as real feeds are."""
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>Mon, 23 Nov 2026 09:{n % 60:02d}:00 +0000</pubDate><dc:creator>Staff Writer</dc:creator></item>"
        for n, (title, link) in enumerate(items)
    )
    return ('<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>bench</title>{body}</channel></rss>")


def _extract(html: str) -> int:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, favor_precision=True)
    return len(text or "")


def redis_state_bytes(client: Any) -> int:
    """Redis memory in use, less the stream (the article payloads downstream reads)."""
    client.execute_command("MEMORY", "PURGE")
    used = int(client.info("memory")["used_memory"])
    stream = client.memory_usage("articles", samples=0) or 0
    return used - stream


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ceiling(htmls: list[str], processes: int) -> float:
    """Pages per second for trafilatura alone, one process per core."""
    with Pool(processes) as pool:
        pool.map(_extract, htmls[:processes])  # warm imports
        started = time.perf_counter()
        pool.map(_extract, htmls, chunksize=4)
        return len(htmls) / (time.perf_counter() - started)


def naive(feed_urls: list[str]) -> float:
    """Pages per second for feedparser + urllib + trafilatura, sequential, one process."""
    import feedparser
    import trafilatura

    started = time.perf_counter()
    count = 0
    for url in feed_urls:
        with urllib.request.urlopen(url) as response:
            parsed = feedparser.parse(io.BytesIO(response.read()))
        for entry in parsed.entries:
            with urllib.request.urlopen(entry.link) as response:
                html = response.read().decode("utf-8", "replace")
            trafilatura.extract(html, include_comments=False, favor_precision=True)
            count += 1
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="times each page is listed under a new URL")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not CORPUS.exists():
        print(f"bench/pipeline.py: corpus not found at {CORPUS}; nothing to measure")
        return 0
    pages = load_pages()
    site = Site().start()
    links: list[tuple[str, str]] = []
    for copy in range(args.copies):
        for key, html in pages.items():
            links.append((f"{key[:8]} copy {copy}", site.add(f"/c{copy}/{key}.html", html, "text/html")))
    feed_urls = []
    for start in range(0, len(links), ITEMS_PER_FEED):
        feed_urls.append(site.add(f"/feed{start}.xml", rss(links[start:start + ITEMS_PER_FEED]),
                                  "application/rss+xml"))
    with tempfile.TemporaryDirectory() as tmp:
        feeds_toml = Path(tmp) / "feeds.toml"
        feeds_toml.write_text("".join(f'[[feeds]]\nname = "bench{i}"\nurl = "{u}"\n\n'
                                      for i, u in enumerate(feed_urls)))
        server = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = server.start()
        import redis

        empty_bytes = redis_state_bytes(redis.Redis.from_url(redis_url))
        env = {**os.environ, "REDIS_URL": redis_url, "FEEDSTREAM_FEEDS": str(feeds_toml),
               "FEEDSTREAM_ALLOW_PRIVATE": "1", "FEEDSTREAM_WORKERS": str(args.workers)}
        site_cpu_before = _cpu(resource.RUSAGE_SELF)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "worker", "run", "--burst"], env=env, cwd=REPO,
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        site_cpu = _cpu(resource.RUSAGE_SELF) - site_cpu_before  # the loopback site serving the pages
        service_cpu = _cpu(resource.RUSAGE_CHILDREN)  # the burst process and its workers
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        import redis

        client = redis.Redis.from_url(redis_url)
        counters = {k.decode(): int(v) for k, v in client.hgetall("feedstream:counters").items()}
        redis_bytes = redis_state_bytes(client)
        server.stop()
    if result.returncode != 0:
        print(result.stdout, result.stderr)
        return 1
    processed = counters.get("published", 0) + counters.get("duplicates_exact", 0)
    htmls = [html.decode("utf-8", "replace") for _, html in
             ((k, pages[k]) for _ in range(args.copies) for k in pages)]
    ceiling_cpu_before = _cpu(resource.RUSAGE_CHILDREN)
    ceiling_rate = ceiling(htmls, args.workers)
    ceiling_cpu = _cpu(resource.RUSAGE_CHILDREN) - ceiling_cpu_before  # includes the pool's start-up
    naive_rate = naive(feed_urls)
    site.stop()
    ours = processed / elapsed
    figures = {
        "pages": len(links), "workers": args.workers, "published": counters.get("published", 0),
        "exact_duplicates": counters.get("duplicates_exact", 0), "fallbacks": counters.get("fallbacks", 0),
        "burst_seconds": round(elapsed, 2), "burst_pages_per_s": round(ours, 1),
        "ceiling_pages_per_s": round(ceiling_rate, 1), "ratio_to_ceiling": round(ours / ceiling_rate, 3),
        "naive_pages_per_s": round(naive_rate, 1), "speedup_over_naive": round(ours / naive_rate, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        # claims, seen GUIDs, feed state and RQ's job records left after the burst
        "redis_bytes_per_entry_excl_stream": round((redis_bytes - empty_bytes) / len(links)),
        "redis_bytes_per_published_excl_stream": round(
            (redis_bytes - empty_bytes) / max(1, counters.get("published", 0))),
        "service_cpu_ms_per_page": round(service_cpu / len(links) * 1000, 1),
        "site_cpu_ms_per_page": round(site_cpu / len(links) * 1000, 1),
        "ceiling_cpu_ms_per_page": round(ceiling_cpu / len(links) * 1000, 1),
    }
    print(result.stdout.strip())
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
