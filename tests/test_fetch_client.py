"""worker.fetch.client (the HTTP client) against real servers on loopback: well-behaved ones (tests.site) and
misbehaving raw-socket ones started here. Nothing is mocked.

Connections are observed two ways: listeners count what they accept, and an audit
hook records every ``socket.connect`` this process makes, so "refused before
connecting" is checked even for addresses we must never send traffic to.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import http.server
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import brotli
import pytest

from tests.site import Site
from worker.errors import BlockedAddress, DeadlineExceeded, FetchError, NotModified, TooLarge
from worker.fetch.client import HttpClient, HttpSettings, parse_retry_after
from worker.fetch.deadline import Deadline

GiB = 1 << 30
MiB = 1 << 20

# -- observing connects -------------------------------------------------------------------

_recording: list[tuple[str, int]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _recording is not None:
        address = args[1]
        _recording.append((str(address[0]), int(address[1])))


sys.addaudithook(_audit)


@pytest.fixture
def connects() -> Iterator[list[tuple[str, int]]]:
    """(host, port) of every connect this process attempted during the test."""
    global _recording
    _recording = []
    try:
        yield _recording
    finally:
        _recording = None


# -- servers --------------------------------------------------------------------------------

class RawServer:
    """A TCP listener whose every connection is answered by ``handler(conn, server)`` in a thread."""

    def __init__(self, handler: Callable[[socket.socket, RawServer], None] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, port))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.handler = handler or hold_silently
        self.accepts = 0
        self.sent = 0
        self.stopped = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepts += 1
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            read_request(conn)
            self.handler(conn, self)
        except OSError:
            pass  # the client hung up: that is what most of these tests expect
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self._conns:
            conn.close()


def read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.settimeout(None)
    return data


def hold_silently(conn: socket.socket, server: RawServer) -> None:
    """Accept, read the request, never answer."""
    conn.settimeout(0.1)
    while not server.stopped.is_set():
        try:
            if not conn.recv(1):
                return
        except TimeoutError:
            continue


def trickle(data: bytes, server: RawServer, conn: socket.socket, every: float = 0.5) -> None:
    for i in range(len(data)):
        if server.stopped.is_set():
            return
        server.send(conn, data[i:i + 1])
        time.sleep(every)


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[socket.socket, RawServer], None] | None = None, **kw: Any) -> RawServer:
        server = RawServer(handler, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_site() -> Iterator[Site]:
    server = Site().start()  # one for the module: stopping a Site takes half a second
    yield server
    server.stop()


@pytest.fixture
def site(shared_site: Site) -> Site:
    shared_site.routes.clear()
    shared_site.requests.clear()
    return shared_site


def redirect(location: str, status: int = 302, delay: float = 0.0) -> Callable[[Any], None]:
    def handler(request: Any) -> None:
        time.sleep(delay)
        request.send_response(status)
        request.send_header("Location", location)
        request.send_header("Content-Length", "0")
        request.end_headers()
    return handler


# -- clients --------------------------------------------------------------------------------

@pytest.fixture
def client() -> Iterator[HttpClient]:
    """Allows loopback, like local feeds and the other tests do."""
    with HttpClient(HttpSettings(allow_private=True, deadline=5)) as c:
        yield c


@pytest.fixture
def guarded() -> Iterator[HttpClient]:
    """The production policy: private addresses refused."""
    with HttpClient(HttpSettings(deadline=2)) as c:
        yield c


class OnePortAllowed(HttpClient):
    """The production policy, except that 127.0.0.1:<port> counts as a public server."""

    def __init__(self, settings: HttpSettings, port: int) -> None:
        super().__init__(settings)
        self.port = port

    def _address_allowed(self, ip: str, port: int) -> bool:
        return (ip == "127.0.0.1" and port == self.port) or super()._address_allowed(ip, port)


# -- well-behaved servers -------------------------------------------------------------------

def test_plain_200_with_headers(site: Site, client: HttpClient) -> None:
    url = site.add("/feed.xml", "<rss/>", content_type="application/rss+xml",
                   headers={"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
                            "X-Mixed-Case": "yes"})

    fetched = client.get(url, accept="application/rss+xml")

    assert (fetched.status, fetched.body, fetched.url, fetched.requested_url) == (200, b"<rss/>", url, url)
    assert fetched.redirects == ()
    assert fetched.etag == '"v1"'
    assert fetched.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert fetched.content_type == "application/rss+xml"
    assert fetched.headers["x-mixed-case"] == "yes"
    assert all(name == name.lower() for name in fetched.headers)
    sent = site.hits("/feed.xml")[0].headers
    assert sent["user-agent"] == HttpSettings().user_agent
    assert sent["accept"] == "application/rss+xml"
    assert sent["accept-encoding"] == "gzip, deflate, br"
    assert sent["host"] == url.split("/")[2]
    assert "if-none-match" not in sent and "if-modified-since" not in sent


@pytest.mark.parametrize("encoding, encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("br", brotli.compress),
])
def test_compressed_bodies_are_decoded(site: Site, client: HttpClient, encoding: str,
                                       encode: Callable[[bytes], bytes]) -> None:
    text = b"<p>All the news that fits.</p>\n" * 5000
    url = site.add("/page", encode(text), headers={"Content-Encoding": encoding})

    fetched = client.get(url)

    assert fetched.body == text
    assert fetched.headers["content-encoding"] == encoding


def test_conditional_get_raises_not_modified_and_sends_validators(site: Site, client: HttpClient) -> None:
    by_etag = site.add("/etag", "x", headers={"ETag": '"abc"'})
    by_date = site.add("/date", "x", headers={"Last-Modified": "Tue, 02 Jan 2024 10:00:00 GMT"})

    with pytest.raises(NotModified) as caught:
        client.get(by_etag, etag='"abc"', last_modified="Tue, 02 Jan 2024 10:00:00 GMT")
    assert caught.value.status == 304 and caught.value.url == by_etag
    sent = site.hits("/etag")[0].headers
    assert sent["if-none-match"] == '"abc"'
    assert sent["if-modified-since"] == "Tue, 02 Jan 2024 10:00:00 GMT"

    with pytest.raises(NotModified):
        client.get(by_date, last_modified="Tue, 02 Jan 2024 10:00:00 GMT")
    assert site.hits("/date")[0].headers["if-modified-since"] == "Tue, 02 Jan 2024 10:00:00 GMT"

    assert client.get(by_etag, etag='"old"').body == b"x"  # a stale validator gets the body


def test_redirect_chain_is_followed_and_recorded(site: Site, client: HttpClient) -> None:
    final = site.add("/final", "here")
    site.handle("/r3", redirect(final, 308))
    site.handle("/r2", redirect("r3", 301))  # relative to /r2
    start = site.handle("/r1", redirect("/r2?from=r1", 302))

    fetched = client.get(start)

    assert fetched.body == b"here"
    assert (fetched.url, fetched.requested_url) == (final, start)
    assert fetched.redirects == ((302, site.url("/r2?from=r1")), (301, site.url("/r3")), (308, final))


def test_redirect_limit(site: Site) -> None:
    site.add("/end", "ok")
    for i in range(5):
        site.handle(f"/c{i}", redirect(f"/c{i + 1}" if i < 4 else "/end"))
    with HttpClient(HttpSettings(allow_private=True, max_redirects=5)) as exact:
        assert len(exact.get(site.url("/c0")).redirects) == 5
    with HttpClient(HttpSettings(allow_private=True, max_redirects=4)) as strict, \
            pytest.raises(FetchError, match=r"too many redirects \(5\)"):
        strict.get(site.url("/c0"))


def test_redirect_loop_is_an_error(site: Site, client: HttpClient) -> None:
    site.handle("/a", redirect("/b"))
    start = site.handle("/b", redirect("/a"))

    with pytest.raises(FetchError) as caught:
        client.get(start)

    assert str(caught.value).startswith("fetch: too many redirects (6)")
    assert not caught.value.transient
    assert len(site.requests) == 6  # the first request and five followed redirects


def test_404_is_a_verdict(site: Site, client: HttpClient) -> None:
    url = site.url("/missing")
    with pytest.raises(FetchError) as caught:
        client.get(url)
    assert (caught.value.status, caught.value.transient, caught.value.retry_after) == (404, False, None)
    assert str(caught.value) == f"fetch: HTTP 404 Not Found from {url}"


@pytest.mark.parametrize("status, transient", [
    (400, False), (401, False), (403, False), (410, False), (451, False), (300, False),
    (408, True), (425, True), (429, True), (500, True), (502, True), (504, True), (599, True),
])
def test_status_transience(site: Site, client: HttpClient, status: int, transient: bool) -> None:
    url = site.add("/s", "no", status=status)
    with pytest.raises(FetchError) as caught:
        client.get(url)
    assert (caught.value.status, caught.value.transient) == (status, transient)
    assert not isinstance(caught.value, NotModified)


def test_503_retry_after_seconds(site: Site, client: HttpClient) -> None:
    url = site.add("/busy", "later", status=503, headers={"Retry-After": "120"})
    with pytest.raises(FetchError) as caught:
        client.get(url)
    assert (caught.value.status, caught.value.transient, caught.value.retry_after) == (503, True, 120.0)


def test_429_retry_after_http_date(site: Site, client: HttpClient) -> None:
    when = email.utils.formatdate(time.time() + 90, usegmt=True)
    url = site.add("/slow-down", "later", status=429, headers={"Retry-After": when})
    with pytest.raises(FetchError) as caught:
        client.get(url)
    assert caught.value.transient
    assert caught.value.retry_after is not None and 85 <= caught.value.retry_after <= 90


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0) == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111700.0) == 77.0
    for junk in (None, "", "soon", "-5", "1.5", "12 34", "9" * 40):
        assert parse_retry_after(junk, now) is None


# -- misbehaving servers --------------------------------------------------------------------

def _assert_deadline(call: Callable[[], object], deadline: float) -> DeadlineExceeded:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        call()
    elapsed = time.monotonic() - started
    assert deadline - 0.1 <= elapsed < deadline + 1, elapsed
    assert caught.value.transient
    return caught.value


def test_trickling_headers_hit_the_deadline(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda conn, srv: trickle(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: y\r\n" * 100, srv, conn))
    with HttpClient(HttpSettings(allow_private=True, deadline=2)) as c:
        error = _assert_deadline(lambda: c.get(server.url("/slow")), 2)
    assert server.sent >= 3  # it really was trickling, not silent
    assert str(error).startswith("fetch: no complete response within 2 s")


def test_trickling_body_hits_the_deadline_and_the_connection_is_not_pooled(
        raw: Callable[..., RawServer]) -> None:
    def handler(conn: socket.socket, srv: RawServer) -> None:
        # No Content-Length: the body ends when the connection does, so a cut
        # connection would look like a complete (short) body.
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        trickle(b"x" * 100, srv, conn)

    server = raw(handler)
    with HttpClient(HttpSettings(allow_private=True, deadline=2)) as c:
        _assert_deadline(lambda: c.get(server.url("/drip")), 2)
        pool = c._pool.connection_from_url(server.url())
        pooled = list(pool.pool.queue) if pool.pool is not None else []
        assert all(conn is None or conn.sock is None for conn in pooled)


def test_a_cut_connection_is_closed_when_handed_back_to_the_pool(site: Site, client: HttpClient) -> None:
    """The watchdog may fire just as a body ends and urllib3 hands the connection back:
    the pool must close it, not keep it. White-box, because that race cannot be timed
    from outside; the control half shows an uncut connection does stay pooled."""
    url = site.add("/keep-alive", "x")
    client.get(url)
    pool = client._pool.connection_from_url(url)

    for cut in (False, True):
        conn = pool._get_conn()
        assert conn.sock is not None  # the live keep-alive connection from the last get
        fetch = Deadline(60)
        client._local.fetch = fetch
        try:
            fetch.watch(conn, conn.sock)
            if cut:
                fetch._expire()
            pool._put_conn(conn)
        finally:
            client._local.fetch = None
            fetch.finish()
        assert (conn.sock is None) is cut


def test_one_watchdog_serves_every_deadline_in_time_order() -> None:
    """Deadlines set out of order expire in order, a finished one never does, and no thread is
    started per download."""
    threads_before = threading.active_count()
    later, cancelled, sooner = Deadline(0.4), Deadline(0.2), Deadline(0.1)
    cancelled.finish()
    time.sleep(0.15)
    assert sooner.expired and not later.expired
    time.sleep(0.4)
    assert later.expired and not cancelled.expired
    assert threading.active_count() <= max(threads_before, 1) + 1  # at most the one watchdog, once


def test_silent_server_hits_the_deadline(raw: Callable[..., RawServer]) -> None:
    server = raw(hold_silently)
    with HttpClient(HttpSettings(allow_private=True, deadline=2)) as c:
        _assert_deadline(lambda: c.get(server.url()), 2)
    assert server.accepts == 1


def test_deadline_covers_all_redirects(site: Site) -> None:
    for i in range(10):
        site.handle(f"/hop{i}", redirect(f"/hop{i + 1}", delay=0.3))
    with HttpClient(HttpSettings(allow_private=True, deadline=1, max_redirects=20)) as c:
        _assert_deadline(lambda: c.get(site.url("/hop0")), 1)
    assert len(site.requests) >= 3  # each hop alone was well within the deadline
    time.sleep(0.4)  # let the last handler fail on the cut connection within this test


@functools.cache
def bomb(encoding: str) -> bytes:
    """A valid compressed body that inflates to a lot of zeros, built in well under a second.

    gzip and deflate: 1 GiB. After a full flush deflate starts afresh, so every 1 MiB
    block compresses to the same bytes: compress one, repeat it, add the checksums.
    br: 256 MiB, compressed for real (brotli squeezes it to a few hundred bytes).
    """
    zeros = bytes(MiB)
    if encoding == "br":
        compressor = brotli.Compressor(quality=5)
        parts = [compressor.process(zeros) for _ in range(256)]
        return b"".join([*parts, compressor.finish()])
    raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw_deflate.compress(zeros) + raw_deflate.flush(zlib.Z_FULL_FLUSH)
    stream = block * (GiB // MiB) + b"\x03\x00"  # then an empty final block
    if encoding == "deflate":
        adler = 1
        for _ in range(GiB // MiB):
            adler = zlib.adler32(zeros, adler)
        return b"\x78\xda" + stream + struct.pack(">I", adler)
    crc = 0
    for _ in range(GiB // MiB):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + stream + struct.pack("<II", crc, GiB & 0xFFFFFFFF)


def test_bombs_are_really_bombs() -> None:
    assert len(zlib.decompressobj(31).decompress(bomb("gzip"), 50 * MiB)) == 50 * MiB
    assert len(zlib.decompressobj().decompress(bomb("deflate"), 50 * MiB)) == 50 * MiB
    inflated = brotli.Decompressor().process(bomb("br"), output_buffer_limit=50 * MiB)
    assert len(inflated) >= 50 * MiB  # brotli's limit is approximate


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compression_bomb_is_too_large_with_bounded_memory(raw: Callable[..., RawServer],
                                                           encoding: str) -> None:
    payload = bomb(encoding)
    assert len(payload) < 2 * MiB

    def handler(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\n"
                       b"Content-Length: %d\r\n\r\n" % (encoding.encode(), len(payload)))
        srv.send(conn, payload)
        hold_silently(conn, srv)

    server = raw(handler)
    with HttpClient(HttpSettings(allow_private=True, deadline=10)) as c:
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(TooLarge) as caught:
                c.get(server.url("/bomb"))
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert str(caught.value).startswith("fetch: body larger than 10 MiB")
    assert elapsed < 5
    assert peak < 64 * MiB, peak  # the cap plus working buffers, nowhere near the inflated size


def test_endless_plain_body_is_too_large_quickly(raw: Callable[..., RawServer]) -> None:
    def handler(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n")
        block = b"a" * (64 * 1024)
        for _ in range(GiB // len(block)):
            srv.send(conn, block)

    server = raw(handler)
    with HttpClient(HttpSettings(allow_private=True, deadline=10, max_bytes=2 * MiB)) as c:
        started = time.monotonic()
        with pytest.raises(TooLarge, match="body larger than 2 MiB"):
            c.get(server.url())
        assert time.monotonic() - started < 3
    assert server.sent < 64 * MiB


def test_content_length_over_the_cap_is_refused_up_front(raw: Callable[..., RawServer]) -> None:
    def handler(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GiB)
        hold_silently(conn, srv)  # no body at all: only the header can trigger the refusal

    server = raw(handler)
    with HttpClient(HttpSettings(allow_private=True, deadline=5)) as c:
        started = time.monotonic()
        with pytest.raises(TooLarge, match="Content-Length 1073741824"):
            c.get(server.url())
        assert time.monotonic() - started < 1


def test_garbage_and_broken_bodies_become_fetch_errors(raw: Callable[..., RawServer],
                                                       client: HttpClient) -> None:
    nonsense = raw(lambda conn, srv: srv.send(conn, b"HELLO THERE\r\n\r\n"))
    with pytest.raises(FetchError) as caught:
        client.get(nonsense.url())
    assert caught.value.transient and caught.value.status is None

    def bad_gzip(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n"
                       b"this is not gzip....")
    broken = raw(bad_gzip)
    with pytest.raises(FetchError, match="cannot decode") as caught:
        client.get(broken.url())
    assert not caught.value.transient

    def cut_short(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
    short = raw(cut_short)
    with pytest.raises(FetchError) as caught:
        client.get(short.url())
    assert caught.value.transient


def test_connection_refused_is_transient(client: HttpClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the fetch: nobody listens
    with pytest.raises(FetchError, match="connection refused") as caught:
        client.get(f"http://127.0.0.1:{port}/")
    assert caught.value.transient and not isinstance(caught.value, BlockedAddress)


def test_unresolvable_host_is_transient(client: HttpClient) -> None:
    with pytest.raises(FetchError, match="cannot resolve") as caught:
        client.get("http://no-such-host.invalid/feed")
    assert caught.value.transient


# -- SSRF guard -----------------------------------------------------------------------------

def _assert_untouched(server: RawServer, connects: list[tuple[str, int]]) -> None:
    time.sleep(0.1)  # a connection that did go out would have been accepted by now
    assert server.accepts == 0
    assert connects == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1", "0x7f.0.0.1"])
def test_loopback_refused_before_connecting(raw: Callable[..., RawServer], guarded: HttpClient,
                                            connects: list[tuple[str, int]], host: str) -> None:
    server = raw(hold_silently)
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1") as caught:
        guarded.get(server.url("/", host=host))
    assert "loopback" in str(caught.value)
    assert not caught.value.transient
    _assert_untouched(server, connects)


def test_ipv6_loopback_refused_before_connecting(raw: Callable[..., RawServer], guarded: HttpClient,
                                                 connects: list[tuple[str, int]]) -> None:
    try:
        server = raw(hold_silently, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with pytest.raises(BlockedAddress, match=r"::1 \(loopback\)"):
        guarded.get(server.url("/", host="[::1]"))
    _assert_untouched(server, connects)


@pytest.mark.parametrize("url, address", [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://10.0.0.1/", "10.0.0.1"),
    ("http://100.64.0.1/", "100.64.0.1"),
    ("http://192.168.1.1:8080/", "192.168.1.1"),
    ("https://172.16.0.1/", "172.16.0.1"),
    ("http://0.0.0.0/", "0.0.0.0"),
    ("http://224.0.0.1/", "224.0.0.1"),
    ("http://[fd00::1]/", "fd00::1"),
    ("http://[fe80::1]/", "fe80::1"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
    ("http://[::ffff:a00:1]/", "::ffff:10.0.0.1"),
    ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1::"),
    ("http://[::]/", "::"),
])
def test_private_literals_refused_before_connecting(guarded: HttpClient, connects: list[tuple[str, int]],
                                                    url: str, address: str) -> None:
    with pytest.raises(BlockedAddress) as caught:
        guarded.get(url)
    assert address in str(caught.value)
    assert caught.value.url == url
    assert connects == []


@pytest.mark.parametrize("url, scheme", [
    ("file:///etc/passwd", "file"),
    ("ftp://example.com/feed.xml", "ftp"),
    ("data:text/plain,hello", "data"),
    ("gopher://example.com/", "gopher"),
])
def test_other_schemes_refused(client: HttpClient, connects: list[tuple[str, int]],
                               url: str, scheme: str) -> None:
    with pytest.raises(BlockedAddress) as caught:
        client.get(url)  # even with private addresses allowed
    assert str(caught.value) == f"fetch: scheme '{scheme}' is not allowed"
    assert connects == []


def test_redirect_from_allowed_host_to_inside_is_refused(site: Site, raw: Callable[..., RawServer],
                                                         connects: list[tuple[str, int]]) -> None:
    inside = raw(hold_silently)
    site.add("/ok", "public content")
    site.handle("/to-inside", redirect(inside.url("/admin")))
    site.handle("/to-mapped", redirect(f"http://[::ffff:127.0.0.1]:{inside.port}/admin"))
    site.handle("/to-file", redirect("file:///etc/passwd"))
    site_port = int(site.base.rsplit(":", 1)[1])

    with OnePortAllowed(HttpSettings(deadline=3), site_port) as c:
        assert c.get(site.url("/ok")).body == b"public content"  # the site itself is reachable
        for path, message in [("/to-inside", "127.0.0.1 (loopback)"),
                              ("/to-mapped", "::ffff:127.0.0.1 (loopback"),
                              ("/to-file", "scheme 'file' is not allowed")]:
            with pytest.raises(BlockedAddress, match=re.escape(message)):
                c.get(site.url(path))

    assert len(site.hits("/to-inside")) == len(site.hits("/to-mapped")) == 1
    _assert_untouched(inside, [c for c in connects if c != ("127.0.0.1", site_port)])
    assert connects  # the allowed site itself was connected to


# -- TLS: connecting to the vetted IP must not weaken certificate checks ------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_checks_the_hostname_not_the_vetted_ip(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)  # type: ignore[assignment]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    class TrustingTestCA(HttpClient):
        _ca_certs = str(cert)

    try:
        with TrustingTestCA(HttpSettings(allow_private=True, deadline=5)) as c:
            assert c.get(f"https://localhost:{port}/").body == b"secure"
            assert server_names == ["localhost"]
            with pytest.raises(FetchError, match="TLS certificate not valid"):
                c.get(f"https://127.0.0.1:{port}/")  # the certificate names localhost only
        with HttpClient(HttpSettings(allow_private=True, deadline=5)) as default_trust, \
                pytest.raises(FetchError, match="TLS certificate not valid"):
            default_trust.get(f"https://localhost:{port}/")
    finally:
        server.shutdown()
        server.server_close()
