"""``/metrics`` (Prometheus) and ``/healthz`` for operators, served by ``feedstream metrics``.

Where the numbers come from: Redis, not process memory. The work happens in many short-lived
processes (RQ's WorkerPool restarts workers; operators run workers on several machines), so an
in-process prometheus-client registry would see only its own process. prometheus-client's
multiprocess mode shares files in one directory, so it stops at one machine and needs cleaning when
workers come and go. The pipeline already keeps its counts in Redis (``Store.count``, and the publish
Lua script counts ``published`` in the same step as the XADD), so they are exact across every
process and machine and survive restarts; this module only reads them on each scrape through a
custom prometheus-client collector. Queue depths come from RQ's own registries.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, WSGIRequestHandler, make_server
from prometheus_client.registry import Collector

from worker.sources.spec import kind_of
from worker.store import Store

log = logging.getLogger("feedstream.metrics")

QueueDepths = Callable[[], dict[str, dict[str, int]]]
# /healthz warns when a consumer group's lag passes this share of FEEDSTREAM_STREAM_MAXLEN.
LAG_WARN_SHARE = 0.8
WorkerCount = Callable[[], int]


def _prefixed(counters: dict[str, int], prefix: str) -> Iterator[tuple[str, int]]:
    for name, value in sorted(counters.items()):
        if name.startswith(prefix):
            yield name[len(prefix):], value


class FeedstreamCollector(Collector):
    """Reads feedstream's Redis counters, RQ's queues and the stream on every scrape."""

    def __init__(self, store: Store, queue_depths: QueueDepths, worker_count: WorkerCount) -> None:
        self.store = store
        self.queue_depths = queue_depths
        self.worker_count = worker_count

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("feedstream_redis_up", "1 when Redis answered this scrape, else 0")
        try:
            families = list(self._families())
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _families(self) -> Iterator[Metric]:
        store = self.store
        counters = store.counters()

        polls = CounterMetricFamily("feedstream_polls", "Feed polls by outcome", labels=["outcome"])
        for outcome, value in _prefixed(counters, "polls_"):
            polls.add_metric([outcome], value)
        yield polls

        http = CounterMetricFamily("feedstream_http_responses", "HTTP responses by fetch kind and status "
                                   "(status 'error': no response: timeout, refused, blocked, too large)",
                                   labels=["kind", "status"])
        for (kind, status), value in sorted(store.http_counts().items()):
            http.add_metric([kind, status], value)
        yield http

        yield CounterMetricFamily("feedstream_articles_published", "Articles added to the stream",
                                  value=counters.get("published", 0))
        duplicates = CounterMetricFamily("feedstream_duplicates", "Articles not published as duplicates, by kind",
                                         labels=["kind"])
        for kind, value in _prefixed(counters, "duplicates_"):
            duplicates.add_metric([kind], value)
        yield duplicates
        yield CounterMetricFamily("feedstream_extraction_fallbacks",
                                  "Articles published from the feed's own content because the page failed",
                                  value=counters.get("fallbacks", 0))
        yield CounterMetricFamily("feedstream_entries_new", "Feed entries seen for the first time",
                                  value=counters.get("entries_new", 0))
        filtered = CounterMetricFamily("feedstream_entries_filtered", "Entries a source's keep/block rules or "
                                       "max_age dropped (never published), by source and rule",
                                       labels=["source", "rule"])
        for (source, rule), value in sorted(store.filtered_counts().items()):
            filtered.add_metric([source, rule], value)
        yield filtered
        yield CounterMetricFamily("feedstream_page_retries", "Page fetches deferred to an RQ retry",
                                  value=counters.get("retried_pages", 0))
        yield CounterMetricFamily("feedstream_updates_published",
                                  "Update events published: a changed article's version 2, 3, ...",
                                  value=counters.get("updates_published", 0))
        rechecks = CounterMetricFamily("feedstream_rechecks", "Re-checks of published articles whose feed entry "
                                       "changed, by outcome ('checked': every one)", labels=["outcome"])
        rechecks.add_metric(["checked"], counters.get("rechecks", 0))
        for outcome, value in _prefixed(counters, "rechecks_"):
            rechecks.add_metric([outcome], value)
        yield rechecks

        buckets, total = store.delay_histogram()
        yield HistogramMetricFamily("feedstream_publish_delay_seconds",
                                    "Delay from an article's published time to its XADD",
                                    buckets=buckets, sum_value=total)

        depth = GaugeMetricFamily("feedstream_queue_jobs", "RQ jobs by queue and state", labels=["queue", "state"])
        for queue, states in self.queue_depths().items():
            for state, value in states.items():
                depth.add_metric([queue, state], value)
        yield depth
        yield GaugeMetricFamily("feedstream_workers", "RQ workers alive", value=self.worker_count())

        # read on every scrape, so a source added, paused or removed shows at once
        sources = GaugeMetricFamily("feedstream_sources", "Sources by kind, state (active, paused) and who "
                                    "manages them (file, api)", labels=["kind", "state", "managed_by"])
        tally: Counter[tuple[str, str, str]] = Counter(
            (kind_of(r.source), "paused" if r.paused else "active", r.managed_by)
            for r in store.sources_snapshot().records.values())
        for labels, count in sorted(tally.items()):
            sources.add_metric(list(labels), count)
        yield sources

        yield GaugeMetricFamily("feedstream_stream_length", "Entries in the article stream",
                                value=store.stream_length())
        pending = GaugeMetricFamily("feedstream_consumer_group_pending",
                                    "Stream entries read by a consumer group and not yet acknowledged",
                                    labels=["group"])
        lag = GaugeMetricFamily("feedstream_consumer_group_lag",
                                "Stream entries not yet delivered to a consumer group (after its last-delivered id)",
                                labels=["group"])
        trimmed = GaugeMetricFamily("feedstream_consumer_group_trimmed",
                                    "Entries trimmed from the stream (MAXLEN) before a consumer group read them "
                                    "(estimated when Redis < 7 cannot count them)", labels=["group"])
        for group in store.group_health(counters.get("published")):
            pending.add_metric([group.name], group.pending)
            lag.add_metric([group.name], group.lag)
            trimmed.add_metric([group.name], group.trimmed)
        yield pending
        yield lag
        yield trimmed

        outbox, _next_check = store.outbox_size()
        yield GaugeMetricFamily("feedstream_outbox_pending", "Entries queued and not yet published or decided",
                                value=outbox)
        yield CounterMetricFamily("feedstream_outbox_requeued", "Entries the outbox sweeper queued again",
                                  value=counters.get("entries_requeued", 0))
        yield GaugeMetricFamily("feedstream_redis_accepts_writes",
                                "1 when a probe write succeeded this scrape, 0 while Redis refuses writes",
                                value=int(store.probe_write() is None))

        beat = store.last_beat("scheduler")
        if beat is not None:
            yield GaugeMetricFamily("feedstream_scheduler_heartbeat_age_seconds",
                                    "Seconds since the scheduler last ticked", value=max(time.time() - beat, 0.0))


@dataclass(frozen=True)
class Health:
    """The answer of ``/healthz``."""

    ok: bool
    checks: dict[str, Any]


def health(store: Store, stale_after: float, now: float | None = None) -> Health:
    """Healthy when Redis answers and accepts writes, and the scheduler ticked within ``stale_after`` seconds.

    A consumer group whose lag passes LAG_WARN_SHARE of the stream's MAXLEN (about to lose entries to
    trimming), or that lost some already, is a warning in ``checks["consumer_groups"]``, not a failure:
    the service itself is fine, a reader is behind.
    """
    now = time.time() if now is None else now
    checks: dict[str, Any] = {}
    try:
        checks["redis"] = {"ok": True, "latency_ms": round(store.ping() * 1000, 2)}
    except (redis.RedisError, OSError) as exc:
        checks["redis"] = {"ok": False, "error": f"redis: unreachable: {exc}"}
        return Health(False, checks)
    refusal = store.probe_write()  # live: nothing can record a refusal while it lasts
    checks["redis_writes"] = {"ok": refusal is None}
    if refusal is not None:
        checks["redis_writes"]["error"] = f"redis: refusing writes: {refusal}"
    try:
        warnings = group_warnings(store)
    except redis.RedisError as exc:
        warnings = [f"consumer groups: cannot read: {exc}"]
    checks["consumer_groups"] = {"ok": True, **({"warnings": warnings} if warnings else {})}
    beat = store.last_beat("scheduler")
    if beat is None:
        checks["scheduler"] = {"ok": False, "error": "scheduler: no heartbeat yet"}
    else:
        age = now - beat
        fresh = age <= stale_after
        checks["scheduler"] = {"ok": fresh, "heartbeat_age_s": round(age, 1), "stale_after_s": stale_after}
        if not fresh:
            checks["scheduler"]["error"] = f"scheduler: last tick {age:.0f} s ago (limit {stale_after:g} s)"
    return Health(all(c["ok"] for c in checks.values()), checks)


def group_warnings(store: Store) -> list[str]:
    """A line for each consumer group that lost entries to trimming or is about to."""
    warnings = []
    for group in store.group_health(store.counters().get("published")):
        if group.trimmed:
            about = "" if group.trimmed_exact else "about "
            warnings.append(f"consumer group {group.name}: {about}{group.trimmed} entries trimmed before it read them")
        elif store.stream_maxlen and group.lag > LAG_WARN_SHARE * store.stream_maxlen:
            warnings.append(f"consumer group {group.name}: lag {group.lag} is above {LAG_WARN_SHARE:.0%} of the "
                            f"stream's MAXLEN {store.stream_maxlen}: it is about to lose entries to trimming")
    return warnings


def make_app(store: Store, queue_depths: QueueDepths, worker_count: WorkerCount,
             stale_after: float) -> Callable[..., Any]:
    """The WSGI app: ``/metrics`` (Prometheus text format) and ``/healthz`` (JSON; 503 when unhealthy)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FeedstreamCollector(store, queue_depths, worker_count))
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            result = health(store, stale_after)
            body = json.dumps({"ok": result.ok, "checks": result.checks}).encode()
            start_response("200 OK" if result.ok else "503 Service Unavailable",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        body = b"feedstream: /metrics and /healthz\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s would flood the log
        pass


def serve(app: Callable[..., Any], host: str, port: int, stop: threading.Event) -> None:
    """Serve ``app`` on ``host:port`` (threaded) until ``stop`` is set."""
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, server.server_port)
    stop.wait()
    server.shutdown()
    server.server_close()
