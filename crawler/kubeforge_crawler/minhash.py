"""MinHash signatures of word shingles and an LSH index that finds near duplicates.

A text's shingles are its lower-cased word n-grams (`shingle_words`), hashed to 64 bits: each
word from its characters, an n-gram by combining its words' hashes, all vectorised in numpy
(`word_hashes`, `MinHasher.shingles`). Its signature holds, for each of `permutations`
multiply-shift hash functions `(a*x + b) mod 2**64 >> 32` (a odd), the smallest value over the
shingles (numpy, in blocks, so memory stays bounded on long texts). Two signatures agree in a
position with probability equal to the Jaccard similarity of the shingle sets.

`NearDuplicateIndex` splits signatures into `bands` of `rows` (chosen to minimise the expected
false positives and negatives around the threshold); texts that share a band are candidates,
and a candidate is a duplicate only when the estimated similarity reaches the threshold, which
keeps precision high.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import numpy.typing as npt

Signature = npt.NDArray[np.uint32]

_SHIFT = np.uint64(32)
_BLOCK = 2048
_SEED = 20240601


_POSITION = np.random.default_rng(_SEED + 1).integers(
    0, np.iinfo(np.uint64).max, size=32, dtype=np.uint64, endpoint=True
) | np.uint64(1)
"""An odd multiplier per position in an n-gram (up to the 32 words a shingle may have)."""


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """The 64-bit finaliser of MurmurHash3 (fmix64): spreads the combined word hashes."""
    values = values ^ (values >> np.uint64(33))
    values *= np.uint64(0xFF51AFD7ED558CCD)
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xC4CEB9FE1A85EC53)
    values ^= values >> np.uint64(33)
    return values


_CHARACTER_POSITION = np.random.default_rng(_SEED + 2).integers(
    0, np.iinfo(np.uint64).max, size=64, dtype=np.uint64, endpoint=True
) | np.uint64(1)
"""An odd multiplier per character position in a word (modulo 64)."""


@cache
def _word_characters() -> npt.NDArray[np.bool_]:
    """Which code points `\\w` matches (`str.isalnum()` or `_`): a 1.1 MB table, built once."""
    table = np.fromiter(
        (chr(code).isalnum() for code in range(0x110000)), dtype=bool, count=0x110000
    )
    table[ord("_")] = True
    return table


def word_hashes(text: str) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each `\\w+` word of the lower-cased text, in order.

    A word's hash is the mixed sum of its code points (plus one), each times the multiplier of
    its position in the word, computed for all words at once with `np.add.reduceat`.
    """
    codes = np.frombuffer(text.lower().encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    in_word = _word_characters()[codes]
    starts_word = in_word.copy()
    starts_word[1:] &= ~in_word[:-1]
    starts = np.flatnonzero(starts_word)
    if len(starts) == 0:
        return np.empty(0, dtype=np.uint64)
    positions = np.arange(len(codes))
    word_start = np.maximum.accumulate(np.where(starts_word, positions, 0))
    values = (codes.astype(np.uint64) + np.uint64(1)) * _CHARACTER_POSITION[
        (positions - word_start) & 63
    ]
    values[~in_word] = 0
    return _mix(np.add.reduceat(values, starts))


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
        return np.unique(self._ngram_hashes(text))

    def _ngram_hashes(self, text: str) -> npt.NDArray[np.uint64]:
        """The hash of every word n-gram, in order, repeats included.

        Words are `\\w+` runs of the lower-cased text; an n-gram's hash combines its words'
        hashes (`word_hashes`) with position-dependent odd multipliers and a final 64-bit mix.
        Everything runs in numpy: no Python loop over words or n-grams.
        """
        hashes = word_hashes(text)
        n = min(self.shingle_words, len(hashes))
        if n == 0:
            return np.zeros(1, dtype=np.uint64)  # every text without words is one shingle
        count = len(hashes) - n + 1
        combined = hashes[:count] * _POSITION[0]
        for offset in range(1, n):
            combined += hashes[offset : offset + count] * _POSITION[offset]
        return _mix(combined)

    def signature(self, text: str) -> Signature:
        """The text's MinHash signature."""
        # A minimum does not change with repeats, so they are not removed (cheaper than unique).
        hashes = self._ngram_hashes(text)
        minimum = np.full(self.permutations, np.iinfo(np.uint64).max, dtype=np.uint64)
        values = np.empty((self.permutations, min(len(hashes), _BLOCK)), dtype=np.uint64)
        for start in range(0, len(hashes), _BLOCK):
            block = hashes[start : start + _BLOCK][np.newaxis, :]
            out = values[:, : block.shape[1]]
            # uint64 arithmetic wraps around, which is the mod 2**64 of multiply-shift.
            np.multiply(self._a, block, out=out)
            out += self._b
            np.minimum(minimum, out.min(axis=1), out=minimum)
        # The shift is monotonic, so the minimum's top half is the minimum of the top halves.
        return (minimum >> _SHIFT).astype(np.uint32)


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


_BAND_POSITION = np.random.default_rng(_SEED + 3).integers(
    0, np.iinfo(np.uint64).max, size=1024, dtype=np.uint64, endpoint=True
) | np.uint64(1)
"""An odd multiplier per row of a band (up to the 1024 permutations a signature may have)."""


def band_hashes(signatures: npt.NDArray[np.uint32], band: int, rows: int) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of one band (`rows` values) of each signature (a row of the matrix):
    signatures that agree on the whole band share it."""
    values = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
    # uint64 arithmetic wraps around, so the sum is a polynomial hash mod 2**64.
    return _mix((values * _BAND_POSITION[:rows]).sum(axis=1, dtype=np.uint64))


def decode_signature_matrix(data: bytes) -> npt.NDArray[np.uint32]:
    """The signatures `encode_signatures` wrote, one per row."""
    matrix: npt.NDArray[np.uint32] = np.load(io.BytesIO(data), allow_pickle=False)
    return matrix


def encode_signatures(signatures: list[Signature], permutations: int) -> bytes:
    """Signatures as one .npy array (rows in document order)."""
    matrix = np.stack(signatures) if signatures else np.empty((0, permutations), np.uint32)
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    return buffer.getvalue()


def decode_signatures(data: bytes) -> list[Signature]:
    """The signatures `encode_signatures` wrote."""
    return list(decode_signature_matrix(data))
