"""Near-duplicates across publishers: MinHash/LSH in the atomic publish script, and the pipeline end to end."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from tests.pipeline_helpers import articles, make_context, run_burst, write_feeds
from tests.site import Site
from tests.sitegen import partner_page, rss2, telecoms_page, wire_story
from worker.dedupe import minhash
from worker.models import Article
from worker.pipeline.articles import near_key
from worker.store import Store


def _article(n: int, text: str, feed: str = "f") -> Article:
    return Article(id=f"{n:024x}", url=f"https://pub{n}.example/a", title=f"t{n}", text=text, feed=feed)


def _publish(store: Store, n: int, text: str):
    article = _article(n, text)
    return store.publish(article, url_keys=[f"u{n}"], text_key=None, near=near_key(text))


def test_signature_is_stable_and_separates_copies_from_distinct_stories() -> None:
    original = wire_story(1).body_text
    copy = "LONDON (Wire) — " + "\n\n".join(wire_story(1).paragraphs[:-1])
    other = wire_story(2).body_text
    a, b, c = minhash.signature(original), minhash.signature(copy), minhash.signature(other)
    assert a is not None and b is not None and c is not None
    assert a.packed() == minhash.signature(original).packed()  # stored signatures must compare across runs
    assert len(a.packed()) == 2 * minhash.PERMUTATIONS and len(a.bands()) == minhash.BANDS
    assert minhash.similarity(a, b) >= minhash.THRESHOLD > minhash.similarity(a, c)
    assert set(a.bands()) & set(b.bands())
    assert minhash.signature("too short to judge") is None


def test_mark_publishes_the_copy_with_the_originals_id_and_cluster(redis_client: redis.Redis) -> None:
    store = Store(redis_client, near_mode="mark")
    s = wire_story(3)
    first = _publish(store, 1, s.body_text)
    copy = _publish(store, 2, "PARIS (Wire) — " + "\n\n".join(s.paragraphs[:-1]))
    second_copy = _publish(store, 3, s.body_text + "\n\n(Reporting by A. Writer)")
    distinct = _publish(store, 4, wire_story(4).body_text)
    assert first.outcome == "published" and first.duplicate_of is None and first.cluster == first.article_id
    for result in (copy, second_copy):
        assert result.outcome == "published"
        assert result.duplicate_of == first.article_id and result.cluster == first.article_id
    assert distinct.duplicate_of is None
    docs = {doc["id"]: doc for doc in articles(redis_client)}
    assert docs[copy.article_id]["duplicate_of"] == first.article_id
    assert docs[copy.article_id]["cluster"] == first.article_id
    assert docs[first.article_id]["duplicate_of"] is None and docs[first.article_id]["cluster"] == first.article_id
    assert store.counters()["duplicates_near"] == 2
    # the index expires with the window
    ttl = redis_client.ttl(f"feedstream:nd:sig:{first.article_id}")
    assert 0 < ttl <= 30 * 86400


def test_a_retried_copy_is_not_published_twice(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    s = wire_story(5)
    _publish(store, 1, s.body_text)
    text = "\n\n".join(s.paragraphs[:-1])
    assert _publish(store, 2, text).outcome == "published"
    assert _publish(store, 2, text).outcome == "already"
    assert len(articles(redis_client)) == 2


def test_drop_withholds_copies_and_counts_them(redis_client: redis.Redis) -> None:
    store = Store(redis_client, near_mode="drop")
    s = wire_story(6)
    first = _publish(store, 1, s.body_text)
    copy = _publish(store, 2, "\n\n".join(s.paragraphs[:-1]))
    assert copy.outcome == "near_dropped" and copy.duplicate_of == first.article_id
    assert _publish(store, 2, "\n\n".join(s.paragraphs[:-1])).outcome == "already"
    assert [doc["id"] for doc in articles(redis_client)] == [first.article_id]
    assert store.counters()["duplicates_near_dropped"] == 1


def test_off_publishes_copies_unmarked_and_indexes_nothing(redis_client: redis.Redis) -> None:
    store = Store(redis_client, near_mode="off")
    s = wire_story(7)
    _publish(store, 1, s.body_text)
    copy = _publish(store, 2, "\n\n".join(s.paragraphs[:-1]))
    assert copy.outcome == "published" and copy.duplicate_of is None
    assert not list(redis_client.scan_iter(match="feedstream:nd:*"))


def test_a_short_window_lets_the_index_expire(redis_client: redis.Redis) -> None:
    store = Store(redis_client, near_window=1)
    s = wire_story(8)
    first = _publish(store, 1, s.body_text)
    keys = list(redis_client.scan_iter(match="feedstream:nd:*"))
    sig_key = f"feedstream:nd:sig:{first.article_id}"
    assert sig_key in {k.decode() for k in keys} and redis_client.ttl(sig_key) == 1
    # band records: one string per bucket byte of this period, kept a window past the period's end (here 1-2 s)
    assert 1 < len(keys) <= 1 + minhash.BANDS
    assert all(1 <= redis_client.ttl(k) <= 2 for k in keys if k.decode() != sig_key)
    redis_client.delete(*keys)  # what expiry does after the window; no sleeping in tests
    assert _publish(store, 2, "\n\n".join(s.paragraphs[:-1])).duplicate_of is None
    assert first.duplicate_of is None


def test_burst_marks_each_syndicated_copy_and_no_original(
        redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    origin, partner = Site().start(), Site().start()
    try:
        originals = [wire_story(n) for n in range(100, 106)]
        origin_items = [(s, origin.add(f"/news/{s.slug}/", telecoms_page(s, "Origin News"))) for s in originals]
        # The partner runs four of the origin's stories (dateline added, last paragraph cut,
        # headline rewritten, its own template, rel=canonical naming the origin's page) and two of its own.
        partner_items = []
        for s, link in origin_items[:4]:
            page = partner_page(s, dateline="BRUSSELS (Wire)", canonical=link, headline=f"Wire: {s.title[9:]}")
            partner_items.append((s, partner.add(f"/world/{s.slug}-syndicated", page)))
        own = [wire_story(n) for n in (200, 201)]
        partner_items += [(s, partner.add(f"/local/{s.slug}", partner_page(s, cut_last=False))) for s in own]
        feeds = {
            "origin": origin.add("/feed.xml", rss2("Origin", origin_items, with_content=False),
                                 "application/rss+xml"),
            "partner": partner.add("/rss", rss2("Partner", partner_items, with_content=False),
                                   "application/rss+xml"),
        }
        context = make_context(redis_url, write_feeds(feeds_file, feeds))
        run_burst(context)
    finally:
        origin.stop()
        partner.stop()

    docs = articles(redis_client)
    by_url = {doc["url"]: doc for doc in docs}
    assert len(docs) == len(origin_items) + len(partner_items)  # copies are marked, not dropped
    for _s, link in origin_items:
        assert by_url[link]["duplicate_of"] is None, link
        assert by_url[link]["cluster"] == by_url[link]["id"]
    for (_s, copy_link), (_s2, original_link) in zip(partner_items[:4], origin_items[:4], strict=True):
        original = by_url[original_link]
        assert by_url[copy_link]["duplicate_of"] == original["id"], copy_link
        assert by_url[copy_link]["cluster"] == original["id"]
        assert by_url[copy_link]["text"].startswith("BRUSSELS (Wire)")
    for _s, link in partner_items[4:]:
        assert by_url[link]["duplicate_of"] is None
    assert context.store.counters()["duplicates_near"] == 4


def test_same_site_canonical_link_is_a_url_claim(
        site: Site, redis_client: redis.Redis, redis_url: str, feeds_file: Path) -> None:
    s = wire_story(300)
    canonical = site.url(f"/news/{s.slug}/")
    page = partner_page(s, canonical=canonical, cut_last=False)
    site.add(f"/news/{s.slug}/", page)
    # The same article under an AMP path (shorter, so its text claim differs) in a second feed:
    # its own rel=canonical makes it the same article, not a near-copy to publish.
    amp = site.add(f"/amp/{s.slug}", partner_page(s, canonical=canonical, cut_last=True))
    feeds = {
        "web": site.add("/web.xml", rss2("Web", [(s, canonical)], with_content=False), "application/rss+xml"),
        "amp": site.add("/amp.xml", rss2("AMP", [(s, amp)], with_content=False), "application/rss+xml"),
    }
    context = make_context(redis_url, write_feeds(feeds_file, feeds))
    run_burst(context)
    [doc] = articles(redis_client)
    assert doc["url"] == canonical
    assert context.store.counters().get("duplicates_exact", 0) == 1


def test_near_duplicate_settings_are_read_and_checked() -> None:
    import pytest

    from worker.errors import ConfigError
    from worker.settings import Settings

    default = Settings.from_env({})
    assert default.near_duplicates == "mark" and default.near_window_days == 30
    chosen = Settings.from_env({"FEEDSTREAM_NEAR_DUPLICATES": "Drop", "FEEDSTREAM_NEAR_WINDOW_DAYS": "7"})
    assert chosen.store_options()["near_mode"] == "drop" and chosen.store_options()["near_window"] == 7 * 86400
    with pytest.raises(ConfigError, match="FEEDSTREAM_NEAR_DUPLICATES"):
        Settings.from_env({"FEEDSTREAM_NEAR_DUPLICATES": "maybe"})


def test_ids_that_are_not_hex_digests_index_and_match_too(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    s = wire_story(9)
    original = Article(id="original-story", url="https://a.example/1", title="t", text=s.body_text, feed="f")
    copy_text = "\n\n".join(s.paragraphs[:-1])
    copy = Article(id="copy-elsewhere", url="https://b.example/1", title="t", text=copy_text, feed="g")
    assert store.publish(original, url_keys=["a1"], text_key=None, near=near_key(s.body_text)).duplicate_of is None
    result = store.publish(copy, url_keys=["b1"], text_key=None, near=near_key(copy_text))
    assert result.duplicate_of == "original-story" and result.cluster == "original-story"


def test_full_buckets_overflow_to_longer_prefixes_and_copies_are_still_found(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    s = wire_story(10)
    near = near_key(s.body_text)
    period = int(time.time() // (store.near_window // 4))
    # the 1- and 2-hex-digit buckets the story's bands fall in already hold 4 KB of other articles' records
    full = {prefix for band in near.bands for prefix in (band[:1].hex()[:1], band[:1].hex())}
    for prefix in full:
        redis_client.set(f"feedstream:nd:b:{period}:{prefix}", bytes(18) * 228)
    original = _publish(store, 1, s.body_text)
    for band in near.bands:
        assert redis_client.strlen(f"feedstream:nd:b:{period}:{band[:2].hex()}") >= 18
    assert all(redis_client.strlen(f"feedstream:nd:b:{period}:{prefix}") == 18 * 228 for prefix in full)
    copy = _publish(store, 2, "\n\n".join(s.paragraphs[:-1]))
    assert copy.duplicate_of == original.article_id


def test_a_small_index_sits_in_the_first_level(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    for n in range(20):
        _publish(store, 100 + n, wire_story(200 + n).body_text)
    buckets = [k.decode().rsplit(":", 1)[1] for k in redis_client.scan_iter(match="feedstream:nd:b:*")]
    assert buckets and all(len(bucket) == 1 for bucket in buckets)  # 400 records in at most 16 strings
