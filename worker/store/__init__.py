"""Every Redis key and script feedstream owns. Nothing else talks to Redis.

:class:`Store` is made of one mixin per key family (a module each here); the Lua
scripts are files under ``lua/``, each with a header naming its KEYS and ARGV.

Keys, under the ``prefix`` namespace (default ``feedstream``). Every family has a TTL or a bound
(issue 18; tests/test_key_families.py lists every key a real burst writes and holds this map to it).
Q: on the queues' Redis (``REDIS_URL``); P: on the publishing Redis (``FEEDSTREAM_PUBLISH_REDIS_URL``,
by default the same one).

- ``{p}:due``                 Q zset, feed name -> epoch of its next poll. Bound: one member per configured source
                                                                                              (schedule.py)
- ``{p}:polling:{name}``      Q string, held while a poll of the feed runs. TTL: the poll batch's timeout (schedule.py)
- ``{p}:feed:{name}``         Q hash, the feed's status and HTTP validators. Bound: one per source configured
  (about 420 bytes each); deleted with its source                                             (feeds.py)
- ``{p}:seen:{name}``         Q zset, hashed item GUID (12 bytes) -> last time the feed listed it (epoch seconds).
  TTL: 90 days, renewed by each poll; members unlisted for 90 days go at each poll         (seen.py)
- ``{p}:marks:{name}``        Q hash, hashed item GUID (12 bytes) -> the entry's 12-byte mark (updated time, digest
  of its words), for the entries the feed lists now. TTL: the update window               (seen.py)
- ``{p}:sources``             Q hash, source name -> its record (spec, managed by, paused) as JSON. Bound: one
  field per source                                                                            (sources.py)
- ``{p}:sources:version``     Q string, raised by every change to the sources. Bound: one key (sources.py)
- ``{p}:sources:defaults``    Q string, the feeds file's ``[defaults]`` rules as JSON. Bound: one key (sources.py)
- ``{p}:filtered``            Q hash, JSON ``[source, rule]`` -> entries the source's rules dropped. Bound: one
  field per source and rule                                                                   (filtered.py)
- ``{p}:host:{host}:not_before``  Q string, epoch before which nobody fetches from the host (Retry-After).
  TTL: until then                                                                             (hosts.py)
- ``{p}:host:{host}:inflight``    Q zset, request token -> lease expiry: the per-host semaphore.
  TTL: the lease + 60 s                                                                       (hosts.py)
- ``{p}:host:{host}:wake``        Q list, one token per released slot, BLPOPped by a request waiting for one.
  TTL: seconds; at most the host's slots                                                      (hosts.py)
- ``{p}:host:{host}:robots``      Q string, the host's robots.txt body (empty: allow all). TTL: robots_ttl (hosts.py)
- ``{p}:http``                Q hash, ``{kind}:{status}`` -> responses seen. Bound: one field per status seen
                                                                                              (counters.py)
- ``{p}:delay``               Q hash, publish-delay histogram: bucket upper bound -> count, ``sum``, ``count``.
  Bound: 14 fields                                                                            (counters.py)
- ``{p}:heartbeats``          Q hash, process -> epoch of its last sign of life. Bound: one field per process name
                                                                                              (counters.py)
- ``{p}:imap:{name}``         Q hash, an IMAP source's ``uidvalidity`` and ``last_uid``. Bound: one per IMAP
  source; expires after its source is removed                                                (mail.py)
- ``{p}:outbox``              Q zset, pending entry token (hashed GUID) -> epoch of its next sweeper check
- ``{p}:outbox:job``          Q hash, pending entry token -> "<RQ job id>|<times re-queued>"
- ``{p}:outbox:entry``        Q hash, pending entry token -> the entry's JSON. All three: TTL 30 days, renewed on
  each write; each entry gone once published or decided (by the publish script, or right after it when
  the publishing Redis is another)                                                            (outbox.py)
- ``{p}:outbox:sweep``        Q string, held (PX) by the process whose turn it is to sweep. TTL: the turn
                                                                                              (outbox.py)
- ``{p}:probe``               Q and P string, a health check's probe write. TTL: 60 s           (counters.py)
- ``{p}:counters``            Q and P hash, monotonically increasing event counts (the publish script's on P).
  Bound: one field per event kind                                                             (counters.py)
- ``{p}:claims:{period}:{shard}`` P hash, claim record (kind letter + the key's 12-byte digest) -> article id,
  in the claim period's hash of the digest's first 3, 4 or 5 hex digits (see lua/publish.lua). TTL: the claim TTL
  (dedupe_days: 90 days) past the period's end                                     (publish.py)
- ``{p}:claim:{url,text,mid}:{key}`` P string, a claim of the form before issue 18 -> article id; no longer written,
  read until it expires. TTL: as set then (90 days)                                           (publish.py)
- ``{p}:nd:b:{period}:{bucket}`` P string, LSH band records (6-byte band probe + 12-byte article id) whose
  digest starts with the bucket's 1, 2 or 4 hex digits (``:{n}`` after 4 digits: the bucket's n-th further
  chunk), see lua/publish.lua. TTL: the near window past the period's end                    (publish.py)
- ``{p}:nd:sig:{id}``         P string, "<cluster id>|<packed MinHash>". TTL: the near window  (publish.py)
- ``{p}:boiler-count:{name}:{period}`` P hash, paragraph fingerprint (8 bytes) -> articles of the feed and the
  boilerplate period that carried it, for fingerprints seen in at least two. TTL: 30 days from the period's
  start; at most BOILERPLATE_CAP fields past which those seen twice go                     (boilerplate.py)
- ``{p}:boiler-seen:{name}:{period}`` P string, the feed's once-seen fingerprints of the period, 8 bytes each.
  TTL: as boiler-count; at most 8 x BOILERPLATE_RECENT bytes                                (boilerplate.py)
- ``{p}:boiler:{name}``, ``{p}:boiler-recent:{name}`` P hash and string of the form before issue 18; no longer
  written, read until they expire. TTL: as set then (30 days)                                 (boilerplate.py)
- ``{p}:out:all``, ``{p}:out:feed:{name}``, ``{p}:out:tag:{tag}`` P stream, the article stream's ids (field
  ``i``: the article's id) of all articles, a feed's, a tag's: the feeds-out indexes. TTL: the claim TTL past
  the last article; capped like the stream (MAXLEN ~ FEEDSTREAM_STREAM_MAXLEN)                   (stream.py)
- ``{p}:ver:{id}``            P string, a published article's latest version, what a re-check compares against
  (version, last check, title and paragraph digests, page validators), packed. TTL: the update window
                                                                                              (updates.py)
- ``{p}:latest:{id}``         P string, "<version>|<stream id>|<stream>" of an article's latest update event.
  TTL: the claim TTL (90 days)                                                                 (updates.py)
- ``<stream>:updates``        P the update events' stream (FEEDSTREAM_UPDATES=separate), beside the stream.
  Bound: MAXLEN ~ FEEDSTREAM_STREAM_MAXLEN entries                                           (updates.py)
- ``{p}:out:since``           P string, the first stream id published with feeds-out indexes. Bound: one key
                                                                                              (stream.py)
- ``{p}:websub:{name}``       Q hash, a source's WebSub subscription. TTL: the lease plus a month, renewed
  by every write                                                                              (websub.py)
- ``{p}:websub:names``        Q set, the sources with a subscription hash. Bound: one member per source (websub.py)
- ``{p}:websub:due``          Q zset, source name -> when the manager looks at its subscription next. Bound: one
  member per source                                                                           (websub.py)
- ``{p}:hub:subs``            Q hash, our hub's subscriptions. Bound: MAX_SUBSCRIPTIONS fields   (hub.py)
- ``{p}:hub:cursor``          Q string, the stream id up to which new articles were pushed. Bound: one key
                                                                                              (hub.py)
- ``{p}:hub:lock``            Q string, the ``serve`` process delivering. TTL: its turn          (hub.py)
- ``{p}:hub:retry``           Q zset, failed deliveries -> when to try again. Bound: one member per failed
  delivery, each retried at most MAX_ATTEMPTS times                                           (hub.py)
- the stream itself (``articles`` by default) is not prefixed: it is the contract. P. Bound: MAXLEN ~
  FEEDSTREAM_STREAM_MAXLEN entries (100,000)                                                  (stream.py)
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
