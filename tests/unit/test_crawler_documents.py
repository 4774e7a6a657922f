"""The crawler's document steps and bookkeeping as pure functions: extraction, PII, filters,
MinHash and LSH, sitemaps, and the end-of-crawl rule. Real libraries, no fakes.
"""

from __future__ import annotations

import gzip
import random
import re
from datetime import UTC, datetime

import pytest

from kubeforge.api.dataingest import (
    CrawlCounters,
    DropReason,
    PiiScrubbing,
    ProcessingSpec,
)
from kubeforge_crawler.checkpoint import CrawlState
from kubeforge_crawler.exchange import crawl_is_over
from kubeforge_crawler.extract import decode_html, extract_html
from kubeforge_crawler.minhash import (
    MinHasher,
    NearDuplicateIndex,
    decode_signatures,
    encode_signatures,
    estimated_similarity,
    optimal_bands,
)
from kubeforge_crawler.pii import PiiScrubber
from kubeforge_crawler.pipeline import Candidate, DocumentPipeline
from kubeforge_crawler.sitemaps import parse_sitemap
from tests.filtertexts import PROSE, paragraphs

PAGE = """<!DOCTYPE html><html><head><title> A  page </title>
<script>var tracking = 1;</script><style>p {}</style></head>
<body><nav><a href="/home">Home</a></nav><h1>Heading</h1><p>First <b>bold</b> words.</p>
<p>Second paragraph<br>after a break.</p><a href="next.html" rel="nofollow">skip</a>
<a href="other.html">other</a><footer>footer text</footer></body></html>"""


def test_extraction_keeps_text_lines_and_followable_links() -> None:
    extracted = extract_html(PAGE)
    assert extracted.title == "A page"
    assert (
        extracted.text
        == "Heading\nFirst bold words.\nSecond paragraph\nafter a break.\nskip\nother"
    )
    assert extracted.links == ("/home", "other.html")


def test_meta_robots_noindex_and_nofollow_are_honoured() -> None:
    page = PAGE.replace("<head>", '<head><meta name="robots" content="noindex, nofollow">')
    extracted = extract_html(page)
    assert (extracted.text, extracted.links) == ("", ())


def test_html_is_decoded_by_header_then_meta_charset() -> None:
    body = '<meta charset="iso-8859-1"><p>caf\xe9</p>'.encode("latin-1")
    assert "café" in decode_html(body, None)
    assert "café" in decode_html("<p>café</p>".encode(), "utf-8")


def test_pii_is_scrubbed_and_dates_and_versions_are_not() -> None:
    scrub = PiiScrubber(PiiScrubbing())
    text = (
        "Mail jane.doe+x@example.co.uk, call +1 415 555 0100 or (415) 555-0100. 2024-01-15 v3.11.7"
    )
    assert scrub(text) == "Mail <EMAIL>, call <PHONE> or <PHONE>. 2024-01-15 v3.11.7"
    assert PiiScrubber(PiiScrubbing(emails=False, phone_numbers=False))(text) == text


def prose(words: int, seed: int = 1) -> str:
    generator = random.Random(seed)  # noqa: S311 -- test text, not secrets
    vocabulary = [
        "crawler",
        "dataset",
        "politeness",
        "robots",
        "shard",
        "manifest",
        "training",
        "cluster",
        "storage",
        "document",
        "language",
        "quality",
        "filter",
        "duplicate",
    ]
    lines = []
    for _ in range(words // 10):
        lines.append(" ".join(generator.choice(vocabulary) for _ in range(10)) + ".")
    return "\n".join(f"{line} {index}" for index, line in enumerate(lines))


def word_jaccard(first: str, second: str, n: int = 5) -> float:
    def grams(text: str) -> set[str]:
        words = re.findall(r"\w+", text.lower())
        return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}

    a, b = grams(first), grams(second)
    return len(a & b) / len(a | b)


def test_minhash_estimates_jaccard_similarity() -> None:
    hasher = MinHasher(permutations=256, shingle_words=5)
    original = prose(2000)
    words = original.split(" ")
    for every in (200, 40, 10):
        changed = " ".join("changed" if i % every == 0 else w for i, w in enumerate(words))
        estimate = estimated_similarity(hasher.signature(original), hasher.signature(changed))
        assert estimate == pytest.approx(word_jaccard(original, changed), abs=0.1)
    assert (hasher.signature(original) == MinHasher(256, 5).signature(original)).all()


def test_bands_put_the_lsh_threshold_near_the_similarity_threshold() -> None:
    bands, rows = optimal_bands(0.8, 128)
    assert bands * rows <= 128
    assert 0.7 < (1 / bands) ** (1 / rows) < 0.9


def test_the_index_finds_near_duplicates_only() -> None:
    hasher = MinHasher(128, 5)
    index = NearDuplicateIndex(0.8, 128)
    original = prose(1000, seed=1)
    near = original.replace("shard", "pod", 1)
    other = prose(1000, seed=2)
    assert index.find(hasher.signature(original)) is None
    index.add(hasher.signature(original))
    assert index.find(hasher.signature(near)) == 0
    assert index.find(hasher.signature(other)) is None
    signatures = [hasher.signature(original), hasher.signature(other)]
    decoded = decode_signatures(encode_signatures(signatures, 128))
    assert all((a == b).all() for a, b in zip(decoded, signatures, strict=True))


def test_the_pipeline_drops_exact_then_near_duplicates() -> None:
    pipeline = DocumentPipeline(ProcessingSpec())
    extracted = extract_html(paragraphs(PROSE))
    now = datetime.now(UTC)
    first = pipeline.process("http://a.example/", now, 200, extracted)
    assert isinstance(first, Candidate)
    again = pipeline.process("http://b.example/", now, 200, extracted)
    assert again == DropReason.EXACT_DUPLICATE
    near = extract_html(paragraphs(PROSE.replace("heap", "pile", 1)))
    assert pipeline.process("http://c.example/", now, 200, near) == DropReason.NEAR_DUPLICATE
    empty = extract_html("<html><body></body></html>")
    assert pipeline.process("http://d.example/", now, 200, empty) == DropReason.NO_TEXT


SITEMAP_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def test_sitemaps_and_indexes_are_read_compressed_or_not() -> None:
    urlset = f"<urlset {SITEMAP_NS}><url><loc> https://a.example/1 </loc></url></urlset>"
    index = f"<sitemapindex {SITEMAP_NS}><sitemap><loc>https://a.example/s.xml</loc></sitemap></sitemapindex>"
    assert parse_sitemap(urlset.encode(), 10**6).pages == ("https://a.example/1",)
    assert parse_sitemap(gzip.compress(index.encode()), 10**6).sitemaps == (
        "https://a.example/s.xml",
    )
    with pytest.raises(ValueError, match="root element is <html>"):
        parse_sitemap(b"<html></html>", 10**6)
    with pytest.raises(ValueError, match="not a sitemap"):
        parse_sitemap(b"not xml", 10**6)


def state(
    shard: int, *, idle: bool, sent: tuple[str, ...] = (), consumed: tuple[str, ...] = ()
) -> CrawlState:
    return CrawlState(
        shard=shard,
        epoch=1,
        idle=idle,
        pending=(),
        seen=(),
        parts=(),
        counters=CrawlCounters(),
        pages_fetched=0,
        sent=sent,
        consumed=consumed,
    )


def test_the_crawl_is_over_when_all_are_idle_and_nothing_is_in_transit() -> None:
    batch = "exchange/00001/00000-abc.json"
    assert crawl_is_over([state(0, idle=True), state(1, idle=True)])
    assert not crawl_is_over([state(0, idle=True), None])
    assert not crawl_is_over([state(0, idle=True), state(1, idle=False)])
    assert not crawl_is_over([state(0, idle=True, sent=(batch,)), state(1, idle=True)])
    assert crawl_is_over(
        [state(0, idle=True, sent=(batch,)), state(1, idle=True, consumed=(batch,))]
    )
