"""Per-source rules: the regular-expression engine and the CSS-selector library, measured.

Prints (1) what a catastrophic pattern costs under Python's ``re``, ``regex`` with its ``timeout=``,
and ``re2`` (google-re2, no backtracking), and what ordinary rules cost per entry; (2) what a CSS
selector and a strip list cost on the corpus pages (``../shared/corpus/aeb-dev/html``) with lxml's
cssselect on the tree the extraction parses anyway, and with selectolax (its own parse).
Skips what is not installed (``pip install regex google-re2 selectolax``) and the corpus part when
the corpus is absent. Ratios are disturbed by other load on the machine.

    .venv/bin/python bench/rules.py
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import re
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "aeb-dev" / "html"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus/aeb-dev/html")


def _timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def regex_engines() -> None:
    print("== regular expressions")
    evil, n = r"(a|aa)+$", 30
    text = "a" * n + "!"
    print(f"catastrophic {evil!r} on {n} 'a's and a '!':")
    t = _timed(lambda: re.search(evil, text))
    print(f"  re (stdlib)            {t * 1000:9.1f} ms  (grows ~1.6x with each extra 'a')")
    try:
        regex = importlib.import_module("regex")
        pattern = regex.compile(evil)
        start = time.perf_counter()
        try:
            pattern.search(text, timeout=0.05)
            outcome = "finished"
        except TimeoutError:
            outcome = "TimeoutError"
        print(f"  regex timeout=0.05     {(time.perf_counter() - start) * 1000:9.1f} ms  ({outcome})")
    except ImportError:
        print("  regex: not installed")
    try:
        re2 = importlib.import_module("re2")
        pattern2 = re2.compile(evil)
        t = _timed(lambda: pattern2.search(text), 100)
        big = "a" * 100_000 + "!"
        t_big = _timed(lambda: pattern2.search(big), 3)
        print(f"  re2                    {t * 1000:9.3f} ms  (100,000 'a's: {t_big * 1000:.1f} ms)")
    except ImportError:
        print("  re2: not installed")
    rules = [r"(?i)sponsored", r"/podcast/", r"(?i)\bpromo(tion)?\b", r"^Deal:", r"(?i)partner content"]
    titles = [f"Article number {i} about telecoms and the 5G rollout in region {i % 17}" for i in range(2000)]
    print(f"5 ordinary rules over {len(titles)} titles (per entry, all rules):")
    engines = [("re", re)]
    for name in ("regex", "re2"):
        with contextlib.suppress(ImportError):
            engines.append((name, importlib.import_module(name)))
    for name, module in engines:
        compiled = [module.compile(r) for r in rules]
        kwargs = {"timeout": 0.05} if name == "regex" else {}
        t = _timed(lambda c=compiled, k=kwargs: [p.search(s, **k) for s in titles for p in c], 3)
        print(f"  {name:<22} {t / len(titles) * 1e6:9.2f} us")


def _best(fn, runs: int = 5) -> float:
    """The fastest of ``runs`` timings (the least disturbed by other load)."""
    return min(_timed(fn) for _ in range(runs))


def selectors() -> None:
    print("== CSS selectors on the corpus (fastest of 5 runs, per page)")
    paths = sorted(CORPUS.glob("*.html.gz"))
    if not paths:
        print(f"  corpus not found at {CORPUS}: skipped")
        return
    pages = [gzip.decompress(p.read_bytes()).decode("utf-8", "replace") for p in paths]
    from lxml.cssselect import CSSSelector
    from trafilatura.utils import load_html
    body = "article, main, .entry-content, .post-content"
    strip = ".newsletter-signup, aside, .share, nav"
    body_sel, strip_sel = CSSSelector(body), CSSSelector(strip)
    n = len(pages)
    trees = [load_html(p) for p in pages]
    hits = sum(1 for tr in trees if body_sel(tr))
    t_parse = _best(lambda: [load_html(p) for p in pages]) / n
    t_sel = _best(lambda: [(body_sel(tr), strip_sel(tr)) for tr in trees]) / n
    print(f"  {n} pages; body {body!r} matched on {hits}; strip {strip!r}")
    print(f"  lxml parse (done anyway for trafilatura)      {t_parse * 1000:7.3f} ms")
    print(f"  lxml cssselect on that tree: body + strip     {t_sel * 1000:7.3f} ms  <- the added cost")
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError:
        print("  selectolax: not installed")
        return

    def selectolax_path() -> None:
        for page in pages:
            doc = LexborHTMLParser(page)
            doc.css(body)
            for node in doc.css(strip):
                node.decompose()
            load_html(doc.html)  # trafilatura needs lxml's tree of the stripped page

    t_lex = _best(lambda: [LexborHTMLParser(p) for p in pages]) / n
    docs = [LexborHTMLParser(p) for p in pages]
    t_lex_sel = _best(lambda: [(d.css(body), d.css(strip)) for d in docs]) / n
    t_path = _best(selectolax_path, 3) / n - t_parse
    print(f"  selectolax (lexbor) parse of its own          {t_lex * 1000:7.3f} ms")
    print(f"  selectolax select: body + strip               {t_lex_sel * 1000:7.3f} ms")
    print(f"  selectolax path, added cost (its parse, select, strip, serialise, lxml re-parse of the stripped "
          f"page, minus the parse done anyway): {t_path * 1000:.3f} ms")


if __name__ == "__main__":
    regex_engines()
    selectors()
