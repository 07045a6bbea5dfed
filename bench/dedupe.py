"""Near-duplicate detection: recall, precision, speed and memory, in one run.

The labelled set is built here from the real articles of ../shared/corpus/aeb-dev
(ground-truth ``articleBody``): each article is an original, and five
syndicated variants are made of it, as a wire copy or a partner site would
publish it:

- ``dateline``: a dateline and agency credit in front, a reporting credit after;
- ``cut``: the last paragraph cut (the last sentence, for one-paragraph pieces);
- ``reworded``: one sentence in ten reworded (its words swapped pairwise and
  common words replaced, so none of its 4-word shingles survives);
- ``headline``: the headline rewritten and a standfirst sentence added;
- ``template``: the text put in another publisher's page template and read
  back with our own extractor (``extract_article``), furniture and all;
- ``wire`` (reported apart, not in the target): dateline + cut + reworded at once.

The 88 originals are the distinct articles (several pairs come from the same
site). A check is "correct" when a variant is marked as a copy of its own
original; any mark on an original, or a variant pointing at another article,
is a false positive.

The checks run through the real atomic publish script (worker/store/lua/publish.lua) on an
index first filled with 100,000 synthetic articles (random signatures, pushed
through the same script), so ms/check is measured on a 100,000-article index.
Memory is Redis ``MEMORY USAGE`` of all the index's keys per indexed article, and the
``used_memory`` delta over the fill (which also holds the URL claims and the
capped stream).

First, the publish tail's CPU per article (issue 20): what the extract job does
between extraction and the publish call, on the corpus pages as our extractor
reads them: ``normalise_text``, ``text_key``, ``near_key`` (MinHash + bands),
the boilerplate fingerprints and strip, and the update baseline, each as the
pipeline calls it (pure, no Redis; CPU time of this process, best of
``--rounds``). ``--tail`` prints only this section.

Usage: .venv/bin/python bench/dedupe.py [--tail] [--rounds N] [--fill N] [--write-set PATH]
Needs REDIS_URL or starts the embedded Redis in a temporary directory (not for
``--tail``). The machine is shared, so the timings are noisy; compare figures
from one run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "aeb-dev"
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from worker.dedupe import boilerplate, changes, minhash  # noqa: E402
from worker.dedupe.keys import normalise_text, text_key  # noqa: E402
from worker.errors import ExtractError  # noqa: E402
from worker.extract import decode_html, extract_article  # noqa: E402
from worker.models import Article  # noqa: E402
from worker.pipeline.articles import near_key  # noqa: E402
from worker.store import NearKey, Store, connect  # noqa: E402

VARIANTS = ("dateline", "cut", "reworded", "headline", "template")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SWAPS = {"the": "this", "said": "stated", "and": "as well as", "is": "was", "a": "one", "to": "towards",
          "of": "from", "in": "within", "that": "which", "for": "on behalf of", "it": "this"}


@dataclass
class Item:
    key: str  # original's key in the corpus
    kind: str  # "original" or a variant name
    title: str
    text: str


def _paragraphs(text: str) -> list[str]:
    return [p for p in (x.strip() for x in text.split("\n")) if p]


def _reword(sentence: str) -> str:
    words = sentence.split()
    words = [_SWAPS.get(w.lower(), w) for w in words]
    for i in range(0, len(words) - 1, 2):
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _reworded(text: str) -> str:
    out, n = [], 0
    for para in _paragraphs(text):
        sentences = _SENTENCE.split(para)
        for i, s in enumerate(sentences):
            if n % 10 == 4:
                sentences[i] = _reword(s)
            n += 1
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def _cut(text: str) -> str:
    paras = _paragraphs(text)
    if len(paras) > 1:
        return "\n\n".join(paras[:-1])
    sentences = _SENTENCE.split(paras[0])
    return " ".join(sentences[:-1]) if len(sentences) > 1 else paras[0]


def _dateline(text: str) -> str:
    return f"NEW YORK (Newswire) — {text}\n\n(Reporting by Alex Doe; editing by Sam Roe)"


def _template_page(title: str, text: str) -> str:
    body = "\n".join(f"<p>{escape(p)}</p>" for p in _paragraphs(text))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} | Daily Partner</title>
<meta property="og:title" content="{escape(title)}"><meta property="og:site_name" content="Daily Partner"></head>
<body><div id="top-bar"><a href="/subscribe">Subscribe</a> <a href="/login">Log in</a></div>
<header><h2 class="brand"><a href="/">The Daily Partner</a></h2><nav><a href="/world">World</a>
<a href="/business">Business</a><a href="/tech">Tech</a><a href="/opinion">Opinion</a></nav></header>
<div class="layout"><div class="content"><h1 class="headline">{escape(title)}</h1>
<p class="meta">Syndicated from our partners &middot; 5 min read</p>
<div class="story-body">{body}</div>
<div class="tags">Topics: <a href="/t/news">News</a> <a href="/t/world">World</a></div>
<div class="more"><h4>More from The Daily Partner</h4><ul><li><a href="/s/1">Council approves new budget plan</a></li>
<li><a href="/s/2">Weekend weather: sunshine returns</a></li></ul></div></div>
<aside class="rail"><h4>Trending</h4><ol><li><a href="/s/3">Five things to know today</a></li></ol></aside></div>
<footer><p>&copy; 2026 The Daily Partner. Content syndicated under licence.</p></footer></body></html>"""


def build_set() -> list[Item]:
    """Originals and their syndicated variants, from the corpus ground truth."""
    truth = json.loads((CORPUS / "ground-truth.json").read_text(encoding="utf-8"))
    items: list[Item] = []
    for key in sorted(truth):
        text = truth[key]["articleBody"].strip()
        if len(normalise_text(text).split()) < minhash.MIN_WORDS:
            continue
        title = _paragraphs(text)[0][:80]
        items.append(Item(key, "original", title, text))
        items.append(Item(key, "dateline", title, _dateline(text)))
        items.append(Item(key, "cut", title, _cut(text)))
        items.append(Item(key, "reworded", title, _reworded(text)))
        items.append(Item(key, "headline", f"Exclusive: {title[:40]} — what it means",
                          "Here is what we know so far, and why it matters to readers.\n\n" + text))
        try:
            extracted = extract_article(_template_page(title, text), url=f"https://partner.example/{key[:12]}")
            template_text = extracted.text
        except ExtractError:
            template_text = ""
        items.append(Item(key, "template", title, template_text))
        items.append(Item(key, "wire", title, _dateline(_reworded(_cut(text)))))
    return items


def _true_jaccard(a: str, b: str) -> float:
    sa, sb = set(minhash.shingles(a)), set(minhash.shingles(b))
    return len(sa & sb) / max(len(sa | sb), 1)


def sweep(items: list[Item]) -> None:
    """Offline: recall/precision for band layouts and thresholds on the same 128-value signatures."""
    sigs = {(it.key, it.kind): minhash.signature(it.text) for it in items}
    originals = [it for it in items if it.kind == "original"]
    variants = [it for it in items if it.kind in VARIANTS]
    jv = [_true_jaccard(next(o.text for o in originals if o.key == v.key), v.text) for v in variants]
    jd = [_true_jaccard(a.text, b.text) for i, a in enumerate(originals) for b in originals[i + 1:]]
    print(f"true 4-shingle Jaccard: variants min {min(jv):.2f} median {statistics.median(jv):.2f}; "
          f"distinct pairs max {max(jd):.3f} ({len(jd)} pairs)")
    print("layout   thr  recall  false+ (offline: variant vs every original, distinct pairs)")
    for bands in (16, 20, 24, 32):
        rows = min(minhash.PERMUTATIONS // bands, 8)
        for thr in (0.4, 0.5, 0.6):
            def match(a: np.ndarray, b: np.ndarray, rows: int = rows, bands: int = bands, thr: float = thr) -> bool:
                banded = any(np.array_equal(a[i * rows:(i + 1) * rows], b[i * rows:(i + 1) * rows])
                             for i in range(bands))
                return banded and float(np.mean(a == b)) >= thr
            hits = sum(1 for v in variants if sigs[(v.key, v.kind)] is not None
                       and match(sigs[(v.key, "original")].values, sigs[(v.key, v.kind)].values))
            false = sum(1 for i, a in enumerate(originals) for b in originals[i + 1:]
                        if match(sigs[(a.key, "original")].values, sigs[(b.key, "original")].values))
            print(f"{bands:>2}x{rows:<4} {thr:.1f}  {hits / len(variants):.3f}   {false}")


def extracted_pages() -> list[tuple[str, str]]:
    """(title, text) of each corpus page as the pipeline's extractor reads it."""
    pages = []
    for path in sorted((CORPUS / "html").glob("*.html.gz")):
        html = decode_html(gzip.decompress(path.read_bytes()))
        try:
            page = extract_article(html, url=f"https://corpus.example/{path.name[:12]}")
        except ExtractError:
            continue
        pages.append((page.title or "", page.text))
    return pages


def tail_cpu(pages: list[tuple[str, str]], rounds: int) -> None:
    """CPU ms per article of each step of the publish tail (entries._publish_requests, strip_learned_boilerplate,
    updates.remember_published), alone and all together in the pipeline's order, best of ``rounds``.

    Nothing is learned yet, so the strip keeps every paragraph. ``text_key`` and ``near_key`` alone are timed on
    the text normalised beforehand, as ``_publish_requests`` hands it to them."""
    normalised = {text: normalise_text(text) for _, text in pages}

    def fingerprints(title: str, text: str) -> object:
        return boilerplate.fingerprints(text.split("\n\n"))

    def strip(title: str, text: str) -> object:
        return boilerplate.strip_paragraphs(text.split("\n\n"), {})

    def tail(title: str, text: str) -> object:
        normal = normalise_text(text)
        return (fingerprints(title, text), strip(title, text), text_key(text, normalised=normal),
                near_key(text, normalised=normal), changes.baseline(title, text))

    steps: dict[str, Callable[[str, str], object]] = {
        "normalise_text": lambda title, text: normalise_text(text),
        "text_key": lambda title, text: text_key(text, normalised=normalised[text]),
        "near_key": lambda title, text: near_key(text, normalised=normalised[text]),
        "fingerprints": fingerprints,
        "strip": strip,
        "baseline": lambda title, text: changes.baseline(title, text),
        "whole tail": tail,
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, step in steps.items():
            minhash._cached_word_hash.cache_clear()  # each round starts cold, as a worker's first articles do
            boilerplate._short_digest.cache_clear()
            t0 = time.process_time()
            for title, text in pages:
                step(title, text)
            best[name] = min(best.get(name, float("inf")), (time.process_time() - t0) * 1000 / len(pages))
    sizes = [len(text.encode("utf-8")) for _, text in pages]
    print(f"publish tail, CPU ms per article on {len(pages)} extracted corpus texts "
          f"(median {statistics.median(sizes) / 1000:.1f} KB), best of {rounds}:")
    print("  " + ", ".join(f"{name} {ms:.3f}" for name, ms in best.items()))


def minhash_libraries(pages: list[tuple[str, str]], rounds: int) -> None:
    """CPU ms per text of a 128-value MinHash over the 4-word shingles of the normalised text: ours, and the
    libraries that could replace it when installed (rensa, datasketch), each from the same normalised text."""
    texts = [n for _, text in pages if len((n := normalise_text(text)).split()) >= minhash.MIN_WORDS]
    shingled = {text: minhash_shingles(text) for text in texts}

    def ours(text: str) -> object:
        return minhash.signature(text, normalised=text)

    candidates: dict[str, Callable[[str], object]] = {"ours (numpy)": ours}
    try:
        import rensa

        def with_rensa(text: str) -> object:
            sketch = rensa.RMinHash(minhash.PERMUTATIONS, 42)
            sketch.update(minhash_shingles(text))
            return sketch.digest()

        def rensa_core(text: str) -> object:
            sketch = rensa.RMinHash(minhash.PERMUTATIONS, 42)
            sketch.update(shingled[text])
            return sketch.digest()

        candidates["rensa RMinHash"] = with_rensa
        candidates["(rensa on shingles made beforehand)"] = rensa_core
    except ImportError:
        print("  (rensa not installed: pip install rensa to compare)")
    try:
        from datasketch import MinHash

        def with_datasketch(text: str) -> object:
            sketch = MinHash(num_perm=minhash.PERMUTATIONS)
            sketch.update_batch([s.encode("utf-8") for s in minhash_shingles(text)])
            return sketch.digest()

        candidates["datasketch MinHash.update_batch"] = with_datasketch
    except ImportError:
        print("  (datasketch not installed: pip install datasketch to compare)")
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, make in candidates.items():
            minhash._cached_word_hash.cache_clear()
            t0 = time.process_time()
            for text in texts:
                make(text)
            best[name] = min(best.get(name, float("inf")), (time.process_time() - t0) * 1000 / len(texts))
    print(f"MinHash alone, CPU ms per text on {len(texts)} normalised corpus texts (shingles made from the "
          f"words included), best of {rounds}:")
    print("  " + ", ".join(f"{name} {ms:.3f}" for name, ms in best.items()))


def minhash_shingles(normalised: str) -> list[str]:
    """The 4-word shingles as strings, what a MinHash library is given."""
    words = normalised.split()
    size = minhash.SHINGLE_WORDS
    return [" ".join(words[i:i + size]) for i in range(len(words) - size + 1)]


def _fill(store: Store, n: int, seed: int = 7) -> float:
    """Index n synthetic distinct articles (random signatures) through the publish script; seconds taken."""
    rng = np.random.default_rng(seed)
    need = round(minhash.THRESHOLD * minhash.PERMUTATIONS)
    start = time.perf_counter()
    for i in range(n):
        values = rng.integers(0, 2**32, size=minhash.PERMUTATIONS, dtype=np.uint64).astype(np.uint32)
        sig = minhash.Signature(values)
        aid = f"{i:024x}"
        article = Article(id=aid, url=f"https://synthetic.example/{i}", title="", text="", feed="bench")
        store.publish(article, url_keys=[f"synthetic-{i}"], text_key=None,
                      near=NearKey(sig.packed(), sig.bands(), need))
    return time.perf_counter() - start


def _evalsha_stats(client: object) -> tuple[int, int]:
    """(calls, usec) of EVALSHA so far, from INFO commandstats."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})  # type: ignore[attr-defined]
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def _index_bytes(store: Store, indexed: int) -> float:
    """MEMORY USAGE of every near-duplicate key (signatures and band record strings) per indexed article."""
    total = sum(store.redis.memory_usage(key, samples=0) or 0
                for key in store.redis.scan_iter(match=store._key("nd", "*"), count=5000))
    return total / max(indexed, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fill", type=int, default=100_000, help="synthetic articles indexed first")
    parser.add_argument("--write-set", type=Path, help="also write the labelled set as JSON here")
    parser.add_argument("--tail", action="store_true", help="only the publish tail's CPU per article")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the publish tail timing (best kept)")
    args = parser.parse_args()
    if not (CORPUS / "ground-truth.json").exists():
        print(f"corpus not found at {CORPUS}: skipped")
        return 0
    pages = extracted_pages()
    tail_cpu(pages, args.rounds)
    minhash_libraries(pages, args.rounds)
    if args.tail:
        return 0
    items = build_set()
    if args.write_set:
        args.write_set.write_text(json.dumps([it.__dict__ for it in items], ensure_ascii=False, indent=1))
    n_orig = sum(it.kind == "original" for it in items)
    print(f"labelled set: {n_orig} distinct originals, {len(items) - n_orig} variants "
          f"({', '.join(VARIANTS)}, +wire)")
    print(f"parameters: {minhash.SHINGLE_WORDS}-word shingles, {minhash.PERMUTATIONS} permutations, "
          f"{minhash.BANDS} bands x {minhash.ROWS} rows, verify estimated Jaccard >= {minhash.THRESHOLD}")
    sweep(items)

    import os
    embedded = None
    url = os.environ.get("REDIS_URL")
    if not url:
        from worker.ops.embedded import EmbeddedRedis
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-dedupe-")))
        url = embedded.start()
    client = connect(url)
    prefix = f"benchdd{random.randrange(10**6)}"
    store = Store(client, stream=f"{prefix}:articles", prefix=prefix, stream_maxlen=1000, near_mode="mark")
    try:
        before = int(client.info("memory")["used_memory"])
        seconds = _fill(store, args.fill)
        after = int(client.info("memory")["used_memory"])
        print(f"index filled with {args.fill} synthetic articles in {seconds:.1f} s "
              f"({seconds / max(args.fill, 1) * 1000:.3f} ms each through the publish script)")

        stats0 = _evalsha_stats(client)
        sig_ms: list[float] = []
        check_ms: list[float] = []
        marks: dict[tuple[str, str], str | None] = {}
        ordered = [it for it in items if it.kind == "original"] + [it for it in items if it.kind != "original"]
        for n, it in enumerate(ordered):
            t0 = time.perf_counter()
            near = near_key(it.text)
            t1 = time.perf_counter()
            article = Article(id=f"{it.kind[:4]:_<4}{it.key[:20]}", url=f"https://set.example/{n}", title=it.title,
                              text=it.text, feed="set")
            result = store.publish(article, url_keys=[f"set-{n}"], text_key=None, near=near)
            t2 = time.perf_counter()
            sig_ms.append((t1 - t0) * 1000)
            check_ms.append((t2 - t1) * 1000)
            marks[(it.key, it.kind)] = result.duplicate_of
        # A mark is right when it points at the same story (its original, or a variant
        # of it indexed earlier); the id's tail is the story's key.
        stats1 = _evalsha_stats(client)
        false_pos = sum(1 for (key, kind), dup in marks.items()
                        if dup is not None and (kind == "original" or dup[4:] != key[:20]))
        for (key, kind), dup in marks.items():
            if dup is not None and (kind == "original" or dup[4:] != key[:20]):
                print(f"  false positive: {kind} of {key[:12]} marked as a copy of {dup}")
        print()
        for kind in (*VARIANTS, "wire"):
            got = [marks[(k, kd)] == f"orig{k[:20]}" for (k, kd) in marks if kd == kind]
            print(f"  {kind:<9} recall {sum(got) / len(got):.3f} ({sum(got)}/{len(got)})")
        target = [marks[(k, kd)] == f"orig{k[:20]}" for (k, kd) in marks if kd in VARIANTS]
        true_pos = sum(target)
        marked = sum(1 for dup in marks.values() if dup is not None)
        print(f"recall    {true_pos / len(target):.3f}  ({true_pos}/{len(target)} syndicated variants, wire excluded)")
        print(f"precision {(marked - false_pos) / max(marked, 1):.3f}  ({false_pos} false positives among "
              f"{marked} marks; originals marked: "
              f"{sum(1 for (k, kd), d in marks.items() if kd == 'original' and d)})")
        print(f"ms per check (publish script incl. round trip, index of {args.fill + len(ordered)}): "
              f"median {statistics.median(check_ms):.3f}, p95 {np.percentile(check_ms, 95):.3f}")
        print(f"ms per check inside Redis (INFO commandstats evalsha, usec/call over the checks): "
              f"{(stats1[1] - stats0[1]) / max(stats1[0] - stats0[0], 1) / 1000:.3f}")
        print(f"ms per signature (MinHash + bands in Python): median {statistics.median(sig_ms):.3f}, "
              f"p95 {np.percentile(sig_ms, 95):.3f}")
        indexed = args.fill + len(ordered)
        print(f"Redis bytes per indexed article: near-duplicate keys {_index_bytes(store, indexed):.0f} "
              f"(MEMORY USAGE of all signature and band-record keys / {indexed} articles); "
              f"used_memory delta over the fill {(after - before) / max(args.fill, 1):.0f} "
              f"(also URL claim, counters, capped stream)")
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=5000):
            client.unlink(key)
        if embedded:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
