"""FineWeb's own rules (`filters.fineweb`; Penedo et al. 2024, section 3.3, datatrove's
FineWebQualityFilter): lines ending in punctuation, short lines, characters in repeated lines,
and line breaks per word."""

from __future__ import annotations

from kubeforge.api.filters import FineWebQuality
from kubeforge_crawler.filters.base import Document, Rule, first_tripped, repeated, tokens

NAME = "FineWebQuality"
STOP_CHARACTERS = (".", "'", '"', "!", "?")


class FineWebQualityFilter:
    """Drops documents that are lists, menus or repeated boilerplate rather than prose."""

    def __init__(self, rules: FineWebQuality) -> None:
        self.rules = rules

    def __call__(self, document: Document) -> str | None:
        rules, text = self.rules, document.text
        lines = text.split("\n")
        checks: list[tuple[str, Rule]] = [
            (
                f"{NAME}:line_punct_ratio",
                lambda: (
                    sum(line.endswith(STOP_CHARACTERS) for line in lines) / len(lines)
                    <= rules.min_punctuated_line_fraction
                ),
            ),
            (
                f"{NAME}:short_line_ratio",
                lambda: (
                    sum(len(line) <= rules.short_line_length for line in lines) / len(lines)
                    >= rules.max_short_line_fraction
                ),
            ),
            (
                f"{NAME}:char_dup_ratio",
                lambda: (
                    repeated([line for line in lines if line.strip()])[1]
                    / max(len(text) - text.count("\n"), 1)
                    >= rules.max_duplicate_line_char_fraction
                ),
            ),
            (
                f"{NAME}:list_ratio",
                lambda: text.count("\n") / max(len(tokens(text)), 1) > rules.max_newlines_per_word,
            ),
        ]
        return first_tripped(checks)
