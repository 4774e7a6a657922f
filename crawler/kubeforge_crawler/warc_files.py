"""The WARC and WET files `sources.warc` names, each with the store it is read from.

Files are named one by one, by prefix (every `.warc.gz` and `.warc.wet.gz` under it, as under a
directory) or by a
path index such as Common Crawl's `warc.paths.gz` (one file a line, gzipped or not; a line that
is no URI is a key in the index's bucket, or a path under the index's directory for `file://`).
An index is a list of names, a few megabytes at most, so it is read whole; the files themselves
are streamed (`kubeforge.storage.read_ranges`). One store is opened per bucket (or file system),
with the endpoint and signing `sources.warc` gives.
"""

from __future__ import annotations

import gzip
import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubeforge.api.dataingest import WarcSources
from kubeforge.storage import ObjectStore, open_store
from kubeforge_crawler.warc import SUFFIXES


@dataclass(frozen=True)
class WarcFile:
    """One file: its URI, and its key in the store that holds it."""

    uri: str
    store: ObjectStore
    key: str


def _root_and_key(uri: str) -> tuple[str, str]:
    """`s3://bucket` and the key of an s3 URI; `file:///` and the path of a file URI."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return "file:///", parts.path.lstrip("/")
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def _uri(root: str, key: str) -> str:
    return root + key if root.endswith("/") else f"{root}/{key}"


class WarcFiles:
    """The files of one `sources.warc`."""

    def __init__(self, sources: WarcSources) -> None:
        self.sources = sources
        self._stores: dict[str, ObjectStore] = {}

    def _file(self, uri: str) -> WarcFile:
        root, key = _root_and_key(uri)
        if root not in self._stores:
            self._stores[root] = open_store(
                root, endpoint=self.sources.endpoint, anonymous=self.sources.anonymous
            )
        return WarcFile(uri, self._stores[root], key)

    def named(self) -> list[WarcFile]:
        """Every file named, once each, sorted by URI."""
        uris = set(self.sources.files)
        for prefix in self.sources.prefixes:
            store = open_store(
                prefix, endpoint=self.sources.endpoint, anonymous=self.sources.anonymous
            )
            uris.update(_uri(prefix, key) for key in store.list() if key.endswith(SUFFIXES))
        for index in self.sources.path_indexes:
            uris.update(self._indexed(index))
        return [self._file(uri) for uri in sorted(uris)]

    def _indexed(self, index_uri: str) -> list[str]:
        index = self._file(index_uri)
        data = index.store.get(index.key)
        if data.startswith(b"\x1f\x8b"):
            data = gzip.decompress(data)
        root, _ = _root_and_key(index_uri)
        base = posixpath.dirname(index.key) if root == "file:///" else ""
        uris = []
        for line in data.decode("utf-8").splitlines():
            name = line.strip()
            if not name:
                continue
            if "://" in name:
                uris.append(name)
            else:
                uris.append(_uri(root, posixpath.normpath(posixpath.join(base, name.lstrip("/")))))
        return uris
