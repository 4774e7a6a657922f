"""The document filters of a DataIngest (`spec.processing.filters`): FineWeb's rule sets, each
rule with its own threshold and its own drop reason.

The defaults are the values of the published pipeline (datatrove's filters as FineWeb ran them,
which follow the Gopher and C4 papers); docs/filters.md cites each one. A threshold is compared
the way datatrove compares it, so "at most" and "below" are spelled out in each description.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from kubeforge.api.meta import CamelModel, Int32, cel_rule, defaulted, set_of, unique

BLOCKLIST_LIMIT = 10000
"""The most domains, words or substrings in one URL blocklist (bounds the object's size)."""

# A domain as a blocklist names it: lowercase labels, no port, no scheme.
BLOCKED_DOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Lowercase letters and digits: what URL words and substrings are compared in.
LOWERCASE_WORD = r"^[a-z0-9]+$"
WORD = r"^\S+$"

Fraction = Annotated[float, Field(ge=0, le=1)]
BlockedDomain = Annotated[str, Field(pattern=BLOCKED_DOMAIN, max_length=253)]
LowercaseWord = Annotated[str, Field(pattern=LOWERCASE_WORD, max_length=64)]
Word = Annotated[str, Field(pattern=WORD, max_length=64)]


def _blocklist(description: str) -> Any:
    return set_of(description, BLOCKLIST_LIMIT)


class UrlBlocklist(CamelModel):
    """URLs whose documents are dropped before anything else is computed (datatrove's URLFilter
    with lists of your own: the UT1 adult list FineWeb used is not shipped)."""

    enabled: bool = Field(default=True, description="Apply the blocklists.")
    domains: Annotated[list[BlockedDomain], AfterValidator(unique)] = _blocklist(
        "Domains whose URLs are dropped, each with its subdomains (reason UrlBlocklist:domain)."
    )
    words: Annotated[list[LowercaseWord], AfterValidator(unique)] = _blocklist(
        "Words (lowercase letters and digits) dropped when the URL, split at every "
        "other character, contains one of them (reason UrlBlocklist:word)."
    )
    substrings: Annotated[list[LowercaseWord], AfterValidator(unique)] = _blocklist(
        "Lowercase letters and digits dropped when they occur anywhere in the URL with "
        "everything but letters and digits removed (reason UrlBlocklist:substring)."
    )


class LanguageIdentification(CamelModel):
    """The language a document is in, and how sure the identifier is (py3langid's probability;
    `processing.languages` names the languages kept)."""

    enabled: bool = Field(default=True, description="Drop documents by language and score.")
    min_score: Fraction = Field(
        default=0.65,
        description="A document whose most likely language has this probability or less is "
        "dropped (reason Language:low_score), whether or not `processing.languages` is set.",
    )


class NGramLimit(CamelModel):
    """A limit on the characters that repeated n-grams of words cover."""

    n: Int32 = Field(ge=1, le=20, description="Words per n-gram.")
    max_fraction: Fraction = Field(description="Largest fraction of the characters covered.")


TOP_N_GRAMS = ((2, 0.2), (3, 0.18), (4, 0.16))
DUPLICATE_N_GRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


def _n_gram_limits(pairs: tuple[tuple[int, float], ...], description: str) -> Any:
    return Field(
        default_factory=lambda: [NGramLimit(n=n, max_fraction=fraction) for n, fraction in pairs],
        max_length=20,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["n"],
            "default": [{"n": n, "maxFraction": fraction} for n, fraction in pairs],
        },
        description=description,
    )


def _one_limit_per_n(limits: list[NGramLimit]) -> list[NGramLimit]:
    unique([limit.n for limit in limits])
    return limits


class GopherRepetition(CamelModel):
    """Gopher's repetition rules (Rae et al. 2021, table A1): repeated lines, paragraphs and
    n-grams of words."""

    enabled: bool = Field(default=True, description="Apply the repetition rules.")
    max_duplicate_paragraph_fraction: Fraction = Field(
        default=0.3,
        description="Most fraction of paragraphs that repeat an earlier one (dup_para_frac).",
    )
    max_duplicate_paragraph_char_fraction: Fraction = Field(
        default=0.2,
        description="Most fraction of characters in repeated paragraphs (dup_para_char_frac).",
    )
    max_duplicate_line_fraction: Fraction = Field(
        default=0.3,
        description="Most fraction of lines that repeat an earlier one (dup_line_frac).",
    )
    max_duplicate_line_char_fraction: Fraction = Field(
        default=0.2,
        description="Most fraction of characters in repeated lines (dup_line_char_frac).",
    )
    top_n_grams: Annotated[list[NGramLimit], AfterValidator(_one_limit_per_n)] = _n_gram_limits(
        TOP_N_GRAMS,
        "Most fraction of word characters the most frequent n-gram covers, per n (top_<n>_gram).",
    )
    duplicate_n_grams: Annotated[list[NGramLimit], AfterValidator(_one_limit_per_n)] = (
        _n_gram_limits(
            DUPLICATE_N_GRAMS,
            "Most fraction of word characters that n-grams seen earlier in the document cover, "
            "per n (duplicated_<n>_n_grams).",
        )
    )


STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class GopherQuality(CamelModel):
    """Gopher's quality rules (Rae et al. 2021, section A.1.1) on words and lines."""

    enabled: bool = Field(default=True, description="Apply the quality rules.")
    min_words: Int32 = Field(
        default=50, ge=0, description="Fewest words a document may have (gopher_short_doc)."
    )
    max_words: Int32 = Field(
        default=100000, ge=1, description="Most words a document may have (gopher_long_doc)."
    )
    min_mean_word_length: float = Field(
        default=3.0,
        ge=0,
        description="Smallest mean word length, in characters (gopher_below_avg_threshold).",
    )
    max_mean_word_length: float = Field(
        default=10.0,
        gt=0,
        description="Largest mean word length, in characters (gopher_above_avg_threshold).",
    )
    max_symbol_ratio: float = Field(
        default=0.1,
        ge=0,
        description="Most '#' symbols per word (gopher_too_many_hashes), and separately most "
        "ellipses ('...' or '…') per word (gopher_too_many_ellipsis).",
    )
    max_bullet_line_fraction: Fraction = Field(
        default=0.9,
        description="Most fraction of lines that start with a bullet (gopher_too_many_bullets).",
    )
    max_ellipsis_line_fraction: Fraction = Field(
        default=0.3,
        description="Most fraction of lines that end with an ellipsis "
        "(gopher_too_many_end_ellipsis).",
    )
    min_alphabetic_word_fraction: Fraction = Field(
        default=0.8,
        description="Least fraction of words that contain a letter (gopher_below_alpha_threshold).",
    )
    min_stop_words: Int32 = Field(
        default=2,
        ge=0,
        description="Fewest occurrences of the stop words (gopher_enough_stop_words).",
    )
    stop_words: Annotated[list[Word], AfterValidator(unique)] = Field(
        default_factory=lambda: list(STOP_WORDS),
        min_length=1,
        max_length=1000,
        json_schema_extra={"x-kubernetes-list-type": "set", "default": list(STOP_WORDS)},
        description="The stop words counted, in any case (Gopher's English list by default).",
    )

    # Guarded although both are defaulted: the apiserver checks the rule against `default: {}`
    # of the parent before it applies the fields' own defaults.
    @cel_rule(
        "!has(self.minWords) || !has(self.maxWords) || self.minWords <= self.maxWords",
        "minWords must not exceed maxWords",
        field_path=".minWords",
    )
    def _word_bounds_ordered(self) -> bool:
        return self.min_words <= self.max_words

    @cel_rule(
        "!has(self.minMeanWordLength) || !has(self.maxMeanWordLength) || "
        "self.minMeanWordLength <= self.maxMeanWordLength",
        "minMeanWordLength must not exceed maxMeanWordLength",
        field_path=".minMeanWordLength",
    )
    def _word_lengths_ordered(self) -> bool:
        return self.min_mean_word_length <= self.max_mean_word_length


class C4Rules(CamelModel):
    """C4's line and document rules (Raffel et al. 2020, section 2.2, as datatrove's
    C4QualityFilter runs them): line rules remove lines, document rules drop the document."""

    enabled: bool = Field(default=True, description="Apply the C4 rules.")
    remove_citations: bool = Field(
        default=True, description="Remove Wikipedia-style markers ([1], [edit], [citation needed])."
    )
    require_terminal_punctuation: bool = Field(
        default=False,
        description="Remove lines that do not end in . ? ! \" or ' (C4 does; FineWeb turned it "
        "off, as this default does).",
    )
    min_words_per_line: Int32 = Field(
        default=3, ge=0, description="Remove lines with fewer words than this."
    )
    max_word_length: Int32 = Field(
        default=1000, ge=1, description="Remove lines with a word longer than this, in characters."
    )
    remove_javascript_lines: bool = Field(
        default=True, description="Remove lines that mention javascript."
    )
    remove_policy_lines: bool = Field(
        default=True,
        description="Remove lines about terms of use, privacy and cookie policies.",
    )
    drop_lorem_ipsum: bool = Field(
        default=True, description="Drop documents that contain 'lorem ipsum' (lorem_ipsum)."
    )
    drop_curly_brackets: bool = Field(
        default=True, description="Drop documents that contain '{' (curly_bracket)."
    )
    min_sentences: Int32 = Field(
        default=5,
        ge=0,
        description="Drop documents with fewer sentences in the lines kept (too_few_sentences).",
    )


class FineWebQuality(CamelModel):
    """FineWeb's own rules (Penedo et al. 2024, section 3.3, datatrove's FineWebQualityFilter)."""

    enabled: bool = Field(default=True, description="Apply FineWeb's rules.")
    min_punctuated_line_fraction: Fraction = Field(
        default=0.12,
        description="A document whose fraction of lines ending in . ' \" ! or ? is this or less "
        "is dropped (line_punct_ratio).",
    )
    short_line_length: Int32 = Field(
        default=30, ge=0, description="Characters a line may have and still count as short."
    )
    max_short_line_fraction: Fraction = Field(
        default=0.67,
        description="A document whose fraction of short lines is this or more is dropped "
        "(short_line_ratio).",
    )
    max_duplicate_line_char_fraction: Fraction = Field(
        default=0.01,
        description="A document whose repeated non-empty lines hold this fraction of its "
        "characters or more is dropped (char_dup_ratio).",
    )
    max_newlines_per_word: float = Field(
        default=0.3,
        ge=0,
        description="A document with more line breaks per word is dropped: a list, not prose "
        "(list_ratio).",
    )


class DocumentFilters(CamelModel):
    """The filters a document passes, in this order (FineWeb's): URL blocklists, language,
    Gopher repetition, Gopher quality, C4, FineWeb. Each drop is counted under its rule's reason
    (e.g. GopherRepetition:dup_line_frac)."""

    url: UrlBlocklist = defaulted(UrlBlocklist, "URL blocklists (empty by default).")
    language: LanguageIdentification = defaulted(
        LanguageIdentification, "Language identification and its score threshold."
    )
    gopher_repetition: GopherRepetition = defaulted(GopherRepetition, "Gopher's repetition rules.")
    gopher_quality: GopherQuality = defaulted(GopherQuality, "Gopher's quality rules.")
    c4: C4Rules = defaulted(C4Rules, "C4's line and document rules.")
    fineweb: FineWebQuality = defaulted(FineWebQuality, "FineWeb's quality rules.")
