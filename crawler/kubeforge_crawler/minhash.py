"""MinHash signatures of word shingles and an LSH index that finds near duplicates.

A text's shingles are its lower-cased word n-grams (`shingle_words`), hashed to 64 bits with
xxh64. Its signature holds, for each of `permutations` multiply-shift hash functions
`(a*x + b) mod 2**64 >> 32` (a odd), the smallest value over the shingles (numpy, in blocks,
so memory stays bounded on long texts). Two signatures agree in a position with probability
equal to the Jaccard similarity of the shingle sets.

`NearDuplicateIndex` splits signatures into `bands` of `rows` (chosen to minimise the expected
false positives and negatives around the threshold); texts that share a band are candidates,
and a candidate is a duplicate only when the estimated similarity reaches the threshold, which
keeps precision high.
"""

from __future__ import annotations

import io
import re
from functools import cache

import numpy as np
import numpy.typing as npt
import xxhash

Signature = npt.NDArray[np.uint32]

_SHIFT = np.uint64(32)
_WORD = re.compile(r"\w+")
_BLOCK = 2048
_SEED = 20240601


class MinHasher:
    """Computes signatures; hashers with equal settings compute equal signatures."""

    def __init__(self, permutations: int, shingle_words: int, seed: int = _SEED) -> None:
        generator = np.random.default_rng(seed)
        self.permutations = permutations
        self.shingle_words = shingle_words
        high = np.iinfo(np.uint64).max
        self._a = generator.integers(
            0, high, size=(permutations, 1), dtype=np.uint64, endpoint=True
        )
        self._a |= np.uint64(1)
        self._b = generator.integers(
            0, high, size=(permutations, 1), dtype=np.uint64, endpoint=True
        )

    def shingles(self, text: str) -> npt.NDArray[np.uint64]:
        """64-bit hashes of the text's distinct word n-grams."""
        words = _WORD.findall(text.lower())
        n = self.shingle_words
        grams = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
        return np.fromiter(
            (xxhash.xxh64_intdigest(gram.encode("utf-8")) for gram in grams),
            dtype=np.uint64,
            count=len(grams),
        )

    def signature(self, text: str) -> Signature:
        """The text's MinHash signature."""
        hashes = self.shingles(text)
        minimum = np.full(self.permutations, np.iinfo(np.uint32).max, dtype=np.uint64)
        for start in range(0, len(hashes), _BLOCK):
            block = hashes[start : start + _BLOCK][np.newaxis, :]
            # uint64 arithmetic wraps around, which is the mod 2**64 of multiply-shift.
            values = (self._a * block + self._b) >> _SHIFT
            np.minimum(minimum, values.min(axis=1), out=minimum)
        return minimum.astype(np.uint32)


def estimated_similarity(first: Signature, second: Signature) -> float:
    """The Jaccard similarity two signatures estimate."""
    return float(np.count_nonzero(first == second)) / len(first)


@cache
def optimal_bands(threshold: float, permutations: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= permutations that minimise the false positive and
    negative probability mass around `threshold` (weighted equally)."""
    similarities = np.linspace(0.0, 1.0, 201)
    below = similarities <= threshold
    best: tuple[float, int, int] | None = None
    for bands in range(1, permutations + 1):
        for rows in range(1, permutations // bands + 1):
            candidate = 1.0 - (1.0 - similarities**rows) ** bands
            false_positive = np.trapezoid(np.where(below, candidate, 0.0), similarities)
            false_negative = np.trapezoid(np.where(below, 0.0, 1.0 - candidate), similarities)
            error = float(false_positive + false_negative)
            if best is None or error < best[0]:
                best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


class NearDuplicateIndex:
    """Signatures added so far, banded for lookup."""

    def __init__(self, threshold: float, permutations: int) -> None:
        self.threshold = threshold
        self.bands, self.rows = optimal_bands(threshold, permutations)
        self._tables: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self._signatures: list[Signature] = []

    def __len__(self) -> int:
        return len(self._signatures)

    def _keys(self, signature: Signature) -> list[bytes]:
        rows = self.rows
        return [signature[band * rows : (band + 1) * rows].tobytes() for band in range(self.bands)]

    def find(self, signature: Signature) -> int | None:
        """The position of an added signature similar enough to this one, or None."""
        checked: set[int] = set()
        for table, key in zip(self._tables, self._keys(signature), strict=True):
            for candidate in table.get(key, ()):
                if candidate in checked:
                    continue
                checked.add(candidate)
                similarity = estimated_similarity(signature, self._signatures[candidate])
                if similarity >= self.threshold:
                    return candidate
        return None

    def add(self, signature: Signature) -> int:
        """Adds a signature; returns its position."""
        position = len(self._signatures)
        self._signatures.append(signature)
        for table, key in zip(self._tables, self._keys(signature), strict=True):
            table.setdefault(key, []).append(position)
        return position


def encode_signatures(signatures: list[Signature], permutations: int) -> bytes:
    """Signatures as one .npy array (rows in document order)."""
    matrix = np.stack(signatures) if signatures else np.empty((0, permutations), np.uint32)
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    return buffer.getvalue()


def decode_signatures(data: bytes) -> list[Signature]:
    """The signatures `encode_signatures` wrote."""
    matrix: npt.NDArray[np.uint32] = np.load(io.BytesIO(data), allow_pickle=False)
    return list(matrix)
