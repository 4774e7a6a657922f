"""Gopher's repetition rules (`filters.gopherRepetition`; Rae et al. 2021, table A1): repeated
paragraphs and lines, the most frequent short n-grams, and the n-grams seen earlier in the
document.

The n-gram rules measure characters of words (punctuation and spaces left out), and a word that
several repeated n-grams cover counts once: the paper's "fraction of characters contained within
duplicate n-grams", without datatrove's skip of n words after each repeat.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from kubeforge.api.filters import GopherRepetition
from kubeforge_crawler.filters.base import Document, Rule, first_tripped, repeated, words

NAME = "GopherRepetition"
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")


def n_grams(items: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of a sequence, in order."""
    return list(zip(*(items[start:] for start in range(n)), strict=False))


def top_n_gram_fraction(items: Sequence[str], n: int, characters: int) -> float:
    """The fraction of the characters the most frequent n-gram covers, all its occurrences."""
    grams = n_grams(items, n)
    if not grams or not characters:
        return 0.0
    gram, count = Counter(grams).most_common(1)[0]
    return sum(map(len, gram)) * count / characters


def duplicate_n_gram_fraction(items: Sequence[str], n: int, characters: int) -> float:
    """The fraction of the characters in words that an n-gram seen earlier covers."""
    covered = bytearray(len(items))
    seen: set[tuple[str, ...]] = set()
    for start, gram in enumerate(n_grams(items, n)):
        if gram in seen:
            covered[start : start + n] = b"\x01" * n
        else:
            seen.add(gram)
    if not characters:
        return 0.0
    return sum(len(item) for item, flag in zip(items, covered, strict=True) if flag) / characters


class GopherRepetitionFilter:
    """Drops documents that repeat themselves."""

    def __init__(self, rules: GopherRepetition) -> None:
        self.rules = rules

    def __call__(self, document: Document) -> str | None:
        rules, text = self.rules, document.text
        length = len(text) or 1
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        paragraph_repeats, paragraph_characters = repeated(paragraphs)
        lines = text.splitlines() or [""]
        line_repeats, line_characters = repeated(lines)
        checks: list[tuple[str, Rule]] = [
            (
                f"{NAME}:dup_para_frac",
                lambda: (
                    paragraph_repeats / len(paragraphs) > rules.max_duplicate_paragraph_fraction
                ),
            ),
            (
                f"{NAME}:dup_para_char_frac",
                lambda: paragraph_characters / length > rules.max_duplicate_paragraph_char_fraction,
            ),
            (
                f"{NAME}:dup_line_frac",
                lambda: line_repeats / len(lines) > rules.max_duplicate_line_fraction,
            ),
            (
                f"{NAME}:dup_line_char_frac",
                lambda: line_characters / length > rules.max_duplicate_line_char_fraction,
            ),
        ]
        reason = first_tripped(checks)
        if reason is not None:
            return reason
        # Words only once the cheap line rules pass: most rejected pages stop above.
        items = words(text)
        characters = sum(map(len, items))
        top = [
            (
                f"{NAME}:top_{limit.n}_gram",
                _top_exceeds(items, limit.n, characters, limit.max_fraction),
            )
            for limit in rules.top_n_grams
        ]
        return first_tripped(top) or self._duplicated(items, characters)

    def _duplicated(self, items: Sequence[str], characters: int) -> str | None:
        """The duplicated n-gram rules, shortest n first. The words that repeated (n+1)-grams
        cover are among those that repeated n-grams cover (both n-grams inside a repeated
        (n+1)-gram repeat too), so once a fraction is within every limit left to check, the longer
        n-grams' fractions are as well, and are not computed."""
        limits = sorted(self.rules.duplicate_n_grams, key=lambda limit: limit.n)
        for index, limit in enumerate(limits):
            fraction = duplicate_n_gram_fraction(items, limit.n, characters)
            if fraction > limit.max_fraction:
                return f"{NAME}:duplicated_{limit.n}_n_grams"
            if all(fraction <= later.max_fraction for later in limits[index + 1 :]):
                return None
        return None


def _top_exceeds(items: Sequence[str], n: int, characters: int, limit: float) -> Rule:
    """A rule that trips when the most frequent n-gram covers more than `limit` of the words."""
    return lambda: top_n_gram_fraction(items, n, characters) > limit
