"""kubeforge's dataset format: documents in parts, a completion marker per shard, a manifest.

A dataset version lives under one object-storage location (`s3://bucket/datasets/NAME/vN`):

    parts/SSSSS/PPPPP.jsonl.gz   documents, one JSON object per line (gzip), written by shard S;
    parts/SSSSS/PPPPP.parquet    or the same columns as Parquet (zstd), per `spec.output.format`
    shards/SSSSS.json            shard S's completion marker: its parts (counts, sha256, and the
                                 provenance of every document: url, fetch time, content hash,
                                 and the WARC file, record id and offset of one read from WARC)
    tokenizer.json               with `output.tokenizer`: a byte-level BPE (Hugging Face
                                 `tokenizers`) trained on the kept documents at publish
    manifest.json                written last, when every shard is complete: the schema, the
                                 shards, the parts and the documents a global pass removed (and
                                 the tokenizer, with each part's token count)
    state/, exchange/            the crawl's raw state (checkpoints, URLs passed between shards),
                                 which a lifecycle rule may expire once the crawl is over

Everything is committed data first, marker last: a part is only part of the dataset once a marker
lists it, and the dataset is only published once the manifest exists. Readers (the trainer) go
through `read_manifest` and `iter_documents`; writers (the crawler) through `write_part`,
`write_shard_marker` and `write_manifest`; the operator reports `total_counters` in status.
A part's format is told by its key's suffix, so readers need no setting; pyarrow is imported only
when a Parquet part is written or read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kubeforge.api.dataingest import CrawlCounters, OutputFormat
from kubeforge.storage import ObjectStore

FORMAT_VERSION = 1
MANIFEST_KEY = "manifest.json"
TOKENIZER_KEY = "tokenizer.json"
END_OF_DOCUMENT_TOKEN = "<|endoftext|>"  # noqa: S105 (a token of text, not a secret)
"""The special token a version's tokenizer ends every document with."""
STATE_PREFIX = "state/"
EXCHANGE_PREFIX = "exchange/"
RAW_PREFIXES = (STATE_PREFIX, EXCHANGE_PREFIX)
"""Where the crawl keeps its raw state, relative to the dataset's location."""


PART_SUFFIXES = {OutputFormat.JSONL: ".jsonl.gz", OutputFormat.PARQUET: ".parquet"}


def part_key(shard: int, part: int, format: OutputFormat = OutputFormat.JSONL) -> str:
    """Key of part `part` of shard `shard`."""
    return f"parts/{shard:05d}/{part:05d}{PART_SUFFIXES[format]}"


def part_format(key: str) -> OutputFormat:
    """The format of a part, from its key."""
    for format, suffix in PART_SUFFIXES.items():
        if key.endswith(suffix):
            return format
    raise ValueError(f"{key!r} is not a part: parts end with {', '.join(PART_SUFFIXES.values())}")


def part_stem(key: str) -> str:
    """A part's key without its format suffix (for the files that go with it)."""
    return key.removesuffix(PART_SUFFIXES[part_format(key)])


def shard_marker_key(shard: int) -> str:
    """Key of shard `shard`'s completion marker."""
    return f"shards/{shard:05d}.json"


def document_id(shard: int, part: int, row: int) -> str:
    """The id of the `row`-th document of a part: unique in the dataset and stable on rewrite."""
    return f"{shard:05d}-{part:05d}-{row:06d}"


def content_hash(text: str) -> str:
    """The hash that identifies a document's text (exact duplicates share it)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Record(BaseModel):
    """A record of the format. Readers ignore fields they do not know, so an older reader reads
    what a newer writer adds; a change that older readers must not read bumps FORMAT_VERSION,
    which they refuse (`_supported`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class NewerFormat(ValueError):
    """A marker or manifest written in a format version newer than this kubeforge reads."""


def _supported(version: int, what: str) -> None:
    if version > FORMAT_VERSION:
        raise NewerFormat(
            f"{what} is in dataset format {version}, written by a newer kubeforge; this one "
            f"reads formats up to {FORMAT_VERSION}: upgrade the image that reads it"
        )


class Document(_Record):
    """One document of the dataset: cleaned text with where and when it came from."""

    id: str = Field(description="Unique id in the dataset: shard, part and row.")
    url: str = Field(description="The URL the text was fetched from (after redirects).")
    fetched_at: AwareDatetime = Field(description="When the response was received.")
    content_hash: str = Field(description="sha256 of the text, as `sha256:HEX`.")
    language: str | None = Field(default=None, description="Detected language (ISO 639-1).")
    title: str | None = Field(default=None, description="The page's title.")
    text: str = Field(description="The extracted, cleaned text.")


class FieldSpec(_Record):
    """One column of the dataset's schema."""

    name: str
    type: Literal["string", "timestamp"]
    nullable: bool
    description: str


def _schema() -> tuple[FieldSpec, ...]:
    fields = []
    for name, info in Document.model_fields.items():
        nullable = info.default is None
        kind: Literal["string", "timestamp"] = "timestamp" if name == "fetched_at" else "string"
        fields.append(
            FieldSpec(name=name, type=kind, nullable=nullable, description=info.description or "")
        )
    return tuple(fields)


SCHEMA = _schema()
"""The columns of every part, derived from `Document`."""


class WarcOrigin(_Record):
    """The WARC or WET record a document was read from (`sources.warc`)."""

    file: str = Field(description="The file's URI.")
    record_id: str = Field(description="The record's WARC-Record-ID.")
    offset: int = Field(description="Where the record's gzip member starts in the file.")


class DocumentProvenance(_Record):
    """Where one document came from, listed in its shard's marker."""

    id: str
    url: str
    fetched_at: AwareDatetime
    content_hash: str
    http_status: int
    text_bytes: int | None = None  # UTF-8 bytes of its text; None in markers written before it
    warc: WarcOrigin | None = None  # None for a fetched page or a partner object


def total_text_bytes(documents: Iterable[DocumentProvenance]) -> int | None:
    """The UTF-8 bytes of the documents' texts; None if a marker from before they were recorded
    lacks one."""
    total = 0
    for document in documents:
        if document.text_bytes is None:
            return None
        total += document.text_bytes
    return total


class PartInfo(_Record):
    """A written part: its object, size, checksum and the provenance of its documents."""

    key: str
    shard: int
    index: int
    documents: int
    bytes: int
    sha256: str
    provenance: tuple[DocumentProvenance, ...]


class ShardMarker(_Record):
    """Shard completion marker: the shard is finished and these are all its parts."""

    format_version: int = FORMAT_VERSION
    shard: int
    parts: tuple[PartInfo, ...]
    counters: CrawlCounters
    user_agent: str
    extractor: str
    completed_at: AwareDatetime


class ManifestPart(_Record):
    """A part as the manifest lists it, with the documents a global pass removed from it."""

    key: str
    documents: int
    bytes: int
    sha256: str
    removed: tuple[str, ...] = ()
    text_bytes: int | None = Field(
        default=None,
        description="UTF-8 bytes of the text of its documents that are not removed, so a reader "
        "can size the part without reading it; None where the crawler did not record it.",
    )
    tokens: int | None = Field(
        default=None,
        description="Tokens of its documents that are not removed, each ended by the "
        "end-of-document token, with the version's tokenizer; None without one.",
    )


class TokenizerInfo(_Record):
    """The version's own tokenizer, trained at publish."""

    key: str = TOKENIZER_KEY
    sha256: str = Field(description="sha256 of the tokenizer.json bytes.")
    vocab_size: int = Field(description="Tokens in its vocabulary, special ones included.")
    end_of_document: str = Field(
        default=END_OF_DOCUMENT_TOKEN, description="The token that ends each document."
    )


class ShardSummary(_Record):
    """A shard as the manifest lists it."""

    shard: int
    marker: str
    documents: int
    counters: CrawlCounters


class Manifest(_Record):
    """The published dataset: its schema, shards and parts. Written last."""

    format_version: int = FORMAT_VERSION
    created_at: AwareDatetime
    schema_: tuple[FieldSpec, ...] = Field(default=SCHEMA, alias="schema")
    shards: tuple[ShardSummary, ...]
    parts: tuple[ManifestPart, ...]
    documents: int = Field(description="Documents in the dataset, removals subtracted.")
    bytes: int = Field(description="Bytes of all parts.")
    duplicates_removed: int = Field(description="Documents the global deduplication removed.")
    tokenizer: TokenizerInfo | None = Field(
        default=None,
        description="The tokenizer trained on this version (`output.tokenizer`); None without "
        "one, and in manifests written before tokenizers existed.",
    )


def _arrow_schema() -> Any:
    import pyarrow as pa  # type: ignore[import-untyped]

    types = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema(
        [pa.field(column.name, types[column.type], nullable=column.nullable) for column in SCHEMA]
    )


def encode_part(documents: Iterable[Document], format: OutputFormat = OutputFormat.JSONL) -> bytes:
    """Documents as gzip-compressed JSON lines, or as a Parquet file with the dataset's schema
    (zstd); byte-identical for identical input."""
    if format is OutputFormat.PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        rows = [document.model_dump() for document in documents]
        table = pa.Table.from_pylist(rows, schema=_arrow_schema())
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()
    lines = "".join(document.model_dump_json() + "\n" for document in documents)
    return gzip.compress(lines.encode("utf-8"), mtime=0)


def decode_part(data: bytes, format: OutputFormat = OutputFormat.JSONL) -> list[Document]:
    """The documents of an encoded part."""
    if format is OutputFormat.PARQUET:
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        return [Document.model_validate(row) for row in rows]
    text = gzip.decompress(data).decode("utf-8")
    return [Document.model_validate_json(line) for line in text.splitlines()]


def write_part(
    store: ObjectStore,
    shard: int,
    index: int,
    documents: list[Document],
    http_statuses: list[int],
    format: OutputFormat = OutputFormat.JSONL,
    warc_origins: Sequence[WarcOrigin | None] | None = None,
) -> PartInfo:
    """Writes part `index` of `shard` and describes it (not yet committed: no marker lists it);
    `warc_origins`, row by row, where documents came from WARC records."""
    data = encode_part(documents, format)
    key = part_key(shard, index, format)
    store.put(key, data)
    provenance = tuple(
        DocumentProvenance(
            id=document.id,
            url=document.url,
            fetched_at=document.fetched_at,
            content_hash=document.content_hash,
            http_status=status,
            text_bytes=len(document.text.encode("utf-8")),
            warc=origin,
        )
        for document, status, origin in zip(
            documents, http_statuses, warc_origins or [None] * len(documents), strict=True
        )
    )
    return PartInfo(
        key=key,
        shard=shard,
        index=index,
        documents=len(documents),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        provenance=provenance,
    )


class CorruptPart(ValueError):
    """A part's bytes do not match the checksum its marker or the manifest recorded."""


def read_part(store: ObjectStore, key: str, sha256: str) -> list[Document]:
    """The documents of a part, after checking its checksum."""
    data = store.get(key)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptPart(f"{store.uri}/{key}: sha256 differs from the recorded {sha256}")
    return decode_part(data, part_format(key))


def write_shard_marker(store: ObjectStore, marker: ShardMarker) -> None:
    """Commits a shard: from now on it is complete and a rerun skips it."""
    store.put(shard_marker_key(marker.shard), marker.model_dump_json().encode("utf-8"))


def read_shard_marker(store: ObjectStore, shard: int) -> ShardMarker:
    """The completion marker of a shard; raises ObjectNotFound while it is not complete."""
    key = shard_marker_key(shard)
    marker = ShardMarker.model_validate_json(store.get(key))
    _supported(marker.format_version, f"{store.uri}/{key}")
    return marker


def write_manifest(store: ObjectStore, manifest: Manifest) -> None:
    """Publishes the dataset."""
    data = manifest.model_dump_json(by_alias=True, indent=2).encode("utf-8")
    store.put(MANIFEST_KEY, data)


def read_manifest(store: ObjectStore) -> Manifest:
    """The manifest of a published dataset; raises ObjectNotFound while it is unpublished."""
    manifest = Manifest.model_validate(json.loads(store.get(MANIFEST_KEY)))
    _supported(manifest.format_version, f"{store.uri}/{MANIFEST_KEY}")
    return manifest


def kept_documents(store: ObjectStore, part: ManifestPart) -> list[Document]:
    """The documents of one part of a published dataset, without the removed ones."""
    removed = set(part.removed)
    return [
        document
        for document in read_part(store, part.key, part.sha256)
        if document.id not in removed
    ]


def iter_documents(store: ObjectStore, manifest: Manifest) -> Iterator[Document]:
    """Every document of a published dataset, in manifest order, without the removed ones."""
    for part in manifest.parts:
        yield from kept_documents(store, part)


def total_counters(manifest: Manifest) -> CrawlCounters:
    """The counters of all shards, with the publish stage's removals added."""
    total = CrawlCounters()
    for shard in manifest.shards:
        total = total.plus(shard.counters)
    removed = manifest.duplicates_removed
    return total.model_copy(
        update={
            "documents_kept": total.documents_kept - removed,
            "duplicates_removed": total.duplicates_removed + removed,
        }
    )
