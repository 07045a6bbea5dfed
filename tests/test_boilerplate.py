"""Publisher boilerplate learned per feed: pure decisions, the Redis counts, and the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import rss2, story, telecoms_page
from worker.dedupe import boilerplate
from worker.models import Article
from worker.store import Store

# Neither a newsletter plea nor a share line: no page-level rule knows it for furniture.
BOILER = ("This report is part of Network Week, our coverage produced with the support of the "
          "partners listed on our events page.")


def test_fingerprint_ignores_case_punctuation_and_markup() -> None:
    assert boilerplate.fingerprint("**Read the Network Week report.**") == boilerplate.fingerprint(
        "read the network week report")
    assert boilerplate.fingerprint("x " * 300) is None  # long paragraphs are story text


def test_strip_needs_threshold_articles_and_never_empties_an_article() -> None:
    paras = ["Story sentence one about fibre.", BOILER]
    fp = boilerplate.fingerprint(BOILER)
    assert fp is not None
    assert boilerplate.strip_paragraphs(paras, {fp: 2}, threshold=3) == (paras, [])
    assert boilerplate.strip_paragraphs(paras, {fp: 3}, threshold=3) == (paras[:1], [BOILER])
    assert boilerplate.strip_paragraphs([BOILER], {fp: 9}) == ([BOILER], [])
    assert boilerplate.strip_markdown(f"## Head\n\n{BOILER}\n\n- a\n- b", [BOILER]) == "## Head\n\n- a\n- b"


def _publish(store: Store, article_id: str, fingerprints: list[str], feed: str = "f", text_key: str | None = None):
    article = Article(id=article_id, url=f"https://pub.example/{article_id}", title="t", text="text", feed=feed)
    return store.publish(article, url_keys=[article_id], text_key=text_key, boilerplate=fingerprints)


def test_only_published_articles_are_counted_and_each_once(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    fps = boilerplate.fingerprints(["one line here", BOILER])
    assert store.boilerplate_counts("f", fps) == {}  # nothing earlier
    assert _publish(store, "article-1", fps).outcome == "published"
    assert _publish(store, "article-1", fps).outcome == "already"  # a retry counts nothing twice
    assert store.boilerplate_counts("f", fps) == {fps[0]: 1, fps[1]: 1}
    assert _publish(store, "article-2", fps[1:], text_key="same-text").outcome == "published"
    assert store.boilerplate_counts("f", fps) == {fps[0]: 1, fps[1]: 2}
    # an exact copy of article-2 is not published, and teaches nothing
    assert _publish(store, "article-3", fps[1:], text_key="same-text").outcome == "duplicate"
    assert store.boilerplate_counts("f", fps) == {fps[0]: 1, fps[1]: 2}
    assert store.boilerplate_counts("other", fps) == {}
    period = store.boilerplate_period()
    assert redis_client.ttl(f"feedstream:boiler-count:f:{period}") > 0
    assert redis_client.ttl(f"feedstream:boiler-seen:f:{period}") > 0


def test_a_feeds_boilerplate_memory_is_back_to_zero_a_ttl_after_its_last_publish(redis_client: redis.Redis) -> None:
    import time

    store = Store(redis_client, boilerplate_ttl=4)  # periods of 1 s; a period's keys live 4 s from its start
    fps = boilerplate.fingerprints(["one line here", BOILER])
    for n in range(3):
        _publish(store, f"a{n}", fps[1:] if n else fps)
    assert store.boilerplate_counts("f", fps) == {fps[0]: 1, fps[1]: 3}
    assert list(redis_client.scan_iter(match="feedstream:boiler*"))
    deadline = time.monotonic() + 8
    while list(redis_client.scan_iter(match="feedstream:boiler*")) and time.monotonic() < deadline:
        time.sleep(0.25)  # Redis's own expiry, no deletes by the test
    assert not list(redis_client.scan_iter(match="feedstream:boiler*"))
    assert store.boilerplate_counts("f", fps) == {}


def test_boilerplate_of_the_old_form_is_still_read_until_it_expires(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    fps = boilerplate.fingerprints(["one line here", BOILER, "another line"])
    # as written before issue 18: one counts hash and one once-seen string per feed
    redis_client.hset("feedstream:boiler:f", bytes.fromhex(fps[1]), 4)
    redis_client.set("feedstream:boiler-recent:f", bytes.fromhex(fps[0]))
    assert store.boilerplate_counts("f", fps) == {fps[0]: 1, fps[1]: 4}
    _publish(store, "a1", fps)
    assert store.boilerplate_counts("f", fps) == {fps[0]: 2, fps[1]: 5, fps[2]: 1}


def _serve(site: Site, numbers: range, extra: dict[int, str]) -> list[tuple]:
    items = []
    for n in numbers:
        s = story(n)
        s.paragraphs = [*s.paragraphs, BOILER] + ([extra[n]] if n in extra else [])
        items.append((s, site.add(f"/news/{s.slug}/", telecoms_page(s))))
    return items


def test_boilerplate_recurring_in_five_articles_is_stripped_from_the_sixth_and_later(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    once = "A correction was appended to this story after the operator revised its quarterly figures."
    first = _serve(site, range(5), {})
    feed_url = site.add("/feed/", rss2("Publisher", first, with_content=False), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"pub": feed_url}))
    run_burst(context)
    docs = articles(redis_client)
    assert len(docs) == 5
    assert BOILER in docs[0]["text"]  # first sight: nothing is stripped

    later = _serve(site, range(5, 8), {6: once})
    site.add("/feed/", rss2("Publisher", first + later, with_content=False), "application/rss+xml")
    run_burst(context)
    new = {doc["url"]: doc for doc in articles(redis_client)[5:]}
    assert set(new) == {link for _, link in later}
    for s, link in later:
        doc = new[link]
        assert BOILER not in doc["text"] and BOILER not in doc["markdown"]
        assert doc["boilerplate_removed"] == 1
        assert doc["text"] == "\n\n".join(p for p in s.paragraphs if p != BOILER)
    assert once in new[later[1][1]]["text"]  # a paragraph present once is kept

    # another feed has learned nothing from this one
    other = _serve(site, range(20, 21), {})
    site.add("/other/", rss2("Other", other, with_content=False), "application/rss+xml")
    context = make_context(redis_url, write_feeds(feeds_file, {"pub": feed_url, "other": site.url("/other/")}))
    run_burst(context)
    [doc] = [d for d in articles(redis_client) if d["feed"] == "other"]
    assert BOILER in doc["text"]


def test_once_seen_fingerprints_past_the_recent_window_are_forgotten_repeated_ones_stay(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.store.boilerplate

    monkeypatch.setattr(worker.store.boilerplate, "BOILERPLATE_RECENT", 4)
    store = Store(redis_client)
    fp = boilerplate.fingerprint
    for n in range(6):
        _publish(store, f"a{n}", [fp(f"story {n} one"), fp(f"story {n} two"), fp("promo")])
    counts = store.boilerplate_counts("f", [fp("promo"), fp("story 5 one"), fp("story 0 one")])
    # the recent window holds 4 once-seen fingerprints: the latest articles' story lines; the promo is counted
    assert counts == {fp("promo"): 6, fp("story 5 one"): 1}
    period = store.boilerplate_period()
    assert redis_client.hlen(f"feedstream:boiler-count:f:{period}") == 1
    # past 4 once-seen records the period keeps its latest half, then appends again
    assert redis_client.strlen(f"feedstream:boiler-seen:f:{period}") <= 4 * 8
    # a story line coming back while still remembered is counted from then on
    _publish(store, "a6", [fp("story 5 two")])
    assert store.boilerplate_counts("f", [fp("story 5 two")]) == {fp("story 5 two"): 2}


def test_past_the_cap_fingerprints_seen_in_two_articles_are_forgotten(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.store.boilerplate

    monkeypatch.setattr(worker.store.boilerplate, "BOILERPLATE_CAP", 3)
    store = Store(redis_client)
    fp = boilerplate.fingerprint
    for n in range(3):
        _publish(store, f"promo{n}", [fp("promo")])
    for n in range(2):  # the second sight of three lines takes the hash to 4 > 3 fields: those at 2 go
        _publish(store, f"a{n}", [fp(f"pair {k}") for k in range(3)] + [fp("promo")])
    counts = store.boilerplate_counts("f", [fp("promo"), *(fp(f"pair {k}") for k in range(3))])
    # the pairs are back to "seen once" (their first sight is still among the recent ones)
    assert counts == {fp("promo"): 5, **{fp(f"pair {k}"): 1 for k in range(3)}}
    assert redis_client.hlen(f"feedstream:boiler-count:f:{store.boilerplate_period()}") == 1
