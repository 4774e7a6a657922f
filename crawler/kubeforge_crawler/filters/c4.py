"""C4's rules (`filters.c4`; Raffel et al. 2020, section 2.2, with the additions of its
TensorFlow Datasets code as datatrove's C4QualityFilter runs them).

Line rules remove lines (too few words, a word too long, no terminal punctuation, javascript,
policy boilerplate) and the document keeps the lines that pass; document rules drop the whole
document (lorem ipsum, a curly bracket, too few sentences left).
"""

from __future__ import annotations

import re

from kubeforge.api.filters import C4Rules
from kubeforge_crawler.filters.base import Document

NAME = "C4"
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
TERMINAL_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# A sentence ends at . ! or ? (and closing quotes or brackets) followed by more text; the end of
# a line ends its last sentence. Stands in for NLTK's Punkt, which datatrove counts with.
_SENTENCE_BREAK = re.compile(r"[.!?][\"')\]]*\s+(?=\S)")


def sentences(line: str) -> int:
    """How many sentences a non-empty line holds."""
    return 1 + len(_SENTENCE_BREAK.findall(line))


class C4Filter:
    """Removes C4's boilerplate lines and drops the documents C4 drops."""

    def __init__(self, rules: C4Rules) -> None:
        self.rules = rules

    def __call__(self, document: Document) -> str | None:
        rules = self.rules
        kept: list[str] = []
        sentence_count = 0
        for raw in document.text.splitlines():
            line = raw.strip()
            line_words = line.split()
            if any(len(word) > rules.max_word_length for word in line_words):
                continue
            if rules.remove_citations:
                line = _CITATION.sub("", line)
            if rules.require_terminal_punctuation and (
                not line.endswith(TERMINAL_PUNCTUATION) or line.endswith("...")
            ):
                continue
            if len(line_words) < rules.min_words_per_line:
                continue
            lowered = line.lower()
            if rules.drop_lorem_ipsum and "lorem ipsum" in lowered:
                return f"{NAME}:lorem_ipsum"
            if rules.remove_javascript_lines and "javascript" in lowered:
                continue
            if rules.drop_curly_brackets and "{" in line:
                return f"{NAME}:curly_bracket"
            if rules.remove_policy_lines and any(phrase in lowered for phrase in POLICY_PHRASES):
                continue
            sentence_count += sentences(line)
            kept.append(line)
        if sentence_count < rules.min_sentences:
            return f"{NAME}:too_few_sentences"
        document.text = "\n".join(kept)
        return None
