"""Unchanged-feed polling: polls per second and the delay from a feed's slot to its poll.

Serves N small RSS feeds on loopback from --hosts servers (each feed with an ETag), runs the real service
processes (`feedstream scheduler` and `feedstream worker` with one process per
core) against an embedded Redis, and after a first round that stores every
feed's validators, measures in one run:

- throughput: all N feeds made due at the same instant; every poll sends its
  validators and gets 304; polls/s = N / (time until the last one is counted);
- scheduling delay: N feeds due one after another at a steady rate below
  capacity; delay = the poll's request reaching the site - the feed's slot;
  p50/p95/max printed.

Usage: .venv/bin/python bench/polls.py [--feeds N] [--rate R] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.site import Site  # noqa: E402
from worker.ops.embedded import EmbeddedRedis  # noqa: E402
from worker.store import Store, connect  # noqa: E402

FEED = ('<?xml version="1.0"?><rss version="2.0"><channel><title>unchanged {n}</title>'
        "<link>http://example.com/</link><description>no news</description></channel></rss>")


def wait_for(store: Store, counter: str, target: int, timeout: float) -> float:
    """Epoch time at which ``counter`` reached ``target`` (polled every 10 ms)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if store.counters().get(counter, 0) >= target:
            return time.time()
        time.sleep(0.01)
    raise SystemExit(f"bench/polls.py: {counter} stuck at {store.counters().get(counter, 0)} of {target}")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process serves the feeds
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="feeds due per second in the delay round")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--hosts", type=int, default=50, help="servers (publishers) the feeds are spread over")
    args = parser.parse_args()

    # Feeds come from many publishers: spread them over several servers (host:port is the
    # unit of per-host politeness), so the bench measures polling, not one host's slot limit.
    sites = [Site().start() for _ in range(args.hosts)]
    names = [f"feed{n:05d}" for n in range(args.feeds)]
    urls = {name: sites[n % len(sites)].add(f"/{name}.xml", FEED.format(n=name), "application/rss+xml",
                                            headers={"ETag": f'"{name}-v1"'}) for n, name in enumerate(names)}
    with tempfile.TemporaryDirectory() as tmp:
        feeds_toml = Path(tmp) / "feeds.toml"
        feeds_toml.write_text("".join(f'[[feeds]]\nname = "{n}"\nurl = "{u}"\ninterval = 3600\n\n'
                                      for n, u in urls.items()))
        server = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = server.start()
        store = Store(connect(redis_url))
        env = {**os.environ, "REDIS_URL": redis_url, "FEEDSTREAM_FEEDS": str(feeds_toml),
               "FEEDSTREAM_ALLOW_PRIVATE": "1"}
        processes = [
            subprocess.Popen([sys.executable, "-m", "worker", "worker", "--processes", str(args.workers)],
                             env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([sys.executable, "-m", "worker", "scheduler"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            # round 1: every feed fetched once (200), so each holds its ETag
            wait_for(store, "polls_ok", args.feeds, timeout=300)

            # round 2: all due at once; each poll is a conditional GET answered 304
            start = time.time() + 0.5
            site_cpu = _cpu()
            for name in names:
                store.schedule(name, start)
            done = wait_for(store, "polls_not_modified", args.feeds, timeout=300)
            throughput = args.feeds / (done - start)
            site_cpu = _cpu() - site_cpu

            # round 3: due one after another at --rate; delay = request arrival - slot
            for site in sites:
                site.requests.clear()
            first = time.time() + 1.0
            slots = {name: first + i / args.rate for i, name in enumerate(names)}
            for name, at in slots.items():
                store.schedule(name, at)
            wait_for(store, "polls_not_modified", 2 * args.feeds, timeout=300)
            requests = [r for site in sites for r in site.requests]
            arrivals = {r.path.strip("/").removesuffix(".xml"): r.at for r in requests}
            delays = [arrivals[name] - at for name, at in slots.items() if name in arrivals]
            sent_validators = sum(1 for r in requests if r.headers.get("if-none-match"))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            server.stop()
            for site in sites:
                site.stop()
    print(json.dumps({
        "feeds": args.feeds, "hosts": args.hosts, "workers": args.workers,
        "unchanged_polls_per_s": round(throughput, 1),
        "site_cpu_ms_per_poll": round(site_cpu / args.feeds * 1000, 2),
        "delay_round_rate_per_s": args.rate,
        "delay_p50_s": round(percentile(delays, 0.50), 3),
        "delay_p95_s": round(percentile(delays, 0.95), 3),
        "delay_max_s": round(max(delays), 3),
        "delay_samples": len(delays),
        "requests_with_validators": sent_validators,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
