"""Fetching an entry's page, and what came of it: an article, or why there is none."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from worker.errors import ExtractError, FetchError, HostDeferred, RobotsDisallowed
from worker.fetch import PoliteFetcher
from worker.models import Article, Entry, Fetched
from worker.pipeline.articles import article_from_page
from worker.pipeline.queues import EXTRACT_BATCH

log = logging.getLogger("feedstream.jobs")

PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
# Page downloads per worker thread: a whole extract job's pages at once (its host's slots
# decide how many are on the wire); its EXTRACT_BATCH bodies, each under the size cap, may
# be held in memory at once.
PAGE_PREFETCH = EXTRACT_BATCH


def fetch_page(fetcher: PoliteFetcher, entry: Entry, headers: Mapping[str, str] | Exception | None = None) -> Fetched:
    """The entry's page, with its source's request ``headers`` (an exception: why they cannot be sent)."""
    if isinstance(headers, Exception):
        raise FetchError(f"fetch: {headers}", url=entry.url)
    return fetcher.get(entry.url, accept=PAGE_ACCEPT, page=True, headers=headers)


# One extraction at a time per process: its worker threads take turns (waiting on a lock
# costs no CPU) instead of trading the GIL every 5 ms, which evicts each other's caches
# and keeps their page downloads, which need the GIL for moments, waiting behind them.
EXTRACTING = threading.Lock()

_prefetch: tuple[int, ThreadPoolExecutor] | None = None
_prefetch_lock = threading.Lock()


def prefetch_pool(worker_threads: int = 1) -> ThreadPoolExecutor:
    """This process's page-download threads, shared by its worker threads and kept from job to job
    (a pool per job cost ~1% of a worker's time): PAGE_PREFETCH for each of ``worker_threads``.

    Made on first use in each process: threads do not survive the fork that starts a worker.
    """
    global _prefetch
    if _prefetch is None or _prefetch[0] != os.getpid():
        with _prefetch_lock:
            if _prefetch is None or _prefetch[0] != os.getpid():
                _prefetch = (os.getpid(), ThreadPoolExecutor(max_workers=PAGE_PREFETCH * max(worker_threads, 1),
                                                             thread_name_prefix="prefetch"))
    return _prefetch[1]


@dataclass
class PageOutcome:
    article: Article | None = None
    canonical: str | None = None  # the page's own canonical URL, when on the same site
    reason: str | None = None  # why there is no article from the page
    retry: bool = False  # the page may come later: leave the entry to RQ's retry
    http: int | str | None = None  # the page request's HTTP status ("error": no answer); None: no request
    validators: tuple[str | None, str | None] = (None, None)  # the page's ETag and Last-Modified (re-checks)


def page_outcome(entry: Entry, download: Future[Fetched] | None, final_attempt: bool, *,
                 selector: str | None = None, strip: tuple[str, ...] = ()) -> PageOutcome:
    """The article from the downloaded page, or why there is none (HostDeferred passes through).

    ``selector`` and ``strip``: the source's (issue 16)."""
    if download is None:  # the feed is configured to publish its own content
        return PageOutcome()
    try:
        fetched = download.result()
    except HostDeferred:
        raise  # the caller queues the entry again for when the host lets us back
    except RobotsDisallowed as exc:  # no request was made
        return PageOutcome(reason=str(exc))
    except FetchError as exc:
        return PageOutcome(reason=str(exc), retry=exc.transient and not final_attempt, http=exc.status or "error")
    except Exception as exc:  # a bug in the fetch path must not lose the entry either
        log.exception("fetching %s", entry.url)
        return PageOutcome(reason=f"fetch: unexpected {type(exc).__name__}: {exc}")
    try:
        with EXTRACTING:
            article, canonical = article_from_page(entry, fetched, selector=selector, strip=strip)
        return PageOutcome(article=article, canonical=canonical, http=fetched.status,
                           validators=(fetched.etag, fetched.last_modified))
    except ExtractError as exc:
        return PageOutcome(reason=str(exc), http=fetched.status)
    except Exception as exc:  # a bug or a pathological page must not lose the entry
        log.exception("extracting %s", entry.url)
        return PageOutcome(reason=f"extract: unexpected {type(exc).__name__}: {exc}", http=fetched.status)
