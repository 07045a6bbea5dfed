"""Changed articles (issue 17): what the change rule catches and ignores, what it costs, in one run.

Edits are made here to the real article bodies of ../shared/corpus/aeb-dev (ground-truth ``articleBody``),
each in the way a publisher edits a published story, or in the way a page changes without the story
changing:

- ``figure``: one number in the body corrected (the first one found; one word when there is none);
- ``sentence``: one sentence appended to a paragraph; ``added``: a paragraph added; ``removed``: the
  last paragraph removed;
- ``noise``: an "Updated <time> GMT" line and a "<n> views" line added, then both changed (the
  version before and after both carry them): the story did not change.

For each it prints the share detected by ``dedupe.changes.compare`` and, for contrast, the share a rule
of "word-shingle Jaccard below 0.95" would detect (the threshold the issue named); then the Redis bytes
of an article's version record (``MEMORY USAGE`` of ``{p}:ver:{id}``) and of an entry's mark (a feed's
``{p}:marks:{name}`` hash / entries), and microseconds per compare.

Usage: .venv/bin/python bench/updates.py   (needs REDIS_URL or starts the embedded Redis; skips without
the corpus). The machine is shared: timings are noisy.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "aeb-dev"
sys.path.insert(0, str(REPO))

from worker.dedupe import changes, minhash  # noqa: E402
from worker.models import UpdatePolicy  # noqa: E402
from worker.store import Store, VersionRecord, connect  # noqa: E402

_NUMBER = re.compile(r"\b\d+\b")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n|\n", text) if p.strip()]


def edits(paragraphs: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """(before, after) paragraph lists for each kind of edit."""
    body = list(paragraphs)
    figure = list(body)
    for i, p in enumerate(figure):
        if (match := _NUMBER.search(p)) is not None:
            figure[i] = p[:match.start()] + str(int(match.group()) + 1) + p[match.end():]
            break
    else:
        words = figure[0].split()
        figure[0] = " ".join([*words[:-1], "corrected"])
    middle = len(body) // 2
    sentence = [*body[:middle], body[middle] + " A spokesperson later confirmed the account.", *body[middle + 1:]]
    added = [*body, "This story has been updated with a statement from the company."]
    removed = body[:-1] if len(body) > 1 else [body[0][: len(body[0]) // 2]]
    noisy_before = [*body, "Updated 09:12 GMT", "1,204 views"]
    noisy_after = [*body, "Updated 16:47 GMT", "2,881 views"]
    return {"figure": (body, figure), "sentence": (body, sentence), "added": (body, added),
            "removed": (body, removed), "noise": (noisy_before, noisy_after)}


def jaccard(a: str, b: str) -> float:
    sa, sb = set(minhash.shingles(a)), set(minhash.shingles(b))
    return len(sa & sb) / max(len(sa | sb), 1)


def main() -> int:
    if not CORPUS.exists():
        print(f"skipped: no corpus at {CORPUS}")
        return 0
    truth = json.loads((CORPUS / "ground-truth.json").read_text(encoding="utf-8"))
    bodies = [_paragraphs(truth[key]["articleBody"]) for key in sorted(truth)]
    bodies = [b for b in bodies if sum(len(p.split()) for p in b) >= 50]
    detected: dict[str, list[bool]] = {}
    by_jaccard: dict[str, list[bool]] = {}
    compare_us: list[float] = []
    for body in bodies:
        for kind, (before, after) in edits(body).items():
            old = changes.baseline("Title", "\n\n".join(before))
            started = time.perf_counter()
            change = changes.compare(old, "Title", "\n\n".join(after))
            compare_us.append((time.perf_counter() - started) * 1e6)
            detected.setdefault(kind, []).append(change is not None)
            by_jaccard.setdefault(kind, []).append(jaccard("\n\n".join(before), "\n\n".join(after)) < 0.95)
    print(f"{len(bodies)} corpus articles, each edited 5 ways")
    print(f"{'edit':<10}{'rule (paragraph digests)':>26}{'Jaccard < 0.95':>16}")
    for kind in detected:
        rule = sum(detected[kind]) / len(detected[kind])
        jac = sum(by_jaccard[kind]) / len(by_jaccard[kind])
        print(f"{kind:<10}{rule:>26.3f}{jac:>16.3f}")
    print("(noise: the share wrongly called a change; the others: the share caught)")
    print(f"compare: median {statistics.median(compare_us):.0f} us, p95 "
          f"{statistics.quantiles(compare_us, n=20)[18]:.0f} us")

    embedded = None
    import os
    url = os.environ.get("REDIS_URL")
    if not url:
        from worker.ops.embedded import EmbeddedRedis
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bench-updates-")))
        url = embedded.start()
    try:
        client = connect(url)
        store = Store(client, prefix="bench-updates", updates=UpdatePolicy())
        records = {}
        for n, body in enumerate(bodies):
            base = changes.baseline(f"Title {n}", "\n\n".join(body))
            records[f"{n:024x}"] = VersionRecord(1, base.title, base.packed(), etag=f'"{n:x}-5f3a9c"',
                                                 last_modified="Mon, 30 Nov 2026 09:30:00 GMT", checked=time.time(),
                                                 cluster=f"{n:024x}")
        store.remember_versions(records)
        sizes = [client.memory_usage(f"bench-updates:ver:{key}") or 0 for key in records]
        paragraphs = [len(body) for body in bodies]
        print(f"version record: {statistics.mean(sizes):.0f} bytes mean (median {statistics.median(sizes):.0f}), "
              f"articles of {statistics.mean(paragraphs):.1f} paragraphs mean")
        pipe = client.pipeline()
        for listed in (20, 50, 200):
            marks = tuple((f"{i:024x}", changes.entry_mark(f"t{i}", f"<p>{i}</p>", None, time.time()))
                          for i in range(listed))
            store._queue_marks(pipe, f"feed{listed}", marks)
        pipe.execute()
        for listed in (20, 50, 200):
            usage = client.memory_usage(f"bench-updates:marks:feed{listed}") or 0
            print(f"marks of a feed listing {listed}: {usage} bytes, {usage / listed:.0f} per entry")
        client.delete(*[f"bench-updates:ver:{key}" for key in records],
                      *[f"bench-updates:marks:feed{n}" for n in (20, 50, 200)])
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
