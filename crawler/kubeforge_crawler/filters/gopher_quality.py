"""Gopher's quality rules (`filters.gopherQuality`; Rae et al. 2021, section A.1.1): document
length in words, mean word length, hashes and ellipses per word, bullet and ellipsis lines,
words with a letter, and stop words."""

from __future__ import annotations

from kubeforge.api.filters import GopherQuality
from kubeforge_crawler.filters.base import Document, Rule, first_tripped, words

NAME = "GopherQuality"
BULLET = "•"
ELLIPSES = ("...", "…")


class GopherQualityFilter:
    """Drops documents that do not read like prose."""

    def __init__(self, rules: GopherQuality) -> None:
        self.rules = rules
        self.stop_words = frozenset(word.lower() for word in rules.stop_words)

    def __call__(self, document: Document) -> str | None:
        rules, text = self.rules, document.text
        items = words(text)
        count = len(items) or 1
        mean_length = sum(map(len, items)) / count
        lines = text.splitlines() or [""]
        checks: list[tuple[str, Rule]] = [
            (f"{NAME}:gopher_short_doc", lambda: len(items) < rules.min_words),
            (f"{NAME}:gopher_long_doc", lambda: len(items) > rules.max_words),
            (
                f"{NAME}:gopher_below_avg_threshold",
                lambda: mean_length < rules.min_mean_word_length,
            ),
            (
                f"{NAME}:gopher_above_avg_threshold",
                lambda: mean_length > rules.max_mean_word_length,
            ),
            (
                f"{NAME}:gopher_too_many_hashes",
                lambda: text.count("#") / count > rules.max_symbol_ratio,
            ),
            (
                f"{NAME}:gopher_too_many_ellipsis",
                lambda: sum(map(text.count, ELLIPSES)) / count > rules.max_symbol_ratio,
            ),
            (
                f"{NAME}:gopher_too_many_bullets",
                lambda: (
                    sum(line.lstrip().startswith(BULLET) for line in lines) / len(lines)
                    > rules.max_bullet_line_fraction
                ),
            ),
            (
                f"{NAME}:gopher_too_many_end_ellipsis",
                lambda: (
                    sum(line.rstrip().endswith(ELLIPSES) for line in lines) / len(lines)
                    > rules.max_ellipsis_line_fraction
                ),
            ),
            (
                f"{NAME}:gopher_below_alpha_threshold",
                lambda: sum(map(_has_letter, items)) / count < rules.min_alphabetic_word_fraction,
            ),
            (
                f"{NAME}:gopher_enough_stop_words",
                lambda: (
                    sum(item.lower() in self.stop_words for item in items) < rules.min_stop_words
                ),
            ),
        ]
        return first_tripped(checks)


def _has_letter(word: str) -> bool:
    return any(character.isalpha() for character in word)
