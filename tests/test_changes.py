"""What counts as a change (worker/dedupe/changes.py): pure, so every rule is a unit test."""

from __future__ import annotations

import pytest

from worker.dedupe.boilerplate import digest
from worker.dedupe.changes import Baseline, baseline, compare, entry_mark, is_volatile, learned, mark_moved
from worker.timefmt import epoch_from_iso

STORY = [
    "The council approved the harbour budget on Tuesday after a long debate about the runway.",
    "Twelve people were injured when the bridge collapsed, officials said in a statement.",
    "The minister said repairs would begin next month and cost about 40 million.",
]


@pytest.mark.parametrize("line", [
    "Updated 30 November 2026, 10:32 GMT", "1,234 views", "5 min read", "Last updated 3 hours ago",
    "This article has been viewed 1,234 times", "Published 30 Nov 2026, 09:30 UTC", "12 comments | 3 shares",
    "Share", "Mon 30 Nov 2026 10.32 EST",
])
def test_timestamps_and_counters_are_volatile(line: str) -> None:
    assert is_volatile(line)


@pytest.mark.parametrize("line", [
    "Twelve people died.", "The council approved 12 new homes.", "The toll rose to 14 on Monday.",
    STORY[0], "Updated: the minister has resigned.",
])
def test_story_text_is_not_volatile_even_with_numbers_and_dates(line: str) -> None:
    assert not is_volatile(line)


def test_only_noise_changed_is_no_change() -> None:
    old = baseline("Bridge collapse", "\n\n".join([*STORY, "Updated 10:32 GMT", "1,234 views"]))
    assert compare(old, "Bridge collapse", "\n\n".join([*STORY, "Updated 16:05 GMT", "1,873 views"])) is None
    assert compare(old, "Bridge collapse", "\n\n".join(STORY)) is None  # noise gone altogether
    # case, punctuation and spacing are no change either
    assert compare(old, "Bridge collapse!", "\n\n".join(p.upper().replace(",", "") for p in STORY)) is None


def test_a_corrected_figure_is_a_change_though_shingle_jaccard_would_hardly_move() -> None:
    old = baseline("Bridge collapse", "\n\n".join(STORY))
    corrected = [STORY[0], STORY[1].replace("Twelve", "Fourteen"), STORY[2]]
    change = compare(old, "Bridge collapse", "\n\n".join(corrected))
    assert change is not None
    assert (change.paragraphs_changed, change.paragraphs_added, change.paragraphs_removed) == (1, 0, 0)
    assert not change.title_changed
    assert 0 < change.changed_share < 0.5


def test_paragraphs_added_removed_and_the_title() -> None:
    old = baseline("Bridge collapse", "\n\n".join(STORY))
    change = compare(old, "Bridge collapse: toll rises", "\n\n".join([STORY[0], STORY[2], "A new paragraph.",
                                                                        "Another new one."]))
    assert change is not None
    assert (change.paragraphs_added, change.paragraphs_removed, change.paragraphs_changed) == (2, 1, 0)
    assert change.title_changed
    assert change.as_dict()["paragraphs_added"] == 2


def test_boilerplate_learned_since_the_first_version_is_no_change() -> None:
    promo = "Sign up for our newsletter to get the latest news."
    old = baseline("Bridge collapse", "\n\n".join([*STORY, promo]))
    counts = {digest(promo): 5, digest(STORY[0]): 1}
    ignore = learned(old.paragraphs, counts, threshold=3)
    assert ignore == {digest(promo)}
    assert compare(old, "Bridge collapse", "\n\n".join(STORY), ignore) is None  # stripped now, not removed
    assert compare(old, "Bridge collapse", "\n\n".join(STORY)) is not None


def test_a_baseline_round_trips_through_its_packed_bytes() -> None:
    old = baseline("Bridge collapse", "\n\n".join(STORY))
    assert len(old.packed()) == 8 * len(STORY)
    assert Baseline.unpack(old.title, old.packed()) == old


def test_an_entry_mark_moves_with_its_words_or_a_later_updated_time() -> None:
    at = epoch_from_iso("2026-11-30T10:00:00Z")
    mark = entry_mark("Title", "<p>Body text.</p>", None, at)
    assert len(mark) == 12
    assert not mark_moved(mark, entry_mark("Title", '<p class="x">Body  text.</p><img src="/px?t=9">', None, at))
    assert mark_moved(mark, entry_mark("Title", "<p>Body text, corrected.</p>", None, at))
    assert mark_moved(mark, entry_mark("New title", "<p>Body text.</p>", None, at))
    assert mark_moved(mark, entry_mark("Title", "<p>Body text.</p>", None, at + 60))
    assert not mark_moved(mark, entry_mark("Title", "<p>Body text.</p>", None, at - 60))  # backwards: no
    assert mark_moved(entry_mark("T", None, None, None), entry_mark("T", None, None, at))
