"""Per-source rules, pure parts (issue 16): rules and their verdicts, ages, request settings and masking,
CSS selectors, the feeds file's [defaults]; and the one client sending a source's headers to its own host only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.site import Site
from worker.errors import ConfigError, SourceInvalid
from worker.extract.selector import SelectorInvalid, check_selector, select_body, strip_elements
from worker.fetch import HttpClient, HttpSettings
from worker.models import Entry
from worker.settings import load_sources
from worker.sources.plan import Snapshot, plan_file
from worker.sources.rules import (
    MASK,
    RuleError,
    entry_fields,
    filter_entries,
    judge,
    masked,
    parse_age,
    parse_rule,
    request_headers,
    rule_set,
)
from worker.sources.spec import defaults_from_dict, source_from_dict, source_to_dict

NOW = 1_800_000_000.0


def test_rules_are_field_regex_in_re2_and_a_bad_one_is_quoted() -> None:
    rule = parse_rule("title:(?i)sponsored", "block")
    assert rule.label == "block title:(?i)sponsored" and rule.matches("A SPONSORED post")
    assert parse_rule("tags:^podcast$", "block").matches(["news", "podcast"])
    for text, message in [("title:(?<=a)b", "'title:(?<=a)b': invalid regex: invalid perl operator"),
                          ("title:(a)\\1", "'title:(a)\\1': invalid regex"),
                          ("body:x", "'body:x': must be field:regex with field one of title, url, author"),
                          ("title:", "the regex must be 1-1000 characters")]:
        with pytest.raises(RuleError) as caught:
            parse_rule(text, "block")
        assert message in str(caught.value), text
    # RE2 has no backtracking: Python's re would take hours on this pattern and text (1.6x per 'a')
    assert not parse_rule("text:(a|aa)+$", "block").matches("a" * 60 + "!")


def test_verdicts_before_the_fetch_and_after_extraction() -> None:
    rules = rule_set(("title:(?i)sponsored",), ("text:(?i)5g", "title:(?i)fibre"), "30d")
    before = entry_fields("Tower news", "https://x.test/a", None, ["Networks"])
    assert judge(rules, before, age=3600, final=False).keep is None  # the text may still hold 5G
    assert judge(rules, before, age=3600, final=True).rule == "keep: no keep rule matched"
    assert judge(rules, entry_fields("Fibre news", "u", None, []), age=None, final=False).keep is True
    assert judge(rules, entry_fields("Sponsored fibre", "u", None, []), age=None, final=False).rule \
        == "block title:(?i)sponsored"
    assert judge(rules, {**before, "text": "The 5G rollout"}, age=31 * 86400, final=True).rule == "max_age 30d"
    keep_on_title = rule_set((), ("title:(?i)fibre",), None)
    assert judge(keep_on_title, before, age=None, final=False).keep is False  # decided on the feed's title

    entries = [Entry(guid=str(n), url=f"https://x.test/{n}", title=t, published=p) for n, (t, p) in enumerate(
        [("Sponsored: deals", None), ("Fibre", "2020-01-01T00:00:00Z"), ("Fibre", None), ("Towers", None)])]
    kept, dropped = filter_entries(rules, entries, NOW)
    assert [e.guid for e in kept] == ["2", "3"]
    assert dropped == {"block title:(?i)sponsored": 1, "max_age 30d": 1}
    assert [parse_age(a) for a in ("90s", "90m", "12h", "30d", "2w")] == [90, 5400, 43200, 2592000, 1209600]
    for bad in ("30", "0d", "3y", 30):
        with pytest.raises(RuleError):
            parse_age(bad)


def test_request_settings_are_checked_read_at_the_edge_and_masked() -> None:
    feed = source_from_dict({"name": "p", "url": "https://p.test/feed", "headers": {"X-Api-Key": "k"},
                             "cookie": "s=1", "user_agent": "Bot/1", "basic_auth_user": "me",
                             "basic_auth_password_env": "P_PASS"})
    assert request_headers(feed, {"P_PASS": "pw"}) == {"X-Api-Key": "k", "Cookie": "s=1", "User-Agent": "Bot/1",
                                                       "Authorization": "Basic bWU6cHc="}
    with pytest.raises(RuleError, match="the environment variable P_PASS is not set"):
        request_headers(feed, {})
    shown = masked(source_to_dict(feed))
    assert shown["headers"] == {"X-Api-Key": MASK} and shown["cookie"] == MASK and shown["basic_auth_user"] == "me"
    for fields, key, message in [
        ({"headers": {"X-A": "a\nb"}}, "headers", "newline"),
        ({"headers": {"Host": "evil"}}, "headers", "cannot be set here"),
        ({"headers": {"Bad Name": "x"}}, "headers", "is not a header name"),
        ({"cookie": "a\r\nb"}, "cookie", "newline"),
        ({"basic_auth_user": "me"}, "basic_auth_password_env", "set both or neither"),
        ({"basic_auth_user": "me", "basic_auth_password_env": "P", "headers": {"Authorization": "x"}}, "headers",
         "cannot both be set"),
        ({"selector": "html"}, "selector", "selects the whole page"),
        ({"strip": ["a[", "aside"]}, "strip", "is not a CSS selector"),
    ]:
        with pytest.raises(SourceInvalid) as caught:
            source_from_dict({"name": "p", "url": "https://p.test/feed", **fields})
        assert message in caught.value.fields[key], fields


def test_selectors_strip_and_choose_and_refuse_the_whole_page() -> None:
    from trafilatura.utils import load_html

    tree = load_html("<html><body><article><div class='c'><p>One</p><div class='c'><p>Two</p></div></div>"
                     "<aside>x</aside><aside>y</aside></article></body></html>")
    assert strip_elements(tree, ("aside", ".none")) == {"aside": 2, ".none": 0}
    outcome, html = select_body(tree, "div.c")
    assert outcome == "matched" and html is not None and html.count("<p>Two</p>") == 1  # nested match taken once
    assert select_body(tree, "section")[0] == "missed" and select_body(tree, "body > *, body")[0] == "whole page"
    for css in ("body", "*", ":root", "html > body"):
        with pytest.raises(SelectorInvalid):
            check_selector(css, body=True)
    assert check_selector(" article .entry-content ", body=True) == "article .entry-content"


def test_defaults_in_the_feeds_file_are_checked_and_applied_with_the_sources(tmp_path: Path) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text('[defaults]\nblock = ["url:/podcast/"]\nmax_age = "30d"\n\n[[feeds]]\nname = "a"\n'
                    'url = "https://a.test/feed"\nblock = ["title:x"]\n')
    sources = load_sources(path)
    assert sources.defaults == {"block": ["url:/podcast/"], "max_age": "30d"}
    change, report = plan_file(Snapshot(1, {}), sources.feeds, NOW, "now", sources.defaults)
    assert change.defaults == sources.defaults and "[defaults]" in report.updated
    same, _ = plan_file(Snapshot(1, {}, defaults=sources.defaults), [], NOW, "now", sources.defaults)
    assert same.defaults is None
    path.write_text('feeds = []\n[defaults]\nselector = "article"\n')
    with pytest.raises(ConfigError, match=r"\[defaults\]: selector unknown key"):
        load_sources(path)
    with pytest.raises(SourceInvalid, match="invalid regex"):
        defaults_from_dict({"keep": ["title:("]})


def test_a_sources_headers_go_to_its_host_only_not_across_a_redirect(site: Site) -> None:
    site.add("/page", "<p>here</p>")
    site.add("/away", "", status=302, headers={"Location": site.url("/page").replace("127.0.0.1", "localhost")})
    with HttpClient(HttpSettings(allow_private=True, deadline=5)) as client:
        client.get(site.url("/page"), headers={"X-Api-Key": "k", "User-Agent": "Bot/1"})
        client.get(site.url("/away"), headers={"X-Api-Key": "k", "User-Agent": "Bot/1"})
        client.get(site.url("/page"))
    first, hop_from, hop_to, plain = site.requests
    assert first.headers["x-api-key"] == "k" and hop_from.headers["x-api-key"] == "k"
    assert "x-api-key" not in hop_to.headers and hop_to.headers["user-agent"] == "Bot/1"  # another host
    assert "x-api-key" not in plain.headers and plain.headers["user-agent"].startswith("feedstream/")
