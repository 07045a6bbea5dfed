"""The admin API over real HTTP on loopback: auth, every route, and bad input answered per field."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.site import Site
from tests.sitegen import rss2, story
from worker.fetch import HttpClient, HttpSettings
from worker.out.server import FeedServer, make_server
from worker.sources.manage import AdminOptions, SourceAdmin, fetch_for_discovery
from worker.store import Store

TOKEN = "s3cret-token"
REPO = Path(__file__).resolve().parent.parent


def start(store: Store, token: str | None, allow_private: bool = True) -> tuple[FeedServer, HttpClient]:
    client = HttpClient(HttpSettings(allow_private=allow_private, deadline=5))
    admin = SourceAdmin(store, fetch_for_discovery(client.get), AdminOptions(allow_private=allow_private))
    server = make_server(store, "127.0.0.1", 0, admin, token)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, client


@pytest.fixture
def api(redis_client: redis.Redis) -> Iterator[str]:
    server, client = start(Store(redis_client), TOKEN)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    client.close()


def call(base: str, method: str, path: str, body: Any = None, token: str | None = TOKEN,
         content_type: str = "application/json", raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, payload, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, payload, headers = exc.code, exc.read(), dict(exc.headers)
    text = payload.decode()
    doc = json.loads(text) if headers.get("Content-Type", "").startswith("application/json") and text else text
    if path.startswith("/api/"):
        check_documented(method, path, status, headers.get("Content-Type", ""), doc)
    return status, doc, headers


OPENAPI = json.loads((REPO / "worker" / "out" / "openapi.json").read_text())
_REGISTRY = Registry().with_resource("urn:openapi", Resource.from_contents(OPENAPI, default_specification=DRAFT202012))


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The documented path template ``path`` falls under, and its ``method``'s operation (None: not one)."""
    route = urllib.parse.urlsplit(path).path
    for template, item in OPENAPI["paths"].items():
        pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, route) and method.lower() in item:
            return template, item[method.lower()]
    return None


def check_documented(method: str, path: str, status: int, content_type: str, body: Any) -> None:
    """Every admin API answer is one the OpenAPI document names: its status, and a JSON body valid
    against the schema given for that status; a route or method it does not name gets 404 or 405 with
    the documented error body."""
    found = _operation(method, path)
    if found is None:
        assert status in (404, 405), f"{method} {path} is not in the OpenAPI document, yet answered {status}"
        found = (path, {"responses": {str(status): {"$ref": "#/components/responses/Error"}}})
    template, operation = found
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which is not documented"
    pointer = f"/paths/{template.replace('/', '~1')}/{method.lower()}/responses/{status}"
    response = responses[str(status)]
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
        response = _REGISTRY.resolver().lookup("urn:openapi#" + pointer).contents
    schema = (response.get("content") or {}).get("application/json", {}).get("schema")
    if schema is None or not content_type.startswith("application/json"):
        return
    reference = {"$ref": "urn:openapi#" + urllib.parse.quote(pointer + "/content/application~1json/schema")}
    errors = [e.message for e in Draft202012Validator(reference, registry=_REGISTRY).iter_errors(body)]
    assert not errors, f"{method} {template} {status}: the body does not match the OpenAPI document: {errors}"


def test_without_a_token_the_api_is_read_only_and_says_so(redis_client: redis.Redis) -> None:
    server, client = start(Store(redis_client), None)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert call(base, "GET", "/api/")[1]["read_only"] is True
        status, doc, _ = call(base, "POST", "/api/sources", {"name": "a", "url": "https://a.example/f"})
        assert status == 403 and "read-only" in doc["error"] and "FEEDSTREAM_ADMIN_TOKEN" in doc["error"]
        assert call(base, "GET", "/api/sources", token=None)[1] == {"sources": []}
        assert call(base, "GET", "/feed.json")[0] == 200  # the feeds out are as they were
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def test_writes_need_the_right_bearer_token(api: str) -> None:
    status, doc, headers = call(api, "POST", "/api/sources", {"name": "a"}, token=None)
    assert status == 401 and "Authorization: Bearer" in doc["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, doc, _ = call(api, "POST", "/api/sources", {"name": "a"}, token="guess")
    assert (status, doc["error"]) == (403, "wrong admin token")
    assert call(api, "GET", "/api/")[1]["read_only"] is False


def test_a_source_through_its_life(api: str, site: Site, redis_client: redis.Redis) -> None:
    site.add("/", f'<html><head><link rel="alternate" type="application/atom+xml" href="{site.base}/f"></head>')
    site.add("/f", rss2("Site News", [(story(1), "https://example.test/a")]), "application/rss+xml")
    status, created, headers = call(api, "POST", "/api/sources", {"url": site.url("/"), "tags": ["t"]})
    assert status == 201 and headers["Location"] == "/api/sources/site-news"
    assert (created["url"], created["managed_by"], created["paused"]) == (site.url("/f"), "api", False)
    assert [s["name"] for s in call(api, "GET", "/api/sources")[1]["sources"]] == ["site-news"]
    status, changed, _ = call(api, "PATCH", "/api/sources/site-news", {"tags": ["t", "u"], "interval": 1200})
    assert status == 200 and (changed["tags"], changed["interval"]) == (["t", "u"], 1200)
    assert call(api, "POST", "/api/sources/site-news/pause")[1]["paused"] is True
    assert call(api, "POST", "/api/sources/site-news/refresh")[0] == 409
    assert call(api, "POST", "/api/sources/site-news/resume")[1]["paused"] is False
    assert call(api, "POST", "/api/sources/site-news/refresh")[0] == 202
    status, found, _ = call(api, "POST", "/api/discover", {"url": site.url("/")})
    assert status == 200 and found["feeds"][0] == {"url": site.url("/f"), "title": "Site News", "found_by": "link",
                                                   "entries": 1, "kind": "feed"}
    status, opml, headers = call(api, "GET", "/api/opml")
    assert status == 200 and headers["Content-Type"].startswith("text/x-opml") and site.url("/f") in opml
    assert call(api, "DELETE", "/api/sources/site-news")[0] == 204
    assert call(api, "GET", "/api/sources/site-news")[0] == 404
    status, report, _ = call(api, "POST", "/api/opml", raw=opml.encode(), content_type="text/x-opml")
    assert status == 200 and [a["name"] for a in report["added"]] == ["site-news"]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("POST", "/api/sources", {"name": "a b", "url": "gopher://x/", "colour": 1}, 400, "colour"),
    ("POST", "/api/sources", {"name": "dup", "url": "https://other.example/f"}, 409, "name"),  # before any fetch
    ("POST", "/api/sources", {"name": "b", "url": "https://DUP.example/f#x"}, 409, "url"),
    ("POST", "/api/sources?check=maybe", {"name": "b", "url": "https://b.example/f"}, 400, "check"),
    ("PATCH", "/api/sources/dup", {"name": "renamed"}, 400, "name"),
    ("PATCH", "/api/sources/dup", {"interval": 1}, 400, "interval"),
    ("PATCH", "/api/sources/nope", {"interval": 900}, 404, "name"),
    ("POST", "/api/discover", {}, 400, "url"),
    ("POST", "/api/discover", {"url": "ftp://x.example/"}, 400, "url"),
    ("POST", "/api/sources", [1, 2], 400, ""),
])
def test_bad_requests_get_an_error_per_field_and_change_nothing(api: str, redis_client: redis.Redis, method: str,
                                                               path: str, body: Any, status: int, field: str) -> None:
    call(api, "POST", "/api/sources?check=false", {"name": "dup", "url": "https://dup.example/f"})
    version = redis_client.get("feedstream:sources:version")
    got, doc, _ = call(api, method, path, body)
    assert got == status and field in doc["fields"], doc
    assert redis_client.get("feedstream:sources:version") == version


def test_malformed_bodies_routes_and_methods(api: str, site: Site) -> None:
    site.add("/", "<html><body>no feed here</body></html>")
    assert call(api, "POST", "/api/sources", raw=b"{not json")[1]["error"].startswith("the body is not JSON")
    assert call(api, "POST", "/api/sources", raw=b"name=a", content_type="application/x-www-form-urlencoded")[0] == 415
    assert call(api, "POST", "/api/sources", raw=b"x" * (1024 * 1024 + 1))[0] == 413
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:  # claims 1 GB, sends none of it
        raw.sendall(b"POST /api/sources HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 413 ")
    status, doc, _ = call(api, "POST", "/api/sources", {"name": "site", "url": site.url("/")})
    assert status == 400 and doc["fields"]["url"].startswith("no feed found at")
    assert call(api, "GET", "/api/nothing")[0] == 404
    status, _, headers = call(api, "DELETE", "/api/sources")
    assert status == 405 and headers["Allow"] == "GET, POST"
    assert call(api, "POST", "/feed.atom", {})[0] == 405


def test_private_addresses_are_refused_unless_allowed(redis_client: redis.Redis) -> None:
    server, client = start(Store(redis_client), TOKEN, allow_private=False)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        status, doc, _ = call(base, "POST", "/api/sources", {"name": "x", "url": f"{base}/feed"})
        assert status == 400 and "127.0.0.1 is not a public address" in doc["fields"]["url"]
        status, doc, _ = call(base, "POST", "/api/sources?check=false", {"name": "x", "url": "http://[::1]/feed"})
        assert status == 400 and "FEEDSTREAM_ALLOW_PRIVATE" in doc["fields"]["url"]
    finally:
        server.shutdown()
        server.server_close()
        client.close()


def test_the_openapi_document_is_served_kept_in_docs_and_covers_every_route(api: str) -> None:
    status, served, _ = call(api, "GET", "/api/openapi.json")
    assert status == 200
    assert served == json.loads((REPO / "docs" / "openapi.json").read_text())
    routes = {"/api/", "/api/openapi.json", "/api/sources", "/api/sources/{name}", "/api/sources/{name}/pause",
              "/api/sources/{name}/resume", "/api/sources/{name}/refresh", "/api/discover", "/api/opml"}
    assert set(served["paths"]) == routes
