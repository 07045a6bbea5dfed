"""The one HTTP client for feeds and pages.

Every download goes through :class:`HttpClient`, which bounds what a hostile or
broken server can do to a worker:

- a wall-clock deadline for the whole download, redirects included, enforced by
  a watchdog that cuts the socket (per-read timeouts alone let a trickling server
  hold a worker forever);
- a cap on the decompressed body, enforced while reading;
- an SSRF guard that vets the address actually connected to, on every hop, after
  resolving the name itself, so neither redirects nor DNS rebinding reach inside;
- conditional GET, with 304 raised as :class:`NotModified`.

Every failure comes out as a :class:`FetchError` (or a subclass), never as a raw
urllib3, socket or ssl exception. Which addresses are public is said in
``addresses.py``; the watchdog that enforces the deadline is ``deadline.py``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, HTTPError, LocationValueError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.connection import allowed_gai_family

from worker.errors import BlockedAddress, DeadlineExceeded, FetchError, NotModified, TooLarge
from worker.fetch.addresses import is_public_address, non_public_reason
from worker.fetch.deadline import Deadline
from worker.models import Fetched

__all__ = ["HttpClient", "HttpSettings", "parse_retry_after"]

_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT = frozenset({408, 425, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})

try:
    import brotli  # noqa: F401  (only probing: urllib3 decodes br when it is importable)

    _ACCEPT_ENCODING = "gzip, deflate, br"
except ImportError:  # pragma: no cover - brotli is a declared dependency
    _ACCEPT_ENCODING = "gzip, deflate"

try:
    import certifi

    _DEFAULT_CA_CERTS: str | None = certifi.where()
except ImportError:  # pragma: no cover - trafilatura pulls certifi in
    _DEFAULT_CA_CERTS = None


@dataclass(frozen=True)
class HttpSettings:
    """Limits and identity for every download."""

    deadline: float = 20.0  # wall-clock seconds for the whole download, all redirects included
    max_bytes: int = 10 * 1024 * 1024  # cap on the decompressed body, enforced while reading
    max_redirects: int = 5
    allow_private: bool = False  # FEEDSTREAM_ALLOW_PRIVATE
    user_agent: str = "feedstream/0.1 (+https://github.com/feedstream/feedstream)"
    connect_timeout: float = 10.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait according to a Retry-After header, or None when absent or unreadable.

    Accepts delta-seconds (``"120"``) or an HTTP date; a date in the past gives 0.
    ``now`` (Unix time) defaults to the current time.
    """
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,12}", value):
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# -- urllib3 wiring ---------------------------------------------------------------------

class _GuardedConnection(HTTPConnection):
    """Opens its socket through the client: resolve, vet every address, then connect."""

    _client: ClassVar[HttpClient]

    def _new_conn(self) -> socket.socket:
        return self._client._open_socket(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        # A connection reused from the pool was opened during an earlier download:
        # put its socket under this download's watchdog.
        if self.sock is not None:
            fetch = self._client._current_fetch()
            if fetch is not None:
                fetch.watch(self, self.sock)
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    """HTTPS over the vetted socket; SNI and certificate checks still use the hostname."""


class _ReleasingPool(HTTPConnectionPool):
    def _put_conn(self, conn: Any) -> None:
        client = getattr(conn, "_client", None)
        fetch = client._current_fetch() if client is not None else None
        # A connection the watchdog cut may look like a cleanly ended response
        # (close-delimited body): never let the pool hand it out again.
        if fetch is not None and fetch.release(conn):
            conn.close()
        super()._put_conn(conn)


class _ReleasingHTTPSPool(_ReleasingPool, HTTPSConnectionPool):
    pass


def _pool_classes(client: HttpClient) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes whose connections belong to ``client`` (its guard, its deadlines)."""

    class _HTTP(_GuardedConnection):
        _client = client

    class _HTTPS(_GuardedHTTPSConnection):
        _client = client

    class _HTTPPool(_ReleasingPool):
        ConnectionCls = _HTTP

    class _HTTPSPool(_ReleasingHTTPSPool):
        ConnectionCls = _HTTPS

    return {"http": _HTTPPool, "https": _HTTPSPool}


# -- URLs and messages ------------------------------------------------------------------

def _request_url(url: str) -> str:
    """``url`` checked (http/https with a host) and made ASCII, without userinfo or fragment."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if not scheme:
            raise BlockedAddress(f"not an absolute URL: {url!r}", url=url)
        if scheme not in ("http", "https"):
            raise BlockedAddress(f"scheme '{scheme}' is not allowed", url=url)
        host = parts.hostname
        port = parts.port
        if not host:
            raise FetchError(f"no host in URL {url!r}", url=url)
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except FetchError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise FetchError(f"invalid URL {url!r}", url=url) from exc
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _phrase(status: int, reason: str | None) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "".join(ch for ch in (reason or "") if ch.isprintable())[:80]


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        nested = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        current = current.__cause__ or current.__context__ or (nested[0] if nested else None)
    return False


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    # Closing rather than draining: the rest of a body we do not want may be large or slow.
    try:
        response.close()
    finally:
        response.release_conn()


# -- the client ---------------------------------------------------------------------------

class HttpClient:
    """Downloads feeds and pages safely; one instance may be shared within a process.

    Holds a pool of keep-alive connections; call :meth:`close` when done.
    """

    # Tests point this at their own CA; None means certifi's bundle (or the system store).
    _ca_certs: ClassVar[str | None] = None

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._pool = urllib3.PoolManager(
            num_pools=32,
            maxsize=4,
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self._ca_certs or _DEFAULT_CA_CERTS,
        )
        self._pool.pool_classes_by_scheme = _pool_classes(self)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()

    def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fetched:
        """GET ``url``, following redirects, and return the whole (decompressed) body.

        Sends If-None-Match / If-Modified-Since when validators are given. ``headers``: a source's
        own (issue 16: an API key, a cookie, basic auth, its User-Agent), sent to ``url``'s host only:
        a redirect to another host gets none of them but the User-Agent. Raises
        NotModified on 304, BlockedAddress for a refused scheme or address,
        TooLarge, DeadlineExceeded, or FetchError for anything else that fails.
        """
        sent = {
            "User-Agent": self.settings.user_agent,
            "Accept": accept or "*/*",
            "Accept-Encoding": _ACCEPT_ENCODING,
        }
        if etag:
            sent["If-None-Match"] = etag
        if last_modified:
            sent["If-Modified-Since"] = last_modified
        fetch = Deadline(self.settings.deadline)
        self._local.fetch = fetch
        try:
            return self._follow(url, sent, fetch, dict(headers or {}))
        finally:
            self._local.fetch = None
            fetch.finish()

    def post(self, url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Fetched:
        """POST ``body`` to ``url`` (WebSub: a subscription request, a content distribution) and read the
        answer within the same guard, deadline and size cap as :meth:`get`. Redirects are not followed
        (a POST is not repeated elsewhere): a 3xx, like any non-2xx, raises FetchError."""
        sent = {"User-Agent": self.settings.user_agent, "Content-Type": content_type, **(headers or {})}
        fetch = Deadline(self.settings.deadline)
        self._local.fetch = fetch
        try:
            target = _request_url(url)
            response = self._open(target, sent, fetch, method="POST", body=body)
            answer = self._take_body(response, fetch, target)
            return Fetched(url=target, status=response.status, body=answer, requested_url=url,
                           headers={name.lower(): response.headers[name] for name in response.headers})
        finally:
            self._local.fetch = None
            fetch.finish()

    # The SSRF policy; a test may widen it to one known server.
    def _address_allowed(self, ip: str, port: int) -> bool:
        return self.settings.allow_private or is_public_address(ip)

    def _current_fetch(self) -> Deadline | None:
        return getattr(self._local, "fetch", None)

    def _follow(self, url: str, headers: dict[str, str], fetch: Deadline, extra: dict[str, str]) -> Fetched:
        current = url
        redirects: list[tuple[int, str]] = []
        home = urlsplit(_request_url(url)).hostname if extra else None
        elsewhere = {k: v for k, v in extra.items() if k.lower() == "user-agent"}
        while True:
            target = _request_url(current)
            hop = {**headers, **(extra if urlsplit(target).hostname == home else elsewhere)} if extra else headers
            response = self._open(target, hop, fetch)
            status = response.status
            if status in _REDIRECTS or status == 304:
                _discard(response)
                if status == 304:
                    raise NotModified(current, tuple(redirects))
                location = response.headers.get("location")
                if not location:
                    raise FetchError(f"HTTP {status} without a Location from {current}", url=current, status=status)
                current = urljoin(target, location.strip())
                redirects.append((status, current))
                if len(redirects) > self.settings.max_redirects:
                    raise FetchError(f"too many redirects ({len(redirects)}) from {url}", url=url)
                continue
            body = self._take_body(response, fetch, current)
            if fetch.expired:  # the end of the body may be the watchdog's doing
                raise fetch.exceeded(current)
            return Fetched(
                url=current,
                status=status,
                headers={name.lower(): response.headers[name] for name in response.headers},
                body=body,
                requested_url=url,
                redirects=tuple(redirects),
            )

    def _open(self, url: str, headers: dict[str, str], fetch: Deadline, method: str = "GET",
              body: bytes | None = None) -> urllib3.BaseHTTPResponse:
        remaining = fetch.remaining()
        if remaining <= 0:
            raise fetch.exceeded(url)
        timeout = urllib3.Timeout(connect=min(self.settings.connect_timeout, remaining), read=remaining)
        try:
            return self._pool.urlopen(
                method, url, body=body, headers=headers, redirect=False, retries=False,
                preload_content=False, decode_content=True, timeout=timeout,
            )
        except BlockedAddress as exc:
            exc.url = exc.url or url
            raise
        except FetchError as exc:
            if fetch.expired or isinstance(exc, DeadlineExceeded):
                raise fetch.exceeded(url) from exc
            exc.url = exc.url or url
            raise
        except Exception as exc:
            raise self._error(exc, fetch, url) from exc

    def _take_body(self, response: urllib3.BaseHTTPResponse, fetch: Deadline, url: str) -> bytes:
        """The body of a 2xx response (else its FetchError); the connection goes back to the pool only
        when the body was read to its end."""
        complete = False
        try:
            if not 200 <= response.status < 300:
                raise self._status_error(response, url)
            body = self._read_body(response, fetch, url)
            complete = True
            return body
        finally:
            if complete:
                response.release_conn()
            else:
                _discard(response)

    def _read_body(self, response: urllib3.BaseHTTPResponse, fetch: Deadline, url: str) -> bytes:
        cap = self.settings.max_bytes
        length = response.headers.get("content-length", "").strip()
        if re.fullmatch(r"[0-9]+", length) and int(length) > cap:
            raise TooLarge(f"body larger than {_size(cap)}: Content-Length {int(length)} ({url})", url=url)
        body = bytearray()
        while True:
            remaining = fetch.remaining()
            if remaining <= 0:
                raise fetch.exceeded(url)
            sock = getattr(response.connection, "sock", None)
            try:
                if sock is not None:
                    sock.settimeout(remaining)
                # Decoded bytes, at most one chunk per call: urllib3 (>= 2.6) inflates
                # only as much as asked, so a bomb never expands past the cap here.
                chunk = response.read(_CHUNK, decode_content=True)
            except Exception as exc:
                raise self._error(exc, fetch, url) from exc
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > cap:
                raise TooLarge(f"body larger than {_size(cap)} ({url})", url=url)

    def _status_error(self, response: urllib3.BaseHTTPResponse, url: str) -> FetchError:
        status = response.status
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        phrase = _phrase(status, response.reason)
        return FetchError(
            f"HTTP {status} {phrase} from {url}" if phrase else f"HTTP {status} from {url}",
            url=url,
            status=status,
            transient=status in _TRANSIENT or 500 <= status <= 599,
            retry_after=retry_after,
        )

    def _error(self, exc: Exception, fetch: Deadline, url: str) -> FetchError:
        """The FetchError to report for an exception from urllib3, http.client, socket or ssl."""
        if isinstance(exc, FetchError):
            return exc
        if fetch.expired or fetch.remaining() <= 0:
            return fetch.exceeded(url)
        if isinstance(exc, DecodeError):
            return FetchError(f"cannot decode the compressed body from {url}", url=url)
        if _caused_by(exc, ssl.SSLCertVerificationError):
            return FetchError(f"TLS certificate not valid for {url}", url=url)
        if isinstance(exc, SSLError) or _caused_by(exc, ssl.SSLError):
            return FetchError(f"TLS failure with {url}", url=url, transient=True)
        if isinstance(exc, Urllib3Timeout) or _caused_by(exc, TimeoutError):
            return FetchError(f"timed out reading from {url}", url=url, transient=True)
        if isinstance(exc, LocationValueError | ValueError):
            return FetchError(f"invalid URL or header for {url}: {exc}", url=url)
        if isinstance(exc, HTTPError | OSError) or _caused_by(exc, OSError):
            return FetchError(f"connection to {url} broke: {type(exc).__name__}", url=url, transient=True)
        return FetchError(f"unexpected {type(exc).__name__} from {url}: {exc}", url=url)

    def _open_socket(self, conn: HTTPConnection) -> socket.socket:
        """Resolve ``conn``'s host, refuse it unless every address is allowed, connect to one."""
        fetch = self._current_fetch()
        if fetch is None:  # only get() drives the pool
            raise FetchError("connection opened outside a download")
        host = conn.host.strip("[]")
        port = conn.port or 80
        where = f"{host}:{port}"
        infos = self._resolve(host, port, fetch)
        # One inside address refuses the whole name: a public site has no business
        # resolving inside, and connecting only to its other addresses would still
        # let an attacker's name pick when to point inside.
        for info in infos:
            ip = str(info[4][0])
            if not self._address_allowed(ip, port):
                why = non_public_reason(ip) or "not allowed"
                named = "" if ip.split("%", 1)[0] == host else f" for {where}"
                raise BlockedAddress(f"refused non-public address {ip} ({why}){named}")
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        error: FetchError | None = None
        for family, socktype, proto, _, sockaddr in infos:
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                for option in conn.socket_options or ():
                    sock.setsockopt(*option)
                if conn.source_address:
                    sock.bind(conn.source_address)
                remaining = fetch.remaining()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(min(self.settings.connect_timeout, remaining))
                fetch.watch(conn, sock)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                if sock is not None:
                    fetch.release(conn)
                    sock.close()
                if fetch.expired or fetch.remaining() <= 0:
                    raise fetch.exceeded(where) from exc
                if isinstance(exc, TimeoutError):
                    error = FetchError(f"connecting to {where} timed out", transient=True)
                elif isinstance(exc, ConnectionRefusedError):
                    error = FetchError(f"connection refused by {where}", transient=True)
                else:
                    error = FetchError(f"cannot connect to {where}: {exc.strerror or exc}", transient=True)
        raise error or FetchError(f"no address to connect to for {host}", transient=True)

    def _resolve(self, host: str, port: int, fetch: Deadline) -> list[Any]:
        family = allowed_gai_family()
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            try:
                return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
            except OSError as exc:
                raise FetchError(f"invalid address {host}") from exc
        # getaddrinfo cannot be interrupted and the system resolver may retry for
        # longer than the deadline: resolve aside and stop waiting when it passes.
        outcome: list[Any] = []

        def resolve() -> None:
            try:
                outcome.append(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM))
            except Exception as exc:
                outcome.append(exc)

        worker = threading.Thread(target=resolve, name=f"resolve {host}", daemon=True)
        worker.start()
        worker.join(max(fetch.remaining(), 0.0))
        if not outcome:
            raise fetch.exceeded(host)
        result = outcome[0]
        if isinstance(result, Exception):
            reason = getattr(result, "strerror", None) or type(result).__name__
            raise FetchError(f"cannot resolve {host}: {reason}", transient=True) from result
        if not result:
            raise FetchError(f"cannot resolve {host}: no addresses", transient=True)
        return list(result)
