"""Extraction quality and speed on the real pages of ../shared/corpus/aeb-dev.

Scores, in one run, with the benchmark's own metric (see the corpus README):

- (a) plain ``trafilatura.extract(include_comments=False, favor_precision=True)``;
- (b) feedstream's ``extract_article`` as the pipeline calls it for an entry whose
  feed gives author and date (page metadata via ``pagemeta`` + extraction + clean-up);
- (c) the same for an entry without them (the date and byline searches run);
- for reference, (m) ``bare_extraction(..., with_metadata=True)``: trafilatura's
  own metadata pass, which ``pagemeta`` replaces;

and prints precision, recall, F1, ms/page (CPU time of this process, best of
several rounds, so that other load on the machine disturbs it less) and the ratio
of the times. Both read the same str, decoded once with ``decode_html``.

Also printed: which candidate of the chain won on how many pages (without a feed
to agree with, recall only overrules an unusable precision body, see
``worker/extract/candidates.py``), and the cost of the Markdown rendering inside (b).

Held-out check: ``--heldout DIR`` (default ``$FEEDSTREAM_HELDOUT``, else
``../shared/corpus/heldout``) scores (a) and (b) the same way on another set of
real pages in the same layout (``html/<key>.html.gz`` + ``ground-truth.json``),
so that the clean-up rules, written while reading aeb-dev's misses, are seen
to hold on pages they were not written from. The bench says so when there is none.

``--stages`` adds where (b)'s time goes: CPU ms/page of each part ``extract_article``
calls (trafilatura's parse and extraction, and what we add around them), best of the
rounds, each part timed by a wrapper around it (a few microseconds of its own per call);
"rest" is (b) less the parts: the orchestration, candidates' tokens, the result's assembly.
``decode_html`` (bytes -> str, which the pipeline runs before (b)) is timed apart.

Usage: .venv/bin/python bench/extraction.py [--rounds N] [--diff] [--stages] [--heldout DIR]
(``--diff`` lists the pages whose score the clean-up changed.)
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "aeb-dev"
sys.path.insert(0, str(REPO))

import trafilatura  # noqa: E402

from worker.errors import ExtractError  # noqa: E402
from worker.extract import decode_html, extract_article  # noqa: E402

_TOKEN = re.compile(r"\w+")


def shingles(text: str, size: int = 4) -> Counter[tuple[str, ...]]:
    """4-word shingles of the lower-cased \\w+ tokens, with multiplicity."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    return Counter(tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


def page_pr(prediction: str, truth: str) -> tuple[float, float]:
    """Per-page precision and recall over shingles (an empty prediction scores 0, 0)."""
    pred, gold = shingles(prediction), shingles(truth)
    if not pred or not gold:
        return (1.0, 1.0) if not pred and not gold else (0.0, 0.0)
    common = sum((pred & gold).values())
    return common / sum(pred.values()), common / sum(gold.values())


def load(corpus: Path = CORPUS) -> list[tuple[str, str, str, str]]:
    """(key, url, decoded html, ground-truth body) per page."""
    truth = json.loads((corpus / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for path in sorted((corpus / "html").glob("*.html.gz")):
        key = path.name.removesuffix(".html.gz")
        html = decode_html(gzip.decompress(path.read_bytes()))
        pages.append((key, truth[key].get("url") or "", html, truth[key]["articleBody"]))
    return pages


def plain(html: str, url: str) -> str:
    return trafilatura.extract(html, url=url, include_comments=False, favor_precision=True) or ""


# What a feed gives with each entry (WordPress feeds date and credit every item): with
# them the pipeline skips the page-wide date and byline searches.
FEED_AUTHOR = "Staff Writer"
FEED_PUBLISHED = "2026-11-23T09:30:00Z"


def ours(html: str, url: str) -> str:
    try:
        return extract_article(html, url=url, entry_author=FEED_AUTHOR, entry_published=FEED_PUBLISHED).text
    except ExtractError:
        return ""


def ours_detail(html: str, url: str) -> tuple[str, str, float]:
    """(text, winning candidate, ms spent rendering Markdown) of (b)."""
    from trafilatura.utils import load_html

    from worker.extract.markdown import markdown

    try:
        article = extract_article(html, url=url, entry_author=FEED_AUTHOR, entry_published=FEED_PUBLISHED)
    except ExtractError:
        return "", "none", 0.0
    document = trafilatura.bare_extraction(load_html(html), url=url, include_comments=False, favor_precision=True)
    if document is None:
        return article.text, article.extraction, 0.0
    kept = article.text.split("\n\n")  # the same call (b) makes
    start = time.process_time()
    markdown(document.body, kept)
    return article.text, article.extraction, (time.process_time() - start) * 1000


def ours_no_feed_metadata(html: str, url: str) -> str:
    try:
        return extract_article(html, url=url).text
    except ExtractError:
        return ""


def with_metadata(html: str, url: str) -> str:
    document = trafilatura.bare_extraction(
        html, url=url, include_comments=False, favor_precision=True, with_metadata=True
    )
    return document.text if document is not None else ""


def timed(fn: Callable[[str, str], str], pages: list[tuple[str, str, str, str]]) -> tuple[list[str], float]:
    """Outputs and CPU ms per page of one pass."""
    start = time.process_time()
    outputs = [fn(html, url) for _, url, html, _ in pages]
    return outputs, (time.process_time() - start) / len(pages) * 1000


def score(outputs: list[str], pages: list[tuple[str, str, str, str]]) -> tuple[float, float, float]:
    prs = [page_pr(out, page[3]) for out, page in zip(outputs, pages, strict=True)]
    p = sum(x for x, _ in prs) / len(prs)
    r = sum(y for _, y in prs) / len(prs)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def stages(pages: list[tuple[str, str, str, str]], raw: list[bytes], rounds: int) -> None:
    """Print CPU ms/page of each part of (b), best of ``rounds``, and decode_html's apart."""
    from worker.extract import article
    from worker.extract.candidates import PageLinks

    # (where the call is looked up, name, label): the parts extract_article calls
    parts = [
        (article, "load_html", "trafilatura load_html (parse)"),
        (article, "bare_extraction", "trafilatura bare_extraction"),
        (article, "page_metadata", "page_metadata"),
        (article, "page_hints", "page_hints"),
        (PageLinks, "of_tree", "PageLinks.of_tree"),
        (article, "clean_paragraphs", "clean_paragraphs"),
        (article, "drop_link_lists", "drop_link_lists"),
        (PageLinks, "density_of", "PageLinks.density_of"),
        (article, "markdown", "markdown"),
        (article, "detect_language", "detect_language"),
        (article, "word_count", "word_count"),
    ]
    spent: dict[str, float] = {}

    def timed_part(fn: Callable[..., object], label: str) -> Callable[..., object]:
        def part(*args: object, **kwargs: object) -> object:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start
        return part

    originals = [(owner, name, vars(owner)[name]) for owner, name, _ in parts]
    for (owner, name, label), (_, _, original) in zip(parts, originals, strict=True):
        if isinstance(original, classmethod):
            setattr(owner, name, classmethod(timed_part(original.__func__, label)))
        else:
            setattr(owner, name, timed_part(original, label))
    best: dict[str, float] = {}
    try:
        for _ in range(rounds):
            spent.clear()
            _, total = timed(ours, pages)
            for label, seconds in spent.items():
                best[label] = min(best.get(label, float("inf")), seconds / len(pages) * 1000)
            best["(b) in all"] = min(best.get("(b) in all", float("inf")), total)
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    decode = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for body in raw:
            decode_html(body, "text/html; charset=utf-8")
        decode = min(decode, (time.process_time() - start) / len(raw) * 1000)
    in_parts = sum(ms for label, ms in best.items() if label != "(b) in all")
    print(f"where (b)'s time goes, CPU ms/page, best of {rounds} rounds (each part's best apart):")
    for label, ms in sorted(best.items(), key=lambda item: -item[1]):
        print(f"  {label:34s} {ms:6.2f}")
    print(f"  {'rest (orchestration, tokens, ...)':34s} {best['(b) in all'] - in_parts:6.2f}")
    print(f"  {'decode_html (before (b), apart)':34s} {decode:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; the best counts")
    parser.add_argument("--diff", action="store_true", help="list pages whose F1 the clean-up changed")
    parser.add_argument("--stages", action="store_true", help="print where (b)'s time goes, part by part")
    parser.add_argument("--heldout", type=Path,
                        default=Path(os.environ.get("FEEDSTREAM_HELDOUT") or CORPUS.parent / "heldout"),
                        help="another set of real pages with ground truth, same layout as aeb-dev")
    args = parser.parse_args()
    if not (CORPUS / "ground-truth.json").is_file():
        print(f"corpus not found at {CORPUS}; nothing to benchmark")
        return 0
    logging.disable(logging.CRITICAL)  # trafilatura logs every discarded page

    pages = load()
    # warm-up: imports, lazy models (py3langid), dateparser's regex compilation
    for _, url, html, _ in pages:
        plain(html, url)
        ours(html, url)
    rounds = max(1, args.rounds)
    contenders = {
        "(a) trafilatura.extract(precision, no comm.)": plain,
        "(b) feedstream extract_article": ours,
        "(c) (b), feed gives no author/date": ours_no_feed_metadata,
        "(m) bare_extraction(with_metadata=True)": with_metadata,
    }
    outputs: dict[str, list[str]] = {}
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):  # interleaved, so that drifting machine load hits all alike
        for name, fn in contenders.items():
            out, ms = timed(fn, pages)
            outputs.setdefault(name, out)
            best[name] = min(best[name], ms)

    print(f"aeb-dev: {len(pages)} pages; CPU ms/page, best of {rounds} rounds")
    print(f"{'':44s} {'P':>6s} {'R':>6s} {'F1':>6s} {'ms/page':>8s}")
    for name in contenders:
        p, r, f1 = score(outputs[name], pages)
        print(f"{name:44s} {p:6.3f} {r:6.3f} {f1:6.3f} {best[name]:8.2f}")
    a, b, c, m = best.values()
    print(f"time ratio (b)/(a): {b / a:.2f}x   [(c)/(a): {c / a:.2f}x when the feed leaves author and date "
          f"to find; (m)/(a): {m / a:.2f}x: trafilatura's own metadata pass, which (b) replaces]")
    plain_out, ours_out = outputs["(a) trafilatura.extract(precision, no comm.)"], outputs[
        "(b) feedstream extract_article"]

    details = [ours_detail(html, url) for _, url, html, _ in pages]
    winners = Counter(name for _, name, _ in details)
    print("chain winners on aeb-dev (no feed content in the corpus): "
          + ", ".join(f"{name} {count}" for name, count in winners.most_common()))
    print(f"markdown rendering inside (b): {sum(ms for *_, ms in details) / len(pages):.2f} ms/page")

    if args.stages:
        raw = [gzip.decompress(path.read_bytes()) for path in sorted((CORPUS / "html").glob("*.html.gz"))]
        stages(pages, raw, rounds)

    if (args.heldout / "ground-truth.json").is_file():
        held = load(args.heldout)
        pa, ra, fa = score([plain(html, url) for _, url, html, _ in held], held)
        pb, rb, fb = score([ours(html, url) for _, url, html, _ in held], held)
        print(f"held-out {args.heldout} ({len(held)} pages): (a) P {pa:.3f} R {ra:.3f} F1 {fa:.3f}   "
              f"(b) P {pb:.3f} R {rb:.3f} F1 {fb:.3f}")
    else:
        print(f"held-out: no other set of real pages with ground truth at {args.heldout} (pass --heldout DIR); "
              "none is installed on this machine (the installed packages ship no test pages)")

    if args.diff:
        for (key, url, _, truth), a, b in zip(pages, plain_out, ours_out, strict=True):
            pa, ra = page_pr(a, truth)
            pb, rb = page_pr(b, truth)
            if (pa, ra) != (pb, rb):
                print(f"  {key[:10]} P {pa:.3f}->{pb:.3f} R {ra:.3f}->{rb:.3f}  {url[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
