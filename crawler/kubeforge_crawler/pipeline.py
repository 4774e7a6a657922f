"""The document steps: extracted text → filters → PII scrubbing → exact and near dedup.

Each step either passes the text on or returns the reason it is dropped (counted by the shard,
each filter rule under its own reason). Filters come first and dedup last, so that only documents
worth keeping are remembered. The dedup memory (content hashes and MinHash signatures) is rebuilt
from the parts a shard has committed when it resumes, so it always matches what the dataset holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubeforge.api.dataingest import DropReason, ProcessingSpec
from kubeforge.dataset import WarcOrigin, content_hash
from kubeforge_crawler.extract import Extracted
from kubeforge_crawler.filters import Document, document_filters, identify_language
from kubeforge_crawler.minhash import MinHasher, NearDuplicateIndex, Signature
from kubeforge_crawler.pii import PiiScrubber


@dataclass(frozen=True)
class Candidate:
    """A document that passed every step, waiting to be written into a part."""

    url: str
    fetched_at: datetime
    http_status: int
    title: str | None
    language: str
    text: str
    content_hash: str
    signature: Signature
    warc: WarcOrigin | None = None


class DocumentPipeline:
    """The steps of one shard, with its dedup memory."""

    def __init__(self, processing: ProcessingSpec) -> None:
        self.filters = document_filters(processing)
        self.scrub = PiiScrubber(processing.pii)
        self.dedup = processing.dedup
        self.hasher = MinHasher(processing.dedup.permutations, processing.dedup.shingle_words)
        self.hashes: set[str] = set()
        self.index = NearDuplicateIndex(processing.dedup.threshold, processing.dedup.permutations)

    def remember(self, text_hash: str, signature: Signature) -> None:
        """Adds a kept document to the dedup memory."""
        self.hashes.add(text_hash)
        self.index.add(signature)

    def process(
        self,
        url: str,
        fetched_at: datetime,
        http_status: int,
        extracted: Extracted,
        warc: WarcOrigin | None = None,
    ) -> Candidate | str:
        """The document a page (or the WARC record `warc`) yields, or why it yields none (a
        `DropReason` or a filter rule's `Filter:rule`)."""
        if not extracted.text.strip():
            return DropReason.NO_TEXT
        document = Document(url, extracted.text)
        for step in self.filters:
            reason = step(document)
            if reason is not None:
                return reason
        language = document.language or identify_language(document.text)[0]
        text = self.scrub(document.text)
        text_hash = content_hash(text)
        if self.dedup.exact and text_hash in self.hashes:
            return DropReason.EXACT_DUPLICATE
        signature = self.hasher.signature(text)
        if self.dedup.near_duplicates and self.index.find(signature) is not None:
            return DropReason.NEAR_DUPLICATE
        self.remember(text_hash, signature)
        return Candidate(
            url=url,
            fetched_at=fetched_at,
            http_status=http_status,
            title=extracted.title,
            language=language,
            text=text,
            content_hash=text_hash,
            signature=signature,
            warc=warc,
        )
