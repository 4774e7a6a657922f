"""A shard's crawl state in object storage: the commit point of everything it has done.

A commit writes, in order: the new part and its MinHash signatures, the URL batches for other
shards, then `state/SSSSS.json.gz`. Only the state makes them count: a shard killed before the
state is written resumes from the previous state, rewrites the same part key and visits the
same pending URLs again, so no document is lost and none is written twice.
"""

from __future__ import annotations

import gzip

from pydantic import BaseModel, ConfigDict

from kubeforge.api.dataingest import CrawlCounters
from kubeforge.dataset import STATE_PREFIX, PartInfo, part_stem
from kubeforge.storage import ObjectNotFound, ObjectStore
from kubeforge_crawler.frontier import Link, LinkKind


def state_key(shard: int) -> str:
    return f"{STATE_PREFIX}{shard:05d}.json.gz"


def signatures_key(part_key: str) -> str:
    """Where the MinHash signatures of a part's documents are kept (rows in document order)."""
    return part_stem(part_key) + ".minhash.npy"


class SavedLink(BaseModel):
    """A pending link as saved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    depth: int
    kind: LinkKind

    @classmethod
    def of(cls, link: Link) -> SavedLink:
        return cls(url=link.url, depth=link.depth, kind=link.kind)

    def link(self) -> Link:
        return Link(self.url, self.depth, self.kind)


class ImportPosition(BaseModel):
    """How far into an object a shard's committed documents go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str
    offset: int
    """The byte where reading goes on: everything before it is committed."""


class CrawlState(BaseModel):
    """Everything a shard needs to resume, and what other shards read to see it is idle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard: int
    epoch: int
    idle: bool
    pending: tuple[SavedLink, ...]
    seen: tuple[str, ...]
    parts: tuple[PartInfo, ...]
    counters: CrawlCounters
    pages_fetched: int
    sent: tuple[str, ...]
    consumed: tuple[str, ...]
    imported: tuple[str, ...] = ()
    """The objects (URIs) under `sources.objectPrefixes` and the WARC files whose documents are
    all committed."""
    importing: ImportPosition | None = None
    """The WARC file being read at the commit, and where reading it goes on."""


def save_state(store: ObjectStore, state: CrawlState) -> None:
    store.put(state_key(state.shard), gzip.compress(state.model_dump_json().encode(), mtime=0))


def load_state(store: ObjectStore, shard: int) -> CrawlState | None:
    """The shard's last committed state, or None before its first commit."""
    try:
        data = store.get(state_key(shard))
    except ObjectNotFound:
        return None
    return CrawlState.model_validate_json(gzip.decompress(data))
