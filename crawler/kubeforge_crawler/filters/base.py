"""What every filter shares: the document it looks at, its protocol, and the text measures more
than one rule set uses (words, repeated items)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Words and punctuation as separate tokens, close to NLTK's word_tokenize (which datatrove uses)
# at the speed of one C regex: a word is a run of word characters with inner apostrophes.
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]+")


@dataclass
class Document:
    """A document on its way through the filters. C4's line rules shorten `text`; the language
    filter records what it identified, so the pipeline does not identify it again."""

    url: str
    text: str
    language: str | None = None
    language_score: float = 0.0


class Filter(Protocol):
    """A step that keeps a document (None) or says why it is dropped (`Filter:rule`)."""

    def __call__(self, document: Document) -> str | None: ...


Rule = Callable[[], bool]


def first_tripped(rules: Iterable[tuple[str, Rule]]) -> str | None:
    """The reason of the first rule that trips, or None when none does."""
    for reason, trips in rules:
        if trips():
            return reason
    return None


def words(text: str) -> list[str]:
    """The words of a text, without punctuation."""
    return _WORD.findall(text)


def tokens(text: str) -> list[str]:
    """The words and the runs of punctuation of a text."""
    return _TOKEN.findall(text)


def repeated(items: Sequence[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    seen: set[str] = set()
    count = characters = 0
    for item in items:
        if item in seen:
            count += 1
            characters += len(item)
        else:
            seen.add(item)
    return count, characters
