"""Documents that each trip exactly one rule of the default (FineWeb) filters.

The prose is real: François Pinard's essay on heaps that ships in CPython's `heapq.__about__`,
one paragraph per line, which passes every default rule. Each document changes it just enough
to trip one rule, so a test can check that the rule, and only it, drops the document.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

_PARAGRAPHS = [" ".join(part.split()) for part in re.split(r"\n\s*\n", heapq.__about__)]
PROSE_LINES = [line for line in _PARAGRAPHS if len(line.split()) > 40]
PROSE = "\n".join(PROSE_LINES)
"""Six paragraphs of real English prose, one per line: kept by the default filters."""

SENTENCE = PROSE_LINES[0].split(". ")[0] + "."
URL = "https://partner.example/essays/heaps"
BLOCKED_DOMAIN = "blocked.example"
BLOCKED_WORD = "casino"
BLOCKED_SUBSTRING = "spamfarm"
BLOCKLIST = {
    "domains": [BLOCKED_DOMAIN],
    "words": [BLOCKED_WORD],
    "substrings": [BLOCKED_SUBSTRING],
}
GERMAN = (
    "Ein Haufen ist ein Feld, in dem jedes Element kleiner oder gleich seinen beiden Kindern ist. "
    "Das kleinste Element steht daher immer an erster Stelle, und man kann es entnehmen, ohne den "
    "Rest des Feldes zu sortieren. Neue Elemente werden am Ende angefügt und steigen auf, bis die "
    "Ordnung wiederhergestellt ist. Auf diese Weise lassen sich Zeitpläne, Ereignisse und große "
    "Sortierungen auf der Festplatte effizient verwalten. Turniere funktionieren übrigens nach "
    "demselben Prinzip, wie der Aufsatz erklärt."
)


def paragraphs(text: str) -> str:
    """An HTML page with a paragraph per line of the text."""
    body = "".join(f"<p>{line}</p>" for line in text.splitlines())
    return f"<html><body>{body}</body></html>"


@dataclass(frozen=True)
class Tripping:
    """A document and the one rule that drops it."""

    reason: str
    text: str
    url: str = URL


def _repeat_line(times: int) -> str:
    """The prose with its first sentence repeated on lines of its own."""
    return "\n".join(PROSE_LINES + [SENTENCE] * times)


TRIPPING = [
    Tripping("UrlBlocklist:domain", PROSE, f"https://www.{BLOCKED_DOMAIN}/heaps"),
    Tripping("UrlBlocklist:word", PROSE, f"https://partner.example/{BLOCKED_WORD}-night/heaps"),
    Tripping("UrlBlocklist:substring", PROSE, f"https://partner.example/my{BLOCKED_SUBSTRING}/"),
    Tripping("Language:language", GERMAN),
    Tripping("GopherRepetition:dup_para_frac", "\n\n".join(PROSE_LINES[:2] + [SENTENCE] * 3)),
    Tripping("GopherRepetition:dup_line_frac", _repeat_line(5)),
    Tripping(
        "GopherRepetition:top_2_gram",
        PROSE + "\n" + " ".join(["heap queue"] * 120) + ".",
    ),
    Tripping("GopherQuality:gopher_short_doc", SENTENCE),
    Tripping(
        "GopherQuality:gopher_too_many_ellipsis",
        re.sub(r"((?:\S+ ){8})", r"\1... ", PROSE),
    ),
    Tripping(
        "GopherQuality:gopher_enough_stop_words",
        re.sub(r"\b(the|be|to|of|and|that|have|with)\b", "a", PROSE, flags=re.IGNORECASE),
    ),
    Tripping("C4:lorem_ipsum", PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing."),
    Tripping("C4:curly_bracket", PROSE + "\nThe heap is written as { 1, 3, 2 } in the code."),
    Tripping("C4:too_few_sentences", " ".join(PROSE_LINES[0].split(". ")[:3])),
    Tripping(
        "FineWebQuality:line_punct_ratio",
        "\n".join(line.rstrip(".") + " and so on" for line in PROSE_LINES),
    ),
    Tripping(
        "FineWebQuality:char_dup_ratio",
        PROSE + "\nHeaps are useful memory structures to know." * 2,
    ),
]
