"""Near-duplicate signatures: MinHash over word shingles, and LSH band keys. Pure.

Two texts whose word shingles overlap (Jaccard similarity J) agree on each of
the ``PERMUTATIONS`` MinHash values with probability J. LSH cuts the signature
into ``BANDS`` bands of ``ROWS`` values; two texts share at least one band with
probability ``1 - (1 - J**ROWS)**BANDS``, which is the candidate step. A
candidate only counts after its stored signature agrees with ours on at least
``THRESHOLD`` of the values (the estimated Jaccard), so a chance band collision
does not by itself mark a distinct article.

Why our own code and not datasketch/rensa: the job is one numpy broadcast
(permutations x shingles) of a multiply-shift hash family plus a ``min``, it
needs no state, and the signature must be byte-identical across processes and
releases because it is stored in Redis and compared there; a pinned formula of
our own guarantees that with numpy as the only dependency. rensa is the same in
every process but not across releases: its 0.5.0 changed every digest
("algorithm version 2": saved signatures must be rebuilt). Measured on the 88
corpus texts (median 3.2 KB; CPU time, best of 5, word cache cold each round,
shared 2-core machine; ``bench/dedupe.py --tail``), each from the normalised
text: ours 0.26 ms; rensa 0.5.0 ``RMinHash`` 0.13 ms, of which 0.01 ms is rensa
and the rest making the shingle strings it is fed; datasketch 2.0.0
``MinHash.update_batch`` 0.61 ms. rensa would save about 0.13 ms an article
(trafilatura takes 11-12 ms) for a re-keyed index and a dependency pinned to one
release. Most of our time is the per-word blake2b (cached across articles:
common words come back) and the broadcast. The parameters below come from
``bench/dedupe.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worker.dedupe.keys import normalise_text

SHINGLE_WORDS = 4  # words per shingle
PERMUTATIONS = 128
# 20 bands of 6 rows use 120 of the 128 values for candidates (verification uses all
# 128): a pair with J = 0.5 shares a band with probability 0.27, J = 0.6 0.66, J = 0.7
# 0.93, J = 0.8 0.999. 16 x 8 misses reworded copies (recall 0.97 on the set), 32 x 4
# costs 60% more keys for 0.998 instead of 0.995; see bench/dedupe.py.
BANDS = 20
ROWS = 6
# Estimated Jaccard a candidate must reach to count: syndicated variants on the set
# have true 4-shingle Jaccard >= 0.53, distinct articles <= 0.09.
THRESHOLD = 0.5
MIN_WORDS = 25  # shorter texts (teasers, captions) say too little to be called copies

# Fixed seed: signatures are stored and compared across processes and releases.
# Changing the seed, PERMUTATIONS or SHINGLE_WORDS makes stored signatures
# incomparable (they expire with the window, so a change heals itself).
_rng = np.random.default_rng(0x6E65617264757073)
_A = _rng.integers(1, 2**63, size=PERMUTATIONS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd multipliers
_B = _rng.integers(0, 2**63, size=PERMUTATIONS, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) mixing shingle positions
_A_COLUMN, _B_COLUMN = _A[:, None], _B[:, None]


@dataclass(frozen=True)
class Signature:
    """A text's MinHash values (uint32, little-endian when packed) and its LSH band keys."""

    values: np.ndarray  # shape (PERMUTATIONS,), uint32

    def packed(self) -> bytes:
        """The compact stored form: the low 16 bits of each value, PERMUTATIONS x 2 bytes, little-endian.

        Agreement is what the store counts; two different values agree on their low 16
        bits with probability 2**-16, which moves an estimated similarity by nothing
        that matters, for half the memory.
        """
        return (self.values & 0xFFFF).astype("<u2").tobytes()

    def bands(self) -> list[bytes]:
        """One 7-byte digest per band, of the band's number and its rows (the store's bucket bytes and probe)."""
        raw = self.values.astype("<u4")
        return [
            hashlib.blake2b(bytes([band]) + raw[band * ROWS:(band + 1) * ROWS].tobytes(), digest_size=7).digest()
            for band in range(BANDS)
        ]


def shingles(text: str, size: int = SHINGLE_WORDS) -> list[str]:
    """Overlapping runs of ``size`` words of the normalised text."""
    words = normalise_text(text).split()
    if len(words) < size:
        return [" ".join(words)] if words else []
    return [" ".join(words[i:i + size]) for i in range(len(words) - size + 1)]


def _word_hash(word: str) -> bytes:
    return hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()


# Cached across articles: most of a text's words were in earlier ones ("the", "said", names in the
# news), so most lookups skip the blake2b. 16,384 words of at most 40 characters: about 3 MB (7 at most);
# longer "words" (run-together tokens, a hostile page's) are hashed each time, so no text can make
# the cache big.
_CACHED_WORD_CHARS = 40
_cached_word_hash = lru_cache(maxsize=1 << 14)(_word_hash)


def _shingle_hashes(words: list[str], size: int = SHINGLE_WORDS) -> np.ndarray:
    """64-bit hashes of the ``size``-word shingles: the word hashes mixed by position, vectorised.

    A shingle repeated in the text repeats its hash; the MinHash is a minimum, which a repeat cannot move.
    """
    w = np.frombuffer(b"".join([_cached_word_hash(word) if len(word) <= _CACHED_WORD_CHARS else _word_hash(word)
                                for word in words]), dtype="<u8")
    if len(w) < size:
        size = len(w)
    n = len(w) - size + 1
    acc = w[:n].copy()
    with np.errstate(over="ignore"):
        for k in range(1, size):  # acc = ((acc * M) ^ word) per position, wrapping mod 2**64
            acc *= _MIX
            acc ^= w[k:k + n]
    return acc


def signature(text: str, *, normalised: str | None = None) -> Signature | None:
    """The text's MinHash signature, or None when it has fewer than MIN_WORDS words.

    ``normalised``: ``normalise_text(text)`` when the caller has it already.
    """
    words = (normalise_text(text) if normalised is None else normalised).split()
    if len(words) < MIN_WORDS:
        return None
    x = _shingle_hashes(words)
    # Multiply-shift hashing: (a*x + b) mod 2**64, top 32 bits. uint64 arithmetic
    # wraps, which is exactly the mod. One (PERMUTATIONS, n) broadcast, in place, then
    # min; the shift comes after the min (taking the top bits keeps the order), on 128 values.
    with np.errstate(over="ignore"):
        hashed = np.multiply(_A_COLUMN, x)
        hashed += _B_COLUMN
    return Signature((hashed.min(axis=1) >> np.uint64(32)).astype(np.uint32))


def similarity(a: Signature | np.ndarray, b: Signature | np.ndarray) -> float:
    """Estimated Jaccard: the share of MinHash values the two signatures agree on."""
    va = a.values if isinstance(a, Signature) else a
    vb = b.values if isinstance(b, Signature) else b
    return float(np.mean(va == vb))
