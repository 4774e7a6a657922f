"""Partner data: documents imported from object-storage prefixes (`sources.objectPrefixes`).

Each object under a prefix belongs to one shard (a stable hash of its URI, as hosts are split), and
is read whole: JSON lines (`.jsonl`, `.jsonl.gz`) and Parquet (`.parquet`) hold one record per
line or row with a `text` field and optional `url` and `title`; a plain-text object (`.txt`) is one
document. A record without its own `url` is named by the object's URI and its row (`#N`). Other
objects are refused with `UnsupportedObject`. The shard passes the records through the same
document pipeline as fetched pages, and records which objects it has imported in its committed
state, so a restarted shard goes on after the last object it committed.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from typing import Any

from kubeforge.storage import ObjectStore, open_store

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".txt")


@dataclass(frozen=True)
class Record:
    """One imported document before processing."""

    url: str
    title: str | None
    text: str


class UnsupportedObject(ValueError):
    """An object that is not one of the formats imports read."""


def list_objects(prefix: str) -> tuple[ObjectStore, list[str]]:
    """The store at `prefix` and the keys of its objects, sorted."""
    store = open_store(prefix)
    return store, store.list()


def _record(uri: str, row: int, fields: Any) -> Record:
    if not isinstance(fields, dict):
        return Record(f"{uri}#{row}", None, "")
    text, url, title = fields.get("text"), fields.get("url"), fields.get("title")
    return Record(
        url=url if isinstance(url, str) and url else f"{uri}#{row}",
        title=title if isinstance(title, str) else None,
        text=text if isinstance(text, str) else "",
    )


def read_records(uri: str, data: bytes) -> list[Record]:
    """The records of an object, by the format its name says."""
    if uri.endswith(".txt"):
        return [Record(uri, None, data.decode("utf-8", errors="replace"))]
    if uri.endswith(".parquet"):
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        return [_record(uri, row, fields) for row, fields in enumerate(rows)]
    if uri.endswith(".jsonl.gz"):
        data = gzip.decompress(data)
    elif not uri.endswith(".jsonl"):
        raise UnsupportedObject(f"{uri}: imports read {', '.join(SUFFIXES)} objects")
    records = []
    for row, line in enumerate(data.decode("utf-8", errors="replace").splitlines()):
        if line.strip():
            try:
                fields = json.loads(line)
            except json.JSONDecodeError:
                fields = None
            records.append(_record(uri, row, fields))
    return records
