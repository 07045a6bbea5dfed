"""Per-source rules through the real pipeline (issue 16): one burst over a loopback site, real Redis and a real
RQ worker, covering block/keep/text rules, max_age, [defaults], a selector that hits and one that misses,
strip, and request settings (basic auth and a custom header) that only their own source's requests carry;
then the settings taken from the file, the API and the CLI, and shown masked."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.mailgen import mail_bytes
from tests.pipeline_helpers import articles, run_burst
from tests.site import Site
from tests.sitegen import Story, rss2, story, telecoms_page
from tests.test_api import TOKEN, call, start
from tests.test_cli import base_env, feedstream
from worker.fetch import HttpSettings
from worker.ops.metrics import FeedstreamCollector
from worker.pipeline.context import Context, install_context
from worker.pipeline.mail import ingest_mail
from worker.settings import Settings
from worker.store import Store

STORY_BLOCK = ("<p>The council approved the new bridge on Tuesday after a debate that ran late into the night, "
               "with members split over the cost.</p><p>Work starts in spring and should finish within two years, "
               "the mayor said, adding that the old crossing stays open meanwhile.</p>")
STORY_TEXT = ("The council approved the new bridge on Tuesday after a debate that ran late into the night, with "
              "members split over the cost.\n\nWork starts in spring and should finish within two years, the mayor "
              "said, adding that the old crossing stays open meanwhile.")
PROMO = "".join(f"<p>Our promotion number {i} offers subscriptions, bundles, annual plans, gifts and members-only "
                f"events in many cities, with discounts that keep going for paragraph {i} of this long block.</p>"
                for i in range(4))


def promo_page(title: str, with_story: bool = True) -> str:
    """A page where the biggest block is a promotion: trafilatura alone takes it in; the story sits in div.story."""
    story_div = f'<div class="story">{STORY_BLOCK}</div>' if with_story else ""
    return (f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav>"
            f'<div class="promo-feature">{PROMO}</div>{story_div}'
            f'<aside class="newsletter-signup"><p>Sign up for our newsletter today</p></aside></body></html>')


def dated(s: Story, when: float) -> Story:
    s.published = email.utils.formatdate(when, usegmt=True)
    return s


def guarded(site: Site, path: str, body: str, content_type: str) -> str:
    """Serve ``body`` only to requests with the partner's basic auth and API key (else 401)."""
    expected = "Basic " + __import__("base64").b64encode(b"partner:pw-123").decode()

    def handler(request: BaseHTTPRequestHandler) -> None:
        ok = request.headers.get("Authorization") == expected and request.headers.get("X-Api-Key") == "key-456"
        data = body.encode() if ok else b"no"
        request.send_response(200 if ok else 401)
        request.send_header("Content-Type", content_type if ok else "text/plain")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    return site.handle(path, handler)


def build(site: Site) -> tuple[str, Callable[[str], str]]:
    now = time.time()
    paths: dict[str, str] = {}

    def page(key: str, s: Story, html: str | None = None) -> tuple[Story, str]:
        paths[key] = f"/{key}/{s.slug}/"
        return s, site.add(paths[key], html or telecoms_page(s))

    sponsored = story(1)
    sponsored.title = "Sponsored: the best roaming deals"
    podcast = story(2)
    items = [page("plain", story(0)), page("sponsored", sponsored)]
    podcast_item = (podcast, site.add(f"/podcast/{podcast.slug}/", telecoms_page(podcast)))
    paths["podcast"] = f"/podcast/{podcast.slug}/"
    feeds = {"mixed": site.add("/mixed.xml", rss2("Mixed", [*items, podcast_item]), "application/rss+xml")}

    fibre, other = story(3), story(4)
    fibre.title = "Fibre reaches the valley"
    feeds["kept"] = site.add("/kept.xml", rss2("Kept", [page("fibre", fibre), page("other", other)]),
                             "application/rss+xml")

    giveaway, clean, flaky = story(5), story(6), story(12)
    giveaway.paragraphs.append("Enter our promotional giveaway today for a chance to win a handset.")
    # the flaky page fails once (503): RQ runs the batch again, which must not fetch the dropped page again
    paths["flaky"] = f"/flaky/{flaky.slug}/"
    flaky_html = telecoms_page(flaky).encode()

    def fail_once(request: BaseHTTPRequestHandler) -> None:
        first = len(site.hits(paths["flaky"])) <= 1
        data = b"busy" if first else flaky_html
        request.send_response(503 if first else 200)
        request.send_header("Content-Type", "text/plain" if first else "text/html; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    texty_items = [page("giveaway", giveaway), page("clean", clean), (flaky, site.handle(paths["flaky"], fail_once))]
    feeds["texty"] = site.add("/texty.xml", rss2("Texty", texty_items, with_content=False), "application/rss+xml")

    old, fresh = dated(story(7), now - 400 * 86400), dated(story(8), now - 3600)
    feeds["aged"] = site.add("/aged.xml", rss2("Aged", [page("old", old), page("fresh", fresh)]),
                             "application/rss+xml")

    hit, miss = story(9), story(10)
    feeds["selected"] = site.add("/selected.xml", rss2("Selected", [
        page("hit", hit, promo_page(hit.title)), page("miss", miss, promo_page(miss.title, with_story=False))],
        with_content=False), "application/rss+xml")

    partner = story(11)
    paths["partner"] = f"/partner/{partner.slug}/"
    partner_url = guarded(site, paths["partner"], telecoms_page(partner), "text/html; charset=utf-8")
    feeds["partner"] = guarded(site, "/partner.xml", rss2("Partner", [(partner, partner_url)]), "application/rss+xml")

    toml = f"""[defaults]
block = ["url:/podcast/"]

[[feeds]]
name = "mixed"
url = "{feeds['mixed']}"
block = ["title:(?i)sponsored"]

[[feeds]]
name = "kept"
url = "{feeds['kept']}"
keep = ["title:(?i)fibre"]

[[feeds]]
name = "texty"
url = "{feeds['texty']}"
block = ["text:(?i)promotional giveaway"]

[[feeds]]
name = "aged"
url = "{feeds['aged']}"
max_age = "30d"

[[feeds]]
name = "selected"
url = "{feeds['selected']}"
selector = "div.story"
strip = ["aside"]

[[feeds]]
name = "partner"
url = "{feeds['partner']}"
headers = {{ "X-Api-Key" = "key-456" }}
basic_auth_user = "partner"
basic_auth_password_env = "PARTNER_PASSWORD"

[[feeds]]
name = "locked"
url = "{site.url('/locked.xml')}"
basic_auth_user = "partner"
basic_auth_password_env = "LOCKED_PASSWORD_UNSET"

[[newsletters]]
name = "letters"
kind = "smtp"
address = "letters@feeds.example"
block = ["title:(?i)^sponsored"]
"""
    return toml, paths.__getitem__


def test_rules_selector_and_request_settings_in_one_burst(site: Site, redis_client: redis.Redis, redis_url: str,
                                                         feeds_file: Path) -> None:
    toml, path = build(site)
    feeds_file.write_text(toml)
    settings = Settings(redis_url=redis_url, feeds_path=feeds_file, http=HttpSettings(allow_private=True, deadline=5))
    context = Context.build(settings, redis_url, env={"PARTNER_PASSWORD": "pw-123"})
    install_context(context)
    run_burst(context)
    published = {a["url"].rsplit("/", 2)[-2]: a for a in articles(redis_client)}
    by_key = {key: published.get(path(key).rsplit("/", 2)[-2]) for key in
              ("plain", "sponsored", "podcast", "fibre", "other", "giveaway", "clean", "flaky", "old", "fresh", "hit",
               "miss", "partner")}
    assert {k for k, a in by_key.items() if a} == {"plain", "fibre", "clean", "flaky", "fresh", "hit", "miss",
                                                   "partner"}

    # rules on what the feed gives run before the page is fetched: no request wasted
    for key in ("sponsored", "podcast", "other", "old"):
        assert site.hits(path(key)) == [], key
    # a text rule runs after extraction: the page was fetched, the article not published, its pending record settled;
    # the batch, run again for its flaky page, did not fetch it again
    assert len(site.hits(path("flaky"))) == 2
    assert len(site.hits(path("giveaway"))) == 1
    assert context.store.outbox_size()[0] == 0

    # the selector chose exactly the story over the bigger promotion (which trafilatura alone takes in) ...
    assert by_key["hit"]["extraction"] == "selector" and by_key["hit"]["text"] == STORY_TEXT
    assert "promotion" in by_key["miss"]["text"] and by_key["miss"]["extraction"] != "selector"
    # ... and its miss is on the source's status
    status = context.store.feed_status("selected")
    assert status["selector_misses"] == "1" and path("miss") in status["last_selector_miss"]

    # basic auth and the API key reached the server for the partner's feed and page, and no other source's request
    for request in site.requests:
        partner = request.path in ("/partner.xml", path("partner"))
        assert ("authorization" in request.headers) == partner and ("x-api-key" in request.headers) == partner, \
            request.path
    assert by_key["partner"]["extraction"] in ("precision", "recall")
    # a password variable that is not set: a clear error on that source's status, and no request
    assert "LOCKED_PASSWORD_UNSET is not set" in context.store.feed_status("locked")["last_error"]
    assert site.hits("/locked.xml") == []

    # counted per source and rule, on the status and in /metrics
    assert context.store.feed_status("mixed")["filtered"] == "2"
    registry = CollectorRegistry()
    registry.register(FeedstreamCollector(context.store, lambda: {}, lambda: 0))
    samples = {(s.labels["source"], s.labels["rule"]): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               if family.name == "feedstream_entries_filtered" for s in family.samples if s.name.endswith("_total")}
    assert samples == {("mixed", "block title:(?i)sponsored"): 1, ("mixed", "block url:/podcast/"): 1,
                       ("kept", "keep: no keep rule matched"): 1, ("texty", "block text:(?i)promotional giveaway"): 1,
                       ("aged", "max_age 30d"): 1}

    # a newsletter's rules: the sponsored issue is not published, the next one is
    for n, subject in enumerate(("Sponsored: a word from our partner", "Operators pool rural masts")):
        ingest_mail(context, "letters", mail_bytes(subject=subject, message_id=f"<issue-{n}@news.example>"))
    assert [a["title"] for a in articles(redis_client) if a["feed"] == "letters"] == ["Operators pool rural masts"]
    assert context.store.feed_status("letters")["filtered:block title:(?i)^sponsored"] == "1"

    # a second burst fetches nothing of what was dropped: their GUIDs stay seen
    run_burst(context)
    for key in ("sponsored", "podcast", "other", "old"):
        assert site.hits(path(key)) == [], key
    assert len(site.hits(path("giveaway"))) == 1

    # status --json shows the rules, masked, and what they did; `sources test` tries them without publishing
    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(feeds_file), PARTNER_PASSWORD="pw-123")
    rows = {row["feed"]: row for row in json.loads(feedstream("status", "--json", env=env).stdout)["feeds"]}
    assert rows["partner"]["rules"]["headers"] == {"X-Api-Key": "********"}
    assert "key-456" not in json.dumps(rows) and "pw-123" not in json.dumps(rows)
    assert rows["mixed"]["filtered"] == {"block title:(?i)sponsored": 1, "block url:/podcast/": 1}
    length = redis_client.xlen("articles")
    tried = feedstream("sources", "test", "mixed", "--json", env=env)
    assert tried.returncode == 0, tried.stderr
    outcomes = {r["url"].rsplit("/", 2)[-2]: (r["outcome"], r.get("rule")) for r in json.loads(tried.stdout)}
    assert outcomes[path("sponsored").rsplit("/", 2)[-2]] == ("dropped before fetching", "block title:(?i)sponsored")
    assert outcomes[path("plain").rsplit("/", 2)[-2]] == ("would publish", None)
    single = feedstream("sources", "test", "selected", site.url(path("hit")), env=env)
    assert "extraction: selector" in single.stdout and "strip 'aside': 1 element(s) removed" in single.stdout
    assert redis_client.xlen("articles") == length  # nothing published by the tests


def test_rules_and_request_settings_from_the_api_and_the_cli_refused_when_bad_shown_masked(
        redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    server, client = start(Store(redis_client), TOKEN)
    api = f"http://127.0.0.1:{server.server_port}/api"
    try:
        status, body, _ = call(api, "POST", "/sources?check=false", {
            "name": "partner", "url": "https://partner.example/feed", "block": ["title:(?i)sponsored"],
            "keep": ["tags:telecoms"], "max_age": "12h", "selector": "article .entry-content", "strip": ["aside"],
            "headers": {"X-Api-Key": "key-456"}, "cookie": "session=abc", "user_agent": "PartnerBot/1",
            "basic_auth_user": "partner", "basic_auth_password_env": "PARTNER_PASSWORD"})
        assert status == 201, body
        assert body["headers"] == {"X-Api-Key": "********"} and body["cookie"] == "********"
        assert body["block"] == ["title:(?i)sponsored"] and body["selector"] == "article .entry-content"
        status, body, _ = call(api, "GET", "/sources/partner", token=None)
        assert "key-456" not in json.dumps(body) and "session=abc" not in json.dumps(body)
        for change, field, quoted in [({"block": ["title:(?<=x)y"]}, "block", "'title:(?<=x)y': invalid regex"),
                                      ({"keep": ["body:x"]}, "keep", "'body:x': must be field:regex"),
                                      ({"headers": {"X-A": "a\r\nHost: evil"}}, "headers", "newline"),
                                      ({"selector": "body"}, "selector", "selects the whole page"),
                                      ({"max_age": "soon"}, "max_age", "like \"30d\"")]:
            status, body, _ = call(api, "PATCH", "/sources/partner", change)
            assert status == 400 and quoted in body["fields"][field], (change, body)
        assert Store(redis_client).sources_snapshot().get("partner").source.block == ("title:(?i)sponsored",)
    finally:
        server.shutdown()
        server.server_close()
        client.close()

    env = base_env(REDIS_URL=redis_url, FEEDSTREAM_FEEDS=str(tmp_path / "absent.toml"))
    added = feedstream("sources", "add", "https://news.example/feed", "--no-check", "--name", "news", "--json",
                       "--block", "title:(?i)sponsored", "--block", "url:/podcast/", "--max-age", "30d",
                       "--selector", "main article", "--strip", ".newsletter-signup", "--header", "X-Api-Key: k-1",
                       env=env)
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert shown["block"] == ["title:(?i)sponsored", "url:/podcast/"] and shown["headers"] == {"X-Api-Key": "********"}
    changed = feedstream("sources", "set", "news", "max_age=", "--keep", "text:(?i)5g", "--json", env=env)
    assert changed.returncode == 0, changed.stderr
    assert "max_age" not in json.loads(changed.stdout) and json.loads(changed.stdout)["keep"] == ["text:(?i)5g"]
    refused = feedstream("sources", "set", "news", "--block", "title:(a)\\1", env=env)
    assert refused.returncode == 1 and "'title:(a)\\1': invalid regex" in refused.stderr
