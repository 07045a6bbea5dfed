"""Every Redis key and script feedstream owns. Nothing else talks to Redis.

:class:`Store` is made of one mixin per key family (a module each here); the Lua
scripts are files under ``lua/``, each with a header naming its KEYS and ARGV.

Keys, under the ``prefix`` namespace (default ``feedstream``):

- ``{p}:due``                 zset, feed name -> epoch of its next poll                       (schedule.py)
- ``{p}:polling:{name}``      string, held while a poll of the feed runs                      (schedule.py)
- ``{p}:feed:{name}``         hash, the feed's status and HTTP validators                     (feeds.py)
- ``{p}:seen:{name}``         zset, hashed item GUID (12 bytes) -> last time the feed listed it (epoch seconds)
                                                                                              (seen.py)
- ``{p}:marks:{name}``        hash, hashed item GUID (12 bytes) -> the entry's 12-byte mark (updated time, digest
  of its words), for the entries the feed lists now; expires with the update window         (seen.py)
- ``{p}:claim:url:{key}``     string, canonical-URL claim -> article id                       (publish.py)
- ``{p}:claim:text:{key}``    string, normalised-text claim -> article id                     (publish.py)
- ``{p}:claim:mid:{key}``     string, newsletter Message-ID claim -> article id               (publish.py)
- ``{p}:nd:b:{period}:{bucket}`` string, LSH band records (6-byte band probe + 12-byte article id) whose
  digest starts with the bucket's 1, 2 or 4 hex digits, see lua/publish.lua                   (publish.py)
- ``{p}:nd:sig:{id}``         string, "<cluster id>|<packed MinHash>" (expires with the window) (publish.py)
- ``{p}:boiler:{name}``       hash, paragraph fingerprint (8 bytes) -> distinct articles of the feed that carried
  it, for fingerprints seen in at least two                                                   (boilerplate.py)
- ``{p}:boiler-recent:{name}`` string, the feed's latest once-seen fingerprints, 8 bytes each (boilerplate.py)
- ``{p}:host:{host}:not_before``  string, epoch before which nobody fetches from the host (Retry-After) (hosts.py)
- ``{p}:host:{host}:inflight``    zset, request token -> lease expiry: the per-host semaphore (hosts.py)
- ``{p}:host:{host}:wake``        list, one token per released slot, BLPOPped by a request waiting for one (hosts.py)
- ``{p}:host:{host}:robots``      string, the host's robots.txt body (empty: allow all), with a TTL (hosts.py)
- ``{p}:counters``            hash, monotonically increasing event counts                     (counters.py)
- ``{p}:http``                hash, ``{kind}:{status}`` -> responses seen (kind: feed, page)  (counters.py)
- ``{p}:delay``               hash, publish-delay histogram: bucket upper bound -> count, ``sum``, ``count``
                                                                                              (counters.py)
- ``{p}:heartbeats``          hash, process -> epoch of its last sign of life                 (counters.py)
- ``{p}:imap:{name}``         hash, an IMAP source's ``uidvalidity`` and ``last_uid``         (mail.py)
- ``{p}:sources``             hash, source name -> its record (spec, managed by, paused) as JSON (sources.py)
- ``{p}:sources:version``     string, raised by every change to the sources                   (sources.py)
- ``{p}:sources:defaults``    string, the feeds file's ``[defaults]`` rules as JSON            (sources.py)
- ``{p}:filtered``            hash, JSON ``[source, rule]`` -> entries the source's rules dropped (filtered.py)
- ``{p}:outbox``              zset, pending entry token (hashed GUID) -> epoch of its next sweeper check
- ``{p}:outbox:job``          hash, pending entry token -> "<RQ job id>|<times re-queued>"
- ``{p}:outbox:entry``        hash, pending entry token -> the entry's JSON; all three renewed to a 30-day TTL
  on each write, each entry gone once published or decided                                    (outbox.py)
- ``{p}:outbox:sweep``        string, held (PX) by the process whose turn it is to sweep      (outbox.py)
- ``{p}:probe``               string, a health check's probe write (EX 60)                   (counters.py)
- ``{p}:ver:{id}``            string, a published article's latest version, what a re-check compares against
  (version, last check, title and paragraph digests, page validators), packed; expires with the update window
                                                                                              (updates.py)
- ``{p}:latest:{id}``         string, "<version>|<stream id>|<stream>" of an article's latest update event
                                                                                              (updates.py)
- ``<stream>:updates``        the update events' stream (FEEDSTREAM_UPDATES=separate), beside the stream
- ``{p}:websub:{name}``, ``{p}:websub:names``, ``{p}:websub:due``: WebSub subscriptions          (websub.py)
- ``{p}:hub:subs``, ``{p}:hub:cursor``, ``{p}:hub:lock``, ``{p}:hub:retry``: our hub for feeds out  (hub.py)
- the stream itself (``articles`` by default) is not prefixed: it is the contract.            (stream.py)
"""

from __future__ import annotations

from worker.models import PublishResult
from worker.store.base import NEAR_MODES
from worker.store.connection import connect, connect_quick
from worker.store.feeds import FeedStore
from worker.store.hosts import HostStore
from worker.store.hub import HubStore
from worker.store.mail import MailStore
from worker.store.outbox import Pending
from worker.store.publish import NearKey, PublishArgs, PublishRequest, PublishStore
from worker.store.schedule import ScheduleStore
from worker.store.sources import SourceStore
from worker.store.stream import StreamStore
from worker.store.updates import UpdateRequest, UpdateResult, UpdateStore, VersionRecord
from worker.store.websub import WebSubStore

__all__ = [
    "NEAR_MODES",
    "NearKey",
    "Pending",
    "PublishArgs",
    "PublishRequest",
    "PublishResult",
    "Store",
    "UpdateRequest",
    "UpdateResult",
    "VersionRecord",
    "connect",
    "connect_quick",
]


class Store(ScheduleStore, FeedStore, HostStore, PublishStore, StreamStore, MailStore, UpdateStore,
            SourceStore, WebSubStore, HubStore):
    """Feed state, deduplication claims, the stream and counters, over one Redis client."""
