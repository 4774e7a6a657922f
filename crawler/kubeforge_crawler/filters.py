"""Document filters: each looks at a document's text and returns None to keep it or the reason
it is dropped, which the shard counts.

- `LanguageFilter`: the language resiliparse detects must be one of `processing.languages`.
- `QualityFilter`: word count, mean word length, symbol ratio, alphabetic words and repeated
  lines, in the spirit of Gopher's quality rules (`processing.quality`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from resiliparse.parse.lang import detect_fast

from kubeforge.api.dataingest import DropReason
from kubeforge.api.dataingest import QualityFilter as QualityPolicy

# A whitespace-delimited word none of whose characters is a letter: every character is a symbol
# ([^\s\w]), a digit or an underscore.
_WORD_WITHOUT_LETTERS = re.compile(r"(?<!\S)(?:[^\s\w]|[\d_])+(?!\S)")


class Filter(Protocol):
    """A step that keeps a text (None) or says why it is dropped."""

    def __call__(self, text: str) -> DropReason | None: ...


def detect_language(text: str) -> str:
    """The ISO 639-1 code of the text's language (resiliparse's fast detector)."""
    language, _ = detect_fast(text)
    return language


class LanguageFilter:
    """Keeps texts in one of the given languages."""

    def __init__(self, languages: Sequence[str]) -> None:
        self.languages = frozenset(languages)

    def __call__(self, text: str) -> DropReason | None:
        return None if detect_language(text) in self.languages else DropReason.LANGUAGE


class QualityFilter:
    """Heuristic quality rules on words and lines."""

    def __init__(self, policy: QualityPolicy) -> None:
        self.policy = policy

    def __call__(self, text: str) -> DropReason | None:
        policy = self.policy
        words = text.split()
        if len(words) < policy.min_words:
            return DropReason.TOO_SHORT
        if len(words) > policy.max_words:
            return DropReason.TOO_LONG
        if not words:
            return None
        # Counted by C loops (join, regex) rather than per word in Python: this runs on every page.
        mean_length = len("".join(words)) / len(words)
        if not policy.min_mean_word_length <= mean_length <= policy.max_mean_word_length:
            return DropReason.LOW_QUALITY
        symbols = text.count("#") + text.count("...") + text.count("\u2026")
        if symbols / len(words) > policy.max_symbol_ratio:
            return DropReason.LOW_QUALITY
        alphabetic = len(words) - len(_WORD_WITHOUT_LETTERS.findall(text))
        if alphabetic / len(words) < policy.min_alphabetic_word_fraction:
            return DropReason.LOW_QUALITY
        lines = text.splitlines()
        repeated = len(lines) - len(set(lines))
        if lines and repeated / len(lines) > policy.max_duplicate_line_fraction:
            return DropReason.LOW_QUALITY
        return None
