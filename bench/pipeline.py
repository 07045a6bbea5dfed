"""End-to-end burst throughput on the real pages of ../shared/corpus/aeb-dev, at a real network's latency.

Serves ``--hosts`` publishers, each on its own loopback HTTP server (its own port, so
its own politeness host) that answers every request ``--latency`` seconds after it
arrives without holding up the others (a thread per request), each with one RSS
feed of its share of the corpus pages; the pages are repeated under distinct URLs
to at least ``--pages``, each copy with its words changed a little so that every
copy is an article of its own (published, not an exact duplicate). Runs the real
``feedstream run --burst`` on a fresh embedded Redis and prints, from one run:

- pages per second end to end, at ``--latency`` and again with no latency;
- the ceiling: trafilatura alone on the same pages, same settings, one process per
  core, measured right after each burst, and the ratio of the two;
- CPU ms per page of the service (the burst's parent process and its worker
  processes, start-up included, plus the Redis server's own CPU from INFO) against
  trafilatura's own (CPU time of the extraction calls in the ceiling's processes);
- publish delay p50/p95: from the feed's answer (when its entries were listed and
  queued) to each article's XADD (the stream entry id's time);
- the most requests any one host had in flight at once (the servers count), and
  ``FEEDSTREAM_HOST_CONCURRENCY``;
- the largest RSS any process of the service reached (a worker's);
- the share of the machine the loopback publishers themselves took during the burst (this process);
- the steady state: pages/s, its ratio and CPU per page between the 10% and the 90% publish
  (start-up and the tail left out; the end-to-end figures above are the headline);
- with ``--plot``: pages/s against worker threads per process (one process per core) at
  ``--latency``, with the ceiling, as a PNG.

Usage: .venv/bin/python bench/pipeline.py [--hosts 24] [--latency 0.15] [--pages 2000] [--workers N]
       [--plot docs/bench/throughput.png [--sweep 1,2,4,8,12] [--plot-pages 600]]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "aeb-dev"
sys.path.insert(0, str(REPO))

from tests.site import Site  # noqa: E402
from worker.ops.embedded import EmbeddedRedis  # noqa: E402
from worker.settings import Settings  # noqa: E402


def load_pages() -> list[str]:
    return [gzip.decompress(p.read_bytes()).decode("utf-8", "replace")
            for p in sorted((CORPUS / "html").glob("*.html.gz"))]


def variant(html: str, copy: int) -> str:
    """The page with its words changed a little, so that each copy is an article of its own."""
    if copy == 0:
        return html
    tag = "".join(chr(ord("a") + int(d)) for d in str(copy))
    return html.replace(" the ", f" the{tag} ").replace(" and ", f" and{tag} ")


def rss(items: list[tuple[str, str]]) -> str:
    """RSS 2.0 as WordPress writes it: every item dated and credited, as real feeds are."""
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>Mon, 23 Nov 2026 09:{n % 60:02d}:00 +0000</pubDate><dc:creator>Staff Writer</dc:creator></item>"
        for n, (title, link) in enumerate(items)
    )
    return ('<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>bench</title>{body}</channel></rss>")


def _extract(html: str) -> float:
    """trafilatura alone on one page, as the service calls it; returns the CPU seconds it took."""
    import trafilatura

    started = time.process_time()
    trafilatura.extract(html, include_comments=False, favor_precision=True)
    return time.process_time() - started


@dataclass
class Ceiling:
    pages_per_s: float
    cpu_ms_per_page: float


def ceiling(htmls: list[str], processes: int) -> Ceiling:
    """trafilatura alone, one process per core: pages per second, and its own CPU per page."""
    with Pool(processes) as pool:
        pool.map(_extract, htmls[:processes * 4])  # warm imports
        started = time.perf_counter()
        cpu = pool.map(_extract, htmls, chunksize=4)
        elapsed = time.perf_counter() - started
    return Ceiling(len(htmls) / elapsed, sum(cpu) / len(htmls) * 1000)


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class PeakRss:
    """Samples the RSS of a process and its descendants from /proc every 100 ms.

    Walks only the service's own tree (``/proc/<pid>/task/<tid>/children``) and reads
    ``statm``: scanning every process's ``status`` cost CPU the burst then lacked.
    """

    PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, root: int, redis_client: Any = None) -> None:
        self.root = root
        self.redis_client = redis_client
        self.peak_mb = 0.0
        self.most_processes = 0
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds last seen (the root's own, then each worker's)
        # (epoch, the service's CPU seconds so far, Redis's) every 100 ms: the steady state's share
        self.series: list[tuple[float, float, float]] = []
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
            todo, seen = [self.root], 0
            while todo:
                pid = todo.pop()
                try:
                    with open(f"/proc/{pid}/statm") as statm:
                        self.peak_mb = max(self.peak_mb, int(statm.read().split()[1]) * self.PAGE_MB)
                    with open(f"/proc/{pid}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / self.TICKS
                except (OSError, IndexError, ValueError):
                    continue
                seen += 1
                todo.extend(self._children(pid))
            self.most_processes = max(self.most_processes, seen)
            redis_cpu = 0.0
            if self.redis_client is not None:
                try:
                    redis_cpu = _redis_cpu(self.redis_client)
                except Exception:  # the server is going away at the end
                    continue
            self.series.append((time.time(), sum(self.cpu.values()), redis_cpu))

    def cpu_between(self, start: float, end: float) -> float:
        """The service's CPU seconds (its processes and Redis) spent between two epochs, from the samples."""
        def at(when: float) -> float:
            before = [sample for sample in self.series if sample[0] <= when]
            sample = before[-1] if before else self.series[0]
            return sample[1] + sample[2]
        return at(end) - at(start) if self.series else math.nan


@dataclass
class Burst:
    elapsed: float
    counters: dict[str, int]
    service_cpu: float  # the burst's parent and workers (reaped children), seconds
    redis_cpu: float
    delays: list[float]  # feed answered -> XADD, seconds, one per published article
    peak_rss_mb: float
    processes: int
    parent_cpu: float  # the run parent's own CPU as last sampled (the rest of service_cpu is its workers')
    stdout: str
    bench_cpu: float = math.nan  # this process's own CPU meanwhile: the publishers' servers (and the sampler)
    # the steady state: from the 10% to the 90% publish (start-up and the last pages' tail left out)
    steady_seconds: float = math.nan
    steady_share: float = math.nan  # of the published articles
    steady_cpu: float = math.nan  # the service's and Redis's CPU seconds in that span


class Publishers:
    """``hosts`` loopback publishers, each with one feed listing its share of the pages."""

    def __init__(self, htmls: list[str], hosts: int, latency: float) -> None:
        self.sites = [Site(latency=latency).start() for _ in range(hosts)]
        self.feed_urls: list[str] = []
        items: list[list[tuple[str, str]]] = [[] for _ in self.sites]
        for index, html in enumerate(htmls):
            # page index -> host so that each host lists different pages (no host repeats one
            # while another has not had it), as distinct publishers would
            copy, key = divmod(index, CORPUS_PAGES)
            host = (key + copy) % hosts
            url = self.sites[host].add(f"/c{copy}/p{key}.html", html, "text/html; charset=utf-8")
            items[host].append((f"page {key} copy {copy}", url))
        for site, listed in zip(self.sites, items, strict=True):
            self.feed_urls.append(site.add("/feed.xml", rss(listed), "application/rss+xml"))
            site.add("/robots.txt", "User-agent: *\nDisallow: /private/\n", "text/plain")

    def set_latency(self, latency: float) -> None:
        for site in self.sites:
            site.latency = latency

    def reset(self) -> None:
        for site in self.sites:
            site.requests.clear()
            site.peak_inflight = 0

    def peak_inflight(self) -> int:
        return max(site.peak_inflight for site in self.sites)

    def feed_answered(self) -> dict[int, float]:
        """Port -> when its feed's first answer went out (arrival + latency), epoch seconds."""
        answered = {}
        for site in self.sites:
            hits = site.hits("/feed.xml")
            if hits:
                answered[site._server.server_address[1]] = hits[0].at + site.latency
        return answered

    def stop(self) -> None:
        for site in self.sites:
            site.stop()


CORPUS_PAGES = 88  # set from the corpus in main()


def run_burst(publishers: Publishers, workers: int | None, host_concurrency: int,
              threads: int | None = None) -> Burst:
    """One real `feedstream run --burst` over the publishers' feeds, on a fresh embedded Redis."""
    import redis

    publishers.reset()
    with tempfile.TemporaryDirectory() as tmp:
        feeds_toml = Path(tmp) / "feeds.toml"
        feeds_toml.write_text("".join(f'[[feeds]]\nname = "bench{i}"\nurl = "{u}"\n\n'
                                      for i, u in enumerate(publishers.feed_urls)))
        server = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = server.start()
        try:
            client = redis.Redis.from_url(redis_url)
            env = {**os.environ, "REDIS_URL": redis_url, "FEEDSTREAM_FEEDS": str(feeds_toml),
                   "FEEDSTREAM_ALLOW_PRIVATE": "1", "FEEDSTREAM_HOST_CONCURRENCY": str(host_concurrency)}
            if workers:
                env["FEEDSTREAM_WORKERS"] = str(workers)
            if threads:
                env["FEEDSTREAM_WORKER_THREADS"] = str(threads)
            redis_cpu_before = _redis_cpu(client)
            service_cpu_before = _cpu_children()
            bench_cpu_before = _cpu_self()
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "worker", "run", "--burst"], env=env, cwd=REPO,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            peak_rss = PeakRss(process.pid, client).start()
            stdout, stderr = process.communicate()
            elapsed = time.perf_counter() - started
            peak_rss.stop()
            bench_cpu = _cpu_self() - bench_cpu_before
            if process.returncode != 0:
                raise SystemExit(f"bench/pipeline.py: the burst failed:\n{stdout}\n{stderr}")
            counters = {k.decode(): int(v) for k, v in client.hgetall("feedstream:counters").items()}
            answered = publishers.feed_answered()
            delays, stamps = [], []
            for entry_id, fields in client.xrange("articles"):
                port = int(fields[b"url"].decode().split(":")[2].split("/")[0])
                stamps.append(int(entry_id.decode().split("-")[0]) / 1000)
                delays.append(stamps[-1] - answered[port])
            steady = {}
            if len(stamps) >= 20:
                first, last = stamps[len(stamps) // 10], stamps[len(stamps) * 9 // 10]
                steady = {"steady_seconds": last - first, "steady_share": 0.8,
                          "steady_cpu": peak_rss.cpu_between(first, last)}
            return Burst(elapsed=elapsed, counters=counters, service_cpu=_cpu_children() - service_cpu_before,
                         redis_cpu=_redis_cpu(client) - redis_cpu_before, delays=delays,
                         peak_rss_mb=peak_rss.peak_mb, processes=peak_rss.most_processes,
                         parent_cpu=peak_rss.cpu.get(process.pid, 0.0), stdout=stdout.strip(),
                         bench_cpu=bench_cpu, **steady)
        finally:
            server.stop()


def handled(burst: Burst) -> int:
    """Entries fetched, extracted and either published or found to be duplicates."""
    return burst.counters.get("published", 0) + burst.counters.get("duplicates_exact", 0)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(burst: Burst, top: Ceiling, pages: int, peak_inflight: int) -> dict[str, Any]:
    rate = handled(burst) / burst.elapsed
    service_ms = (burst.service_cpu + burst.redis_cpu) / pages * 1000
    return {
        "pages_per_s": round(rate, 1), "ceiling_pages_per_s": round(top.pages_per_s, 1),
        "ratio_to_ceiling": round(rate / top.pages_per_s, 3),
        "service_cpu_ms_per_page": round(service_ms, 1),
        "of_which_redis_ms": round(burst.redis_cpu / pages * 1000, 2),
        "of_which_run_parent_ms": round(burst.parent_cpu / pages * 1000, 2),
        # not the service's: the loopback publishers serving the pages took this share of the machine during
        # the burst (real publishers are elsewhere; the ceiling runs with no servers to feed)
        "publishers_share_of_machine": round(burst.bench_cpu / burst.elapsed / (os.cpu_count() or 1), 3),
        "trafilatura_cpu_ms_per_page": round(top.cpu_ms_per_page, 1),
        "cpu_ratio": round(service_ms / top.cpu_ms_per_page, 3),
        "publish_delay_p50_s": round(percentile(burst.delays, 0.5), 2),
        "publish_delay_p95_s": round(percentile(burst.delays, 0.95), 2),
        "most_in_flight_on_one_host": peak_inflight,
        "worker_peak_rss_mb": round(burst.peak_rss_mb, 1),
        "service_processes": burst.processes,
        "burst_seconds": round(burst.elapsed, 2), "published": burst.counters.get("published", 0),
        "handled": handled(burst), "fallbacks": burst.counters.get("fallbacks", 0),
        # pages a busy host sent back to the queue, and pages left to RQ's retry: both wait, so both should be 0
        "held_pages": burst.counters.get("held_pages", 0), "retried_pages": burst.counters.get("retried_pages", 0),
        # the same between the 10% and the 90% publish: what the service does once started, without its
        # start-up (imports, the first poll, the first pages' round trips) and its last pages' tail
        **steady_figures(burst, top, pages),
    }


def steady_figures(burst: Burst, top: Ceiling, pages: int) -> dict[str, Any]:
    if math.isnan(burst.steady_seconds) or burst.steady_seconds <= 0:
        return {}
    steady_pages = burst.steady_share * handled(burst)  # duplicates are spread through the burst like the rest
    rate = steady_pages / burst.steady_seconds
    cpu_ms = burst.steady_cpu / steady_pages * 1000
    return {"steady_pages_per_s": round(rate, 1), "steady_ratio_to_ceiling": round(rate / top.pages_per_s, 3),
            "steady_cpu_ms_per_page": round(cpu_ms, 1), "steady_cpu_ratio": round(cpu_ms / top.cpu_ms_per_page, 3)}


def plot(publishers: Publishers, htmls: list[str], sweep: list[int], latency: float, host_concurrency: int,
         out: Path) -> None:
    """Burst pages/s against worker threads per process (one process per core), at ``latency``, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cores = os.cpu_count() or 1
    publishers.set_latency(latency)
    rates = []
    for threads in sweep:
        burst = run_burst(publishers, cores, host_concurrency, threads=threads)
        rates.append(handled(burst) / burst.elapsed)
        print(f"  {cores} x {threads} worker thread(s): {rates[-1]:.1f} pages/s", flush=True)
    top = ceiling(htmls, cores)
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(sweep, rates, marker="o", label="feedstream run --burst (end to end)")
    axes.axhline(top.pages_per_s, color="grey", linestyle="--", label=f"trafilatura alone, {cores} processes")
    axes.set_xlabel(f"worker threads per process ({cores} processes)")
    axes.set_ylabel("pages per second")
    axes.set_xticks(sweep)
    axes.set_ylim(bottom=0)
    axes.set_title(f"{len(htmls)} corpus pages, {len(publishers.sites)} hosts at {latency * 1000:.0f} ms, "
                   f"{cores} cores")
    axes.legend(loc="lower right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    print(f"wrote {out}")


def main() -> int:
    global CORPUS_PAGES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=24, help="publishers, each its own loopback server")
    parser.add_argument("--latency", type=float, default=0.15, help="seconds each server waits before answering")
    parser.add_argument("--pages", type=int, default=2000, help="at least this many page URLs (corpus repeated)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the service's)")
    parser.add_argument("--host-concurrency", type=int, default=Settings.host_concurrency,
                        help="FEEDSTREAM_HOST_CONCURRENCY for the run")
    parser.add_argument("--no-zero", action="store_true", help="skip the run with no latency")
    parser.add_argument("--plot", type=Path, default=None,
                        help="also run the --sweep thread counts and write pages/s against them as PNG")
    parser.add_argument("--sweep", default="1,2,4,8,12", help="worker threads per process for --plot")
    parser.add_argument("--plot-pages", type=int, default=600, help="pages for each run of the --plot sweep")
    args = parser.parse_args()
    if not CORPUS.exists():
        print(f"bench/pipeline.py: corpus not found at {CORPUS}; nothing to measure")
        return 0
    corpus = load_pages()
    CORPUS_PAGES = len(corpus)
    copies = math.ceil(args.pages / len(corpus))
    htmls = [variant(html, copy) for copy in range(copies) for html in corpus]
    cores = os.cpu_count() or 1
    publishers = Publishers(htmls, args.hosts, args.latency)
    print(f"{len(htmls)} pages ({len(corpus)} corpus pages x {copies}) on {args.hosts} hosts; "
          f"{cores} cores; load before: {os.getloadavg()[0]:.2f}", flush=True)

    results: dict[str, Any] = {"pages": len(htmls), "hosts": args.hosts, "cores": cores,
                               "host_concurrency": args.host_concurrency}
    latencies = [args.latency] if args.no_zero or args.latency == 0 else [args.latency, 0.0]
    for latency in latencies:
        publishers.set_latency(latency)
        burst = run_burst(publishers, args.workers, args.host_concurrency)
        top = ceiling(htmls, cores)
        print(burst.stdout, flush=True)
        results[f"latency_{latency:g}s"] = figures(burst, top, len(htmls), publishers.peak_inflight())
        print(json.dumps({f"latency_{latency:g}s": results[f"latency_{latency:g}s"]}, indent=2), flush=True)
    results["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))
    publishers.stop()
    if args.plot:
        fewer = htmls[:args.plot_pages]
        sweep_publishers = Publishers(fewer, args.hosts, args.latency)
        plot(sweep_publishers, fewer, [int(n) for n in args.sweep.split(",")], args.latency, args.host_concurrency,
             args.plot)
        sweep_publishers.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
