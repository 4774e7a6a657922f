"""The document filters rule by rule: each rule drops, under its own reason, a document made to
trip it (and only it), the real prose they are made from passes every rule, and the counters
keep each reason apart. Real language model (py3langid), no fakes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubeforge.api.dataingest import ProcessingSpec
from kubeforge.api.filters import (
    C4Rules,
    FineWebQuality,
    GopherQuality,
    GopherRepetition,
    NGramLimit,
)
from kubeforge_crawler.counters import ShardCounters
from kubeforge_crawler.extract import Extracted, extract_html
from kubeforge_crawler.filters import Document, document_filters, identify_language
from kubeforge_crawler.filters.c4 import C4Filter, sentences
from kubeforge_crawler.filters.fineweb import FineWebQualityFilter
from kubeforge_crawler.filters.gopher_quality import GopherQualityFilter
from kubeforge_crawler.filters.gopher_repetition import (
    GopherRepetitionFilter,
    duplicate_n_gram_fraction,
    top_n_gram_fraction,
)
from kubeforge_crawler.pipeline import Candidate, DocumentPipeline
from tests.filtertexts import (
    BLOCKLIST,
    GERMAN,
    PROSE,
    PROSE_LINES,
    SENTENCE,
    TRIPPING,
    URL,
    Tripping,
    paragraphs,
)

PUBLISHED = {"languages": ["en"], "filters": {"url": BLOCKLIST}}


def first_drop(text: str, url: str = URL, spec: dict[str, Any] | None = None) -> str | None:
    document = Document(url, text)
    settings = ProcessingSpec.model_validate(PUBLISHED if spec is None else spec)
    for step in document_filters(settings):
        reason = step(document)
        if reason is not None:
            return reason
    return None


def test_the_real_prose_passes_every_published_rule() -> None:
    assert first_drop(PROSE) is None


@pytest.mark.parametrize("tripping", TRIPPING, ids=lambda tripping: tripping.reason)
def test_each_rule_drops_its_document_under_its_own_reason(tripping: Tripping) -> None:
    assert first_drop(tripping.text, tripping.url) == tripping.reason


# The rule sets overlap by design, so some documents also fail a later filter: German has no
# English stop words, any repeated line is over FineWeb's 1% of repeated characters, and one
# sentence is under C4's five.
OVERLAPPING = {
    "Language:language",
    "GopherRepetition:dup_para_frac",
    "GopherRepetition:dup_line_frac",
    "GopherQuality:gopher_short_doc",
}


@pytest.mark.parametrize(
    "tripping",
    [tripping for tripping in TRIPPING if tripping.reason not in OVERLAPPING],
    ids=lambda tripping: tripping.reason,
)
def test_without_its_filter_the_document_passes_the_others(tripping: Tripping) -> None:
    section = {
        "UrlBlocklist": "url",
        "GopherRepetition": "gopherRepetition",
        "GopherQuality": "gopherQuality",
        "C4": "c4",
        "FineWebQuality": "fineweb",
    }[tripping.reason.split(":")[0]]
    filters = {"url": BLOCKLIST, section: {"enabled": False}}
    assert (
        first_drop(tripping.text, tripping.url, {"languages": ["en"], "filters": filters}) is None
    )


def test_the_language_score_threshold_applies_to_any_language() -> None:
    language, score = identify_language(GERMAN)
    assert language == "de"
    assert score > 0.99
    assert first_drop(GERMAN, spec={}) == "GopherQuality:gopher_enough_stop_words"
    strict = {"filters": {"language": {"minScore": 0.999}}}
    short_language, short_score = identify_language(SENTENCE)
    assert short_language == "en"
    assert short_score <= 0.999
    assert first_drop(SENTENCE, spec=strict) == "Language:low_score"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("word " * 250, "GopherQuality:gopher_long_doc"),
        ("a an to of is it " * 20, "GopherQuality:gopher_below_avg_threshold"),
        ("extraordinarily incomprehensible " * 40, "GopherQuality:gopher_above_avg_threshold"),
        ("the heap # with items # " * 20, "GopherQuality:gopher_too_many_hashes"),
        (
            "\n".join(f"• the heaps contain items {n} without their keys" for n in range(20)),
            "GopherQuality:gopher_too_many_bullets",
        ),
        (
            "\n".join(
                f"the heap keeps item {n} with the key and more" + ("..." if n % 2 else ".")
                for n in range(15)
            ),
            "GopherQuality:gopher_too_many_end_ellipsis",
        ),
        (
            "the heap 1234 5678 9012 3456 7890 with " * 10,
            "GopherQuality:gopher_below_alpha_threshold",
        ),
    ],
)
def test_gopher_quality_rules(text: str, reason: str) -> None:
    rules = GopherQuality(min_words=20, max_words=200)
    assert GopherQualityFilter(rules)(Document(URL, text)) == reason


def test_gopher_repetition_measures_characters_of_words() -> None:
    words = ["a", "bb", "a", "bb", "a", "bb"]
    # "a bb" occurs three times: 3 times 3 characters of 9.
    assert top_n_gram_fraction(words, 2, 9) == 1.0
    # The 2-grams from the third word on repeat the first: words 3 to 6 (6 characters of 9).
    assert duplicate_n_gram_fraction(words, 2, 9) == pytest.approx(6 / 9)
    assert duplicate_n_gram_fraction(["one", "two", "three", "four"], 2, 15) == 0.0


def test_repeated_longer_n_grams_cover_no_more_than_shorter_ones() -> None:
    """What lets the filter stop at the first fraction within every longer n-gram's limit."""
    items = (PROSE + " " + " ".join(PROSE_LINES[0].split()[:30]) * 2).split()
    characters = sum(map(len, items))
    fractions = [duplicate_n_gram_fraction(items, n, characters) for n in range(1, 12)]
    assert fractions == sorted(fractions, reverse=True)
    assert fractions[4] > 0
    strict_ten = GopherRepetition(
        top_n_grams=[],
        duplicate_n_grams=[NGramLimit(n=5, max_fraction=0.9), NGramLimit(n=10, max_fraction=0.0)],
    )
    text = PROSE + "\n" + " ".join(PROSE_LINES[0].split()[:12])
    assert GopherRepetitionFilter(strict_ten)(Document(URL, text)) == (
        "GopherRepetition:duplicated_10_n_grams"
    )


def test_gopher_repetition_counts_repeated_characters_of_paragraphs_and_lines() -> None:
    long_line = max(PROSE_LINES, key=len)
    others = [line for line in PROSE_LINES if line != long_line]
    text = "\n\n".join([long_line, others[0], long_line])
    rules = GopherRepetition(max_duplicate_paragraph_fraction=0.5)
    assert (
        GopherRepetitionFilter(rules)(Document(URL, text)) == "GopherRepetition:dup_para_char_frac"
    )
    lines = "\n".join([long_line, *others[:3], long_line])
    assert GopherRepetitionFilter(GopherRepetition())(Document(URL, lines)) == (
        "GopherRepetition:dup_line_char_frac"
    )
    dup = " ".join(PROSE_LINES[0].split()[:12])
    repeated = PROSE + "\n" + " ".join([dup] * 30)
    rules = GopherRepetition(top_n_grams=[])
    assert GopherRepetitionFilter(rules)(Document(URL, repeated)) == (
        "GopherRepetition:duplicated_5_n_grams"
    )


def test_c4_line_rules_remove_lines_and_keep_the_rest() -> None:
    lines = [
        PROSE_LINES[0] + "[1]",
        "Please enable JavaScript to view the comments.",
        "This site uses cookies to improve your experience.",
        "Home",
        "x" * 1001 + " is a very long word",
        *PROSE_LINES[1:],
    ]
    document, clean = Document(URL, "\n".join(lines)), Document(URL, PROSE)
    assert C4Filter(C4Rules())(document) is None
    assert C4Filter(C4Rules())(clean) is None
    assert document.text == clean.text
    assert "[1]" not in clean.text
    assert len(clean.text.splitlines()) == len(PROSE_LINES)
    # C4 itself, not FineWeb, removes lines without terminal punctuation (":-)" has none).
    strict = Document(URL, clean.text)
    assert C4Filter(C4Rules(require_terminal_punctuation=True))(strict) is None
    assert strict.text.splitlines() == clean.text.splitlines()[:-1]


def test_c4_counts_sentences_per_line() -> None:
    assert sentences("One. Two! Three? Four") == 4
    assert sentences('He said "stop." Then left.') == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "\n".join(f"the heap item number {n}" for n in range(20)),
            "FineWebQuality:line_punct_ratio",
        ),
        ("\n".join(f"Heap item {n}." for n in range(20)), "FineWebQuality:short_line_ratio"),
        (
            # Lines of three words: a list, which C4's three-words-per-line rule lets through.
            "\n".join(
                f"Extraordinary heapification{n} everywhere" + ("." if n % 7 == 0 else "")
                for n in range(40)
            ),
            "FineWebQuality:list_ratio",
        ),
    ],
)
def test_fineweb_quality_rules(text: str, reason: str) -> None:
    assert FineWebQualityFilter(FineWebQuality())(Document(URL, text)) == reason


def test_url_blocklists_match_subdomains_words_and_substrings_only() -> None:
    assert first_drop(PROSE, "https://notblocked.example/") is None
    assert first_drop(PROSE, "https://partner.example/casinos") is None
    assert first_drop(PROSE, "https://partner.example/my-spam-farm/") == "UrlBlocklist:substring"


def test_disabled_filters_do_not_run() -> None:
    off = {
        section: {"enabled": False}
        for section in ("url", "language", "gopherRepetition", "gopherQuality", "c4", "fineweb")
    }
    assert document_filters(ProcessingSpec.model_validate({"filters": off})) == []


def test_each_reason_is_counted_apart_and_reaches_the_status_counters() -> None:
    pipeline = DocumentPipeline(ProcessingSpec.model_validate(PUBLISHED))
    counters = ShardCounters()
    now = datetime.now(UTC)
    for tripping in TRIPPING:
        extracted = Extracted(title=None, text=tripping.text, links=())
        result = pipeline.process(tripping.url, now, 200, extracted)
        assert not isinstance(result, Candidate)
        counters.drop(result)
    kept = pipeline.process(URL, now, 200, extract_html(paragraphs(PROSE)))
    assert isinstance(kept, Candidate)
    assert kept.language == "en"
    counters.kept()
    snapshot = counters.snapshot()
    assert snapshot.dropped_by_reason == {tripping.reason: 1 for tripping in TRIPPING}
    assert ShardCounters(snapshot).snapshot() == snapshot
