"""End-to-end burst throughput on the real pages of ../shared/corpus/aeb-dev.

Serves RSS feeds on loopback whose items point at the corpus pages (each page
repeated under distinct URLs), runs the real service (`feedstream run --burst`,
one worker per core, embedded Redis) and prints, in one run:

- pages processed per second end to end (published + exact duplicates: copies of a
  page share its text, so only the first copy is published; every copy is fetched
  and extracted all the same);
- the ceiling: trafilatura alone on the same pages, same settings, one process per core;
- a naive script: feedparser + urllib + trafilatura, one process, sequential;
- the largest process's peak RSS, Redis bytes per article outside the stream,
  and CPU ms per page of the service, of the loopback site and of the ceiling
  (CPU time is steadier than wall time when the machine has other load);
- with ``--plot``: throughput for 1..cores+1 workers, as a PNG for the README.

Usage: .venv/bin/python bench/pipeline.py [--copies N] [--workers N] [--plot docs/bench/throughput.png]
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
import threading
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "aeb-dev"
sys.path.insert(0, str(REPO))

from tests.site import Site  # noqa: E402
from worker.ops.embedded import EmbeddedRedis  # noqa: E402

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


@dataclass
class Burst:
    elapsed: float
    counters: dict[str, int]
    redis_bytes: int  # Redis memory after the burst, less the stream and the empty server's
    service_cpu: float
    site_cpu: float
    stdout: str
    peak_rss_mb: float  # the largest RSS any process of the service reached


class PeakRss:
    """Samples the RSS of a process and its descendants from /proc every 100 ms.

    (getrusage's ru_maxrss of children counts the bench's own pages in a child
    between fork and exec, so it cannot tell a worker's peak.) Walks only the
    service's own tree (``/proc/<pid>/task/<tid>/children``) and reads ``statm``:
    scanning every process's ``status`` cost ~7 ms a sample, CPU the burst then
    lacked and the ceiling did not.
    """

    PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PeakRss:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _children(pid: int) -> list[int]:
        found: list[int] = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    found.extend(int(child) for child in children.read().split())
        except OSError:  # the process ended meanwhile
            pass
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            todo = [self.root]
            while todo:
                pid = todo.pop()
                try:
                    with open(f"/proc/{pid}/statm") as statm:
                        self.peak_mb = max(self.peak_mb, int(statm.read().split()[1]) * self.PAGE_MB)
                except (OSError, IndexError, ValueError):
                    continue
                todo.extend(self._children(pid))


def run_burst(feed_urls: list[str], workers: int) -> Burst:
    """One real `feedstream run --burst` over the feeds, on a fresh embedded Redis."""
    import redis

    with tempfile.TemporaryDirectory() as tmp:
        feeds_toml = Path(tmp) / "feeds.toml"
        feeds_toml.write_text("".join(f'[[feeds]]\nname = "bench{i}"\nurl = "{u}"\n\n'
                                      for i, u in enumerate(feed_urls)))
        server = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = server.start()
        try:
            client = redis.Redis.from_url(redis_url)
            empty_bytes = redis_state_bytes(client)
            env = {**os.environ, "REDIS_URL": redis_url, "FEEDSTREAM_FEEDS": str(feeds_toml),
                   "FEEDSTREAM_ALLOW_PRIVATE": "1", "FEEDSTREAM_WORKERS": str(workers)}
            site_cpu_before = _cpu(resource.RUSAGE_SELF)
            service_cpu_before = _cpu(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "worker", "run", "--burst"], env=env, cwd=REPO,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            peak_rss = PeakRss(process.pid).start()
            stdout, stderr = process.communicate()
            elapsed = time.perf_counter() - started
            peak_rss.stop()
            result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            if result.returncode != 0:
                raise SystemExit(f"bench/pipeline.py: the burst failed:\n{result.stdout}\n{result.stderr}")
            counters = {k.decode(): int(v) for k, v in client.hgetall("feedstream:counters").items()}
            return Burst(
                elapsed=elapsed, counters=counters, redis_bytes=redis_state_bytes(client) - empty_bytes,
                service_cpu=_cpu(resource.RUSAGE_CHILDREN) - service_cpu_before,  # the burst and its workers
                site_cpu=_cpu(resource.RUSAGE_SELF) - site_cpu_before,  # the loopback site serving pages
                stdout=result.stdout.strip(), peak_rss_mb=peak_rss.peak_mb,
            )
        finally:
            server.stop()


def plot(feed_urls: list[str], entries: int, htmls: list[str], out: Path) -> None:
    """Burst throughput for 1..cores+1 workers against the ceiling, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = os.cpu_count() or 1
    counts = list(range(1, cores + 2))
    rates = []
    for workers in counts:
        burst = run_burst(feed_urls, workers)
        rates.append(handled(burst) / burst.elapsed)
        print(f"  {workers} worker(s): {rates[-1]:.1f} entries/s")
    ceiling_rate = ceiling(htmls, cores)
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(counts, rates, marker="o", label="feedstream run --burst (end to end)")
    axes.axhline(ceiling_rate, color="grey", linestyle="--", label=f"trafilatura alone, {cores} processes")
    axes.set_xlabel("worker processes")
    axes.set_ylabel("entries per second")
    axes.set_xticks(counts)
    axes.set_ylim(bottom=0)
    axes.set_title(f"{entries} corpus pages, {cores} cores")
    axes.legend(loc="lower right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    print(f"wrote {out}")


def handled(burst: Burst) -> int:
    """Entries fetched, extracted and either published or found to be duplicates."""
    return burst.counters.get("published", 0) + burst.counters.get("duplicates_exact", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=12, help="times each page is listed under a new URL")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--plot", type=Path, default=None,
                        help="also run 1..cores+1 workers and write throughput against worker count as PNG")
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
    htmls = [html.decode("utf-8", "replace") for _, html in
             ((k, pages[k]) for _ in range(args.copies) for k in pages)]

    burst = run_burst(feed_urls, args.workers)
    ceiling_cpu_before = _cpu(resource.RUSAGE_CHILDREN)
    ceiling_rate = ceiling(htmls, args.workers)
    ceiling_cpu = _cpu(resource.RUSAGE_CHILDREN) - ceiling_cpu_before  # includes the pool's start-up
    naive_rate = naive(feed_urls)
    ours = handled(burst) / burst.elapsed
    published = burst.counters.get("published", 0)
    figures = {
        "pages": len(links), "workers": args.workers, "published": published,
        "exact_duplicates": burst.counters.get("duplicates_exact", 0),
        "fallbacks": burst.counters.get("fallbacks", 0),
        "burst_seconds": round(burst.elapsed, 2), "burst_pages_per_s": round(ours, 1),
        "ceiling_pages_per_s": round(ceiling_rate, 1), "ratio_to_ceiling": round(ours / ceiling_rate, 3),
        "naive_pages_per_s": round(naive_rate, 1), "speedup_over_naive": round(ours / naive_rate, 2),
        "worker_peak_rss_mb": round(burst.peak_rss_mb, 1),
        # claims, seen GUIDs, feed state and any job records left after the burst
        "redis_bytes_per_entry_excl_stream": round(burst.redis_bytes / len(links)),
        "redis_bytes_per_published_excl_stream": round(burst.redis_bytes / max(1, published)),
        "service_cpu_ms_per_page": round(burst.service_cpu / len(links) * 1000, 1),
        "site_cpu_ms_per_page": round(burst.site_cpu / len(links) * 1000, 1),
        "ceiling_cpu_ms_per_page": round(ceiling_cpu / len(links) * 1000, 1),
    }
    print(burst.stdout)
    print(json.dumps(figures, indent=2))
    if args.plot:
        plot(feed_urls, len(links), htmls, args.plot)
    site.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
