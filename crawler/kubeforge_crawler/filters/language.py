"""Language identification with a score threshold (`processing.languages`, `filters.language`).

py3langid (langid.py's model, shipped inside the wheel, normalized to probabilities) stands in for
FineWeb's fastText lid.176, whose model would have to be downloaded: see docs/filters.md for what
differs. The model loads once per process (about half a second).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from kubeforge.api.filters import LanguageIdentification
from kubeforge_crawler.filters.base import Document

NAME = "Language"


@functools.cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify_language(text: str) -> tuple[str, float]:
    """The ISO 639-1 code of the text's most likely language, and its probability."""
    language, score = _identifier().classify(text)
    return str(language), float(score)


class LanguageFilter:
    """Keeps documents in one of the given languages (any, when none is given) whose language is
    identified with a probability above the threshold."""

    def __init__(self, languages: Sequence[str], settings: LanguageIdentification) -> None:
        self.languages = frozenset(languages)
        self.min_score = settings.min_score

    def __call__(self, document: Document) -> str | None:
        document.language, document.language_score = identify_language(document.text)
        if self.languages and document.language not in self.languages:
            return f"{NAME}:language"
        if document.language_score <= self.min_score:
            return f"{NAME}:low_score"
        return None
