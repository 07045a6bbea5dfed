"""The admin API under ``/api/`` on ``feedstream serve``: sources as JSON (see docs/sources.md, docs/openapi.json).

::

    GET    /api/                          {"read_only": ..., "openapi": "/api/openapi.json"}
    GET    /api/openapi.json              this API's OpenAPI 3.1 document
    GET    /api/sources                   {"sources": [source, ...]}
    POST   /api/sources[?check=false]     create (201); a site's address is resolved to its feed
    GET    /api/sources/<name>            one source
    PATCH  /api/sources/<name>            change some fields (PUT is taken the same way, as in Miniflux)
    DELETE /api/sources/<name>            remove (204); what it published stays on the stream
    POST   /api/sources/<name>/pause      stop polling, keep its state
    POST   /api/sources/<name>/resume
    POST   /api/sources/<name>/refresh    poll it now (202)
    POST   /api/discover                  {"url": ...} -> {"feeds": [...]} (nothing is added)
    GET    /api/opml                      every feed as OPML 2.0
    POST   /api/opml                      import an OPML file (the body): {"added", "skipped", "refused"}

Writes need ``Authorization: Bearer <FEEDSTREAM_ADMIN_TOKEN>``; with no token configured the API
is read-only and says so on every write. Errors are ``{"error": message, "fields": {field: message}}``.

Pure request handling: :func:`handle` takes the request's parts and returns the response's, so the
HTTP server only moves bytes (worker/out/server.py).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis

from worker.errors import SourceError
from worker.sources.manage import SourceAdmin
from worker.sources.opml import MAX_OPML_BYTES

log = logging.getLogger("feedstream.api")

MAX_JSON_BYTES = 1024 * 1024
JSON_TYPE = "application/json"
OPML_TYPE = "text/x-opml; charset=utf-8"
_SOURCE = re.compile(r"^/api/sources/([^/]{1,200})(?:/(pause|resume|refresh))?$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] | None = None


class ApiError(Exception):
    """A request the API answers with an error status."""

    def __init__(self, status: int, message: str, fields: Mapping[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fields, self.headers = status, message, dict(fields or {}), headers


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8"),
                    headers=headers)


@cache
def openapi_document() -> bytes:
    """The API's OpenAPI document (package data; docs/openapi.json is the same file)."""
    return files("worker.out").joinpath("openapi.json").read_bytes()


def body_limit(path: str) -> int:
    """The largest request body accepted at ``path`` (OPML files are larger than JSON bodies)."""
    return MAX_OPML_BYTES if urlsplit(path).path == "/api/opml" else MAX_JSON_BYTES


def handle(admin: SourceAdmin, token: str | None, method: str, path: str, headers: Mapping[str, str],
           body: bytes) -> Response:
    """Answer one API request (``path`` with its query); never raises."""
    try:
        return _route(admin, token, method, path, headers, body)
    except ApiError as exc:
        doc: dict[str, Any] = {"error": exc.message}
        if exc.fields:
            doc["fields"] = exc.fields
        return _json(exc.status, doc, exc.headers)
    except SourceError as exc:
        return _json(exc.status, {"error": exc.message, "fields": exc.fields} if exc.fields else
                     {"error": exc.message})
    except redis.RedisError as exc:
        log.warning("admin API: Redis: %s", exc)
        return _json(503, {"error": "Redis cannot be reached right now; try again"}, {"Retry-After": "10"})
    except Exception:  # a bug must answer 500, not kill the server's thread silently
        log.exception("admin API: %s %s", method, path)
        return _json(500, {"error": "internal error (logged)"})


def _route(admin: SourceAdmin, token: str | None, method: str, path: str, headers: Mapping[str, str],
           body: bytes) -> Response:
    parts = urlsplit(path)
    route = parts.path
    query = parse_qs(parts.query)
    if method != "GET" and method != "HEAD":
        _authorise(token, headers)
    if route in ("/api", "/api/"):
        _allow(method, "GET")
        return _json(200, {"read_only": token is None, "openapi": "/api/openapi.json",
                           "note": "read-only: set FEEDSTREAM_ADMIN_TOKEN to allow changes" if token is None else
                           "writes need Authorization: Bearer <FEEDSTREAM_ADMIN_TOKEN>"})
    if route == "/api/openapi.json":
        _allow(method, "GET")
        return Response(200, openapi_document())
    if route == "/api/sources":
        _allow(method, "GET", "POST")
        if method == "POST":
            created = admin.create(_object(headers, body), check=_flag(query, "check", True))
            return _json(201, created, {"Location": f"/api/sources/{created['name']}"})
        return _json(200, {"sources": admin.list()})
    if route == "/api/discover":
        _allow(method, "POST")
        url = _object(headers, body).get("url")
        if not isinstance(url, str):
            raise ApiError(400, "url is required", {"url": "is required (a site's address)"})
        return _json(200, {"feeds": admin.discover(url)})
    if route == "/api/opml":
        _allow(method, "GET", "POST")
        if method == "POST":
            return _json(200, admin.import_opml(body).as_dict())
        return Response(200, admin.export_opml(), OPML_TYPE,
                        {"Content-Disposition": 'attachment; filename="feedstream.opml"'})
    match = _SOURCE.match(route)
    if match is None:
        raise ApiError(404, f"no such API resource: {route}")
    name, action = unquote(match.group(1)), match.group(2)
    if action:
        _allow(method, "POST")
        if action == "pause":
            return _json(200, admin.pause(name))
        if action == "resume":
            return _json(200, admin.resume(name))
        return _json(202, admin.refresh(name))
    _allow(method, "GET", "PATCH", "PUT", "DELETE")
    if method == "DELETE":
        admin.delete(name)
        return Response(204, b"")
    if method in ("PATCH", "PUT"):
        return _json(200, admin.update(name, _object(headers, body)))
    return _json(200, admin.show(name))


def _authorise(token: str | None, headers: Mapping[str, str]) -> None:
    if token is None:
        raise ApiError(403, "the admin API is read-only: FEEDSTREAM_ADMIN_TOKEN is not set on this server")
    given = _header(headers, "authorization")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "changes need Authorization: Bearer <FEEDSTREAM_ADMIN_TOKEN>",
                       headers={"WWW-Authenticate": 'Bearer realm="feedstream"'})
    if not hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8")):
        raise ApiError(403, "wrong admin token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((str(v) for k, v in headers.items() if k.lower() == name), "")


def _allow(method: str, *methods: str) -> None:
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
    if method not in allowed:
        raise ApiError(405, f"{method} is not allowed here (allowed: {', '.join(methods)})",
                       headers={"Allow": ", ".join(methods)})


def _object(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    kind = _header(headers, "content-type").split(";")[0].strip().lower()
    if kind and kind != JSON_TYPE and not kind.endswith("+json"):
        raise ApiError(415, f"the body must be JSON (Content-Type: {JSON_TYPE}), not {kind}")
    try:
        doc = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be a JSON object", {"": "must be an object"})
    return doc


def _flag(query: Mapping[str, list[str]], name: str, default: bool) -> bool:
    raw = (query.get(name) or [""])[-1].strip().lower()
    if not raw:
        return default
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ApiError(400, f"{name} must be true or false", {name: "must be true or false"})
