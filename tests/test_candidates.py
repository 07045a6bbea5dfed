"""Choosing among the precision, recall and feed bodies: length, link density, agreement."""

from __future__ import annotations

from worker.extract.candidates import Candidate, choose, coverage, looks_weak


def paras(topic: str, n: int) -> list[str]:
    return [f"In part {i} the {topic} programme reached site {i * 11} and the regulator approved budget {i}."
            for i in range(n)]


def test_without_a_feed_only_an_unusable_precision_body_is_weak() -> None:
    assert not looks_weak(Candidate("precision", paras("fibre", 2)), None)  # short, but no witness
    assert looks_weak(Candidate("precision", []), None)


def test_recall_wins_when_it_agrees_better_with_the_full_text_feed() -> None:
    full = paras("fibre", 20)
    precision = Candidate("precision", full[:14])
    recall = Candidate("recall", full[:19])
    feed = Candidate("feed", full, link_density=0.0)
    assert looks_weak(precision, feed) is False or coverage(feed, precision) < 1
    assert choose(precision, recall, feed).name == "recall"


def test_recall_that_drops_the_precision_text_or_balloons_loses() -> None:
    full = paras("fibre", 20)
    precision = Candidate("precision", full[:14])
    feed = Candidate("feed", full, link_density=0.0)
    assert choose(precision, Candidate("recall", full[5:]), feed).name == "precision"  # lost 5 paragraphs
    assert choose(precision, Candidate("recall", full + paras("ads", 20)), feed).name == "precision"


def test_recall_without_a_feed_replaces_only_an_empty_body() -> None:
    assert choose(Candidate("precision", paras("fibre", 3)), Candidate("recall", paras("fibre", 4))).name == \
        "precision"
    assert choose(Candidate("precision", []), Candidate("recall", paras("fibre", 4))).name == "recall"


def test_feed_wins_when_the_page_found_another_text_and_not_when_link_heavy() -> None:
    page = Candidate("precision", paras("cookie notice", 3))
    feed = Candidate("feed", paras("fibre", 20), link_density=0.05)
    assert looks_weak(page, feed)
    assert choose(page, None, feed).name == "feed"
    links = Candidate("feed", paras("fibre", 20), link_density=0.9)
    assert choose(page, None, links).name == "precision"
    summary = Candidate("feed", paras("fibre", 2), link_density=0.0)  # a summary is no full text
    assert not looks_weak(page, summary)  # so no second extraction is spent on it
    assert choose(page, None, summary).name == "precision"
