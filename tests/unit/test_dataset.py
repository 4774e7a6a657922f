"""The dataset format and file-system object storage: keys, atomic writes, parts, markers and
the manifest, read back the way the trainer reads them. Real files under a temporary directory.
(The same store interface on S3 is exercised by the crawler's resume test.)
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.api.dataingest import CrawlCounters, OutputFormat
from kubeforge.dataset import (
    FORMAT_VERSION,
    MANIFEST_KEY,
    SCHEMA,
    CorruptPart,
    Document,
    Manifest,
    ManifestPart,
    NewerFormat,
    ShardMarker,
    content_hash,
    decode_part,
    document_id,
    encode_part,
    iter_documents,
    part_format,
    read_manifest,
    read_shard_marker,
    write_manifest,
    write_part,
    write_shard_marker,
)
from kubeforge.storage import FileStore, ObjectNotFound, open_store

FETCHED = datetime(2025, 1, 1, tzinfo=UTC)


def documents(shard: int, part: int, texts: list[str]) -> list[Document]:
    return [
        Document(
            id=document_id(shard, part, row),
            url=f"https://example.com/{shard}/{part}/{row}",
            fetched_at=FETCHED,
            content_hash=content_hash(text),
            language="en",
            title=None,
            text=text,
        )
        for row, text in enumerate(texts)
    ]


def test_a_file_store_writes_atomically_and_lists_keys(tmp_path: Path) -> None:
    store = open_store((tmp_path / "data").as_uri())
    assert isinstance(store, FileStore)
    assert store.list() == []
    store.put("a/b.json", b"1")
    store.put("a/b.json", b"2")
    store.put("c.json", b"3")
    assert store.get("a/b.json") == b"2"
    assert store.list() == ["a/b.json", "c.json"]
    assert store.list("a/") == ["a/b.json"]
    assert [path.name for path in (tmp_path / "data" / "a").iterdir()] == ["b.json"]
    store.delete("c.json")
    store.delete("c.json")
    assert not store.exists("c.json")
    with pytest.raises(ObjectNotFound):
        store.get("c.json")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a"])
def test_keys_stay_below_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="not a relative object key"):
        FileStore(tmp_path).put(key, b"")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://example.com/data", "start with s3 or file"),
        ("s3:///prefix", "names a bucket"),
        ("file://host/data", "absolute local path"),
    ],
)
def test_only_s3_and_file_uris_open(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(uri)


def test_parts_are_deterministic_and_checked(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    docs = documents(0, 0, ["first text", "second text"])
    assert encode_part(docs) == encode_part(docs)
    assert decode_part(encode_part(docs)) == docs
    part = write_part(store, 0, 0, docs, [200, 200])
    assert (part.key, part.documents) == ("parts/00000/00000.jsonl.gz", 2)
    assert [entry.url for entry in part.provenance] == [doc.url for doc in docs]
    store.put(part.key, encode_part(docs[:1]))
    manifest = published(
        store, [ManifestPart(key=part.key, documents=2, bytes=part.bytes, sha256=part.sha256)]
    )
    with pytest.raises(CorruptPart, match="sha256 differs"):
        list(iter_documents(store, manifest))


def test_parquet_parts_hold_the_same_documents_with_typed_columns(tmp_path: Path) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    store = FileStore(tmp_path)
    docs = documents(0, 0, ["first text", "second \u00e9t\u00e9 text"])
    docs[1] = docs[1].model_copy(update={"title": "A title", "language": None})
    parquet = encode_part(docs, OutputFormat.PARQUET)
    assert parquet == encode_part(docs, OutputFormat.PARQUET)
    assert decode_part(parquet, OutputFormat.PARQUET) == docs
    table = pq.read_table(io.BytesIO(parquet))
    assert table.column_names == [column.name for column in SCHEMA]
    assert str(table.schema.field("fetched_at").type) == "timestamp[us, tz=UTC]"
    assert not table.schema.field("text").nullable
    part = write_part(store, 0, 1, docs, [200, 200], OutputFormat.PARQUET)
    assert part.key == "parts/00000/00001.parquet"
    assert part_format(part.key) is OutputFormat.PARQUET
    jsonl = write_part(store, 1, 0, documents(1, 0, ["third"]), [200])
    manifest = published(
        store,
        [
            ManifestPart(
                key=info.key, documents=info.documents, bytes=info.bytes, sha256=info.sha256
            )
            for info in (part, jsonl)
        ],
    )
    assert [doc.text for doc in iter_documents(store, manifest)] == [
        "first text",
        "second \u00e9t\u00e9 text",
        "third",
    ]
    with pytest.raises(ValueError, match="is not a part"):
        part_format("parts/00000/00000.csv")


def published(store: FileStore, parts: list[ManifestPart]) -> Manifest:
    manifest = Manifest(
        created_at=FETCHED,
        shards=(),
        parts=tuple(parts),
        documents=sum(part.documents - len(part.removed) for part in parts),
        bytes=sum(part.bytes for part in parts),
        duplicates_removed=sum(len(part.removed) for part in parts),
    )
    write_manifest(store, manifest)
    return read_manifest(store)


def test_readers_skip_what_the_manifest_removed(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    first = write_part(store, 0, 0, documents(0, 0, ["a", "b"]), [200, 200])
    second = write_part(store, 1, 0, documents(1, 0, ["c"]), [200])
    manifest = published(
        store,
        [
            ManifestPart(
                key=first.key,
                documents=2,
                bytes=first.bytes,
                sha256=first.sha256,
                removed=(document_id(0, 0, 1),),
            ),
            ManifestPart(key=second.key, documents=1, bytes=second.bytes, sha256=second.sha256),
        ],
    )
    assert [doc.text for doc in iter_documents(store, manifest)] == ["a", "c"]
    assert manifest.documents == 2
    assert store.exists(MANIFEST_KEY)


def test_a_shard_marker_round_trips(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    part = write_part(store, 3, 0, documents(3, 0, ["x"]), [200])
    marker = ShardMarker(
        shard=3,
        parts=(part,),
        counters=CrawlCounters(documents_kept=1),
        user_agent="Bot/1.0 (+https://bot.example)",
        extractor="selectolax-lexbor",
        completed_at=FETCHED,
    )
    with pytest.raises(ObjectNotFound):
        read_shard_marker(store, 3)
    write_shard_marker(store, marker)
    assert read_shard_marker(store, 3) == marker


def test_readers_take_fields_they_do_not_know_and_refuse_a_newer_format(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    part = write_part(store, 0, 0, documents(0, 0, ["a"]), [200])
    write_manifest(
        store,
        Manifest(
            created_at=FETCHED,
            shards=(),
            parts=(ManifestPart(key=part.key, documents=1, bytes=part.bytes, sha256=part.sha256),),
            documents=1,
            bytes=part.bytes,
            duplicates_removed=0,
        ),
    )
    written = json.loads(store.get(MANIFEST_KEY))
    # What a later kubeforge might add: an older one still reads the dataset.
    written["parts"][0]["language_mix"] = {"en": 1.0}
    store.put(MANIFEST_KEY, json.dumps(written).encode())
    assert [doc.text for doc in iter_documents(store, read_manifest(store))] == ["a"]
    # What it must not read: a format it does not know, named in the refusal.
    written["format_version"] = FORMAT_VERSION + 1
    store.put(MANIFEST_KEY, json.dumps(written).encode())
    with pytest.raises(NewerFormat, match=f"dataset format {FORMAT_VERSION + 1}.*newer"):
        read_manifest(store)
