"""Choosing among the precision, recall and feed bodies: length, measured link density, agreement, witnesses."""

from __future__ import annotations

from lxml import html as lxml_html

from worker.extract.candidates import Candidate, PageLinks, choose, coverage, looks_weak
from worker.extract.witness import missing_lede, summary_lead


def paras(topic: str, n: int) -> list[str]:
    return [f"In part {i} the {topic} programme reached site {i * 11} and the regulator approved budget {i}."
            for i in range(n)]


def summary_of(paragraphs: list[str], chars: int = 200) -> Candidate:
    """A feed's description as WordPress cuts it: the first ~200 characters."""
    text = " ".join(paragraphs)
    return Candidate("feed", [text[: text.rfind(" ", 0, chars)] + " […]"])


# -- measured link density -------------------------------------------------------------


def test_link_density_is_measured_against_the_pages_links() -> None:
    links = PageLinks(["Home", "World", "Opening bell: markets rally on rate hopes", "the central bank", "here"])
    menu = ["- Home", "- World", "- Opening bell: markets rally on rate hopes"]
    assert links.density(menu) == 1.0
    prose = ["Investors cheered after the central bank held rates, and you can read the statement here.",
             "World leaders met at home in the capital."]  # one-word links inside prose are not placed
    density = links.density(prose)
    assert 0.0 < density < 0.25
    assert PageLinks([]).density(menu) == 0.0


def test_each_link_counts_as_often_as_the_page_links_it() -> None:
    links = PageLinks(["Donald Trump"])
    text = ["Donald Trump said. Donald Trump added. Donald Trump left."]
    once = links.density(text)
    assert 0.0 < once < 0.5
    assert PageLinks(["Donald Trump"] * 3).density(text) > 2 * once


def test_subheadings_bullets_qa_and_table_rows_are_not_link_heavy() -> None:
    """The line-shape guess called these link lists; measured, they hold no link text at all."""
    article = ["Why it matters", "- Faster roaming for prepaid users", "- Lower wholesale rates",
               "Q: When does it start?", "A: In March.", "| Plan | Price |", "| Basic | 10 |",
               "What comes next"]
    links = PageLinks(["Home", "News", "Why it matters to investors", "Subscribe"])
    body = Candidate("precision", article, link_density=links.density(article))
    assert body.link_density == 0.0
    assert not looks_weak(body, None)


def test_links_are_read_off_the_parsed_page() -> None:
    tree = lxml_html.fromstring('<html><body><nav><a href="/">Home</a><a href="/w">World <b>news</b></a></nav>'
                                "<p>Body text with <a href='/x'>a linked phrase</a> in it.</p></body></html>")
    links = PageLinks.of_tree(tree)
    assert links.density(["- World news"]) == 1.0
    assert 0 < links.density(["Body text with a linked phrase in it."]) < 0.6


# -- summaries are witnesses, never rivals ----------------------------------------------


def test_a_summary_never_replaces_a_longer_page_body() -> None:
    body = paras("fibre", 12)
    summary = summary_of(body)
    for page in (Candidate("precision", body),  # the article
                 Candidate("precision", paras("cookie notice", 3)),  # another text, longer than the summary
                 Candidate("precision", body * 3, link_density=0.9)):  # link-heavy, but a full article's length
        assert choose(page, None, summary) is page


def test_a_summary_wins_only_over_less_text_or_a_short_block_of_links() -> None:
    summary = summary_of(paras("fibre", 12))
    assert choose(Candidate("precision", ["Accept cookies"]), None, summary) is summary
    menu = Candidate("precision", paras("menu", 4), link_density=0.9)
    assert choose(menu, None, summary) is summary


def test_a_page_that_holds_the_summary_needs_no_second_opinion() -> None:
    body = paras("fibre", 12)
    assert not looks_weak(Candidate("precision", body), summary_of(body))
    assert looks_weak(Candidate("precision", body[3:]), summary_of(body))  # the opening is missing


def test_recall_wins_when_it_holds_the_summary_the_precision_body_lacks() -> None:
    body = paras("fibre", 12)
    summary = summary_of(body)
    precision = Candidate("precision", body[2:])
    recall = Candidate("recall", body)
    assert choose(precision, recall, summary) is recall
    # a recall body that adds other text the summary does not vouch for loses
    assert choose(precision, Candidate("recall", paras("ads", 3) + body[2:]), summary) is precision


def test_the_summary_points_at_the_lede_the_extraction_left_out() -> None:
    lede = "Regulators in three countries opened an inquiry on Monday into wholesale fibre prices."
    body = [lede, *paras("fibre", 8)]
    page = lxml_html.fromstring(
        "<html><head><title>t</title><script>var d = '" + lede + "'</script></head><body>"
        f"<div class='lede'><strong>{lede[:20]}</strong>{lede[20:]}<p>{body[1]}</p></div>"
        + "".join(f"<p>{p}</p>" for p in body[2:]) + "</body></html>")
    precision = Candidate("precision", body[1:])
    lead = summary_lead(summary_of(body), precision)
    assert lead
    assert missing_lede(page, lead) == lede  # the div's own text, not the whole div, nor the script
    assert summary_lead(summary_of(body), Candidate("precision", body)) == []
    elsewhere = summary_of(["Shares of the carrier fell sharply after the chief executive resigned on Friday."])
    assert missing_lede(page, summary_lead(elsewhere, precision)) is None


# -- full texts ---------------------------------------------------------------------------


def test_without_a_feed_only_an_unusable_precision_body_is_weak() -> None:
    assert not looks_weak(Candidate("precision", paras("fibre", 2)), None)  # short, but no witness
    assert looks_weak(Candidate("precision", []), None)
    assert looks_weak(Candidate("precision", paras("menu", 5), link_density=0.8), None)


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


def test_recall_without_a_feed_replaces_only_an_unacceptable_body() -> None:
    assert choose(Candidate("precision", paras("fibre", 3)), Candidate("recall", paras("fibre", 4))).name == \
        "precision"
    assert choose(Candidate("precision", []), Candidate("recall", paras("fibre", 4))).name == "recall"
    links = Candidate("precision", paras("menu", 4), link_density=0.9)
    assert choose(links, Candidate("recall", paras("fibre", 4))).name == "recall"


def test_full_text_feed_wins_when_the_page_found_another_text_and_not_when_link_heavy() -> None:
    page = Candidate("precision", paras("cookie notice", 3))
    feed = Candidate("feed", paras("fibre", 20), link_density=0.05)
    assert looks_weak(page, feed)
    assert choose(page, None, feed).name == "feed"
    links = Candidate("feed", paras("fibre", 20), link_density=0.9)
    assert choose(page, None, links).name == "precision"
    agreeing = Candidate("precision", paras("fibre", 20))
    assert not looks_weak(agreeing, feed)
    assert choose(agreeing, None, feed).name == "precision"
