"""Sorted runs of (band hash, document) entries in object storage, and their streaming merge.

A run is raw little-endian 16-byte entries sorted by hash then document, so entry i is at byte
16*i and a run is read in chunks with ranged reads. The merge holds one chunk per run: it emits,
sorted, every buffered entry up to the smallest last-buffered hash of the runs that have more to
read (nothing later can sort before it), then refills the emptied buffers. Hashes are
nondecreasing across the batches it yields; a group of equal hashes may span two batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from kubeforge.storage import ObjectStore

ENTRY = np.dtype([("hash", "<u8"), ("document", "<u8")])
Entries = npt.NDArray[np.void]


def sort_entries(entries: Entries) -> Entries:
    return np.sort(entries, order=["hash", "document"])


def write_run(store: ObjectStore, key: str, entries: Entries) -> None:
    store.put(key, sort_entries(entries).tobytes())


class _RunReader:
    def __init__(self, store: ObjectStore, key: str, chunk: int) -> None:
        self._store = store
        self._key = key
        self._chunk = chunk
        self._next = 0
        self._total = store.size(key) // ENTRY.itemsize
        self.buffer: Entries = np.empty(0, dtype=ENTRY)

    @property
    def more(self) -> bool:
        return self._next < self._total

    def refill(self) -> None:
        stop = min(self._next + self._chunk, self._total)
        data = self._store.get_range(self._key, self._next * ENTRY.itemsize, stop * ENTRY.itemsize)
        self.buffer = np.frombuffer(data, dtype=ENTRY)
        self._next = stop


def merge_runs(store: ObjectStore, keys: list[str], memory_entries: int) -> Iterator[Entries]:
    """The runs' entries in hash order, in batches, holding about `memory_entries` at a time."""
    chunk = max(memory_entries // max(len(keys), 1), 1024)
    readers = [_RunReader(store, key, chunk) for key in keys]
    while True:
        for reader in readers:
            if len(reader.buffer) == 0 and reader.more:
                reader.refill()
        buffered = [reader for reader in readers if len(reader.buffer)]
        if not buffered:
            return
        unread = [int(reader.buffer["hash"][-1]) for reader in buffered if reader.more]
        bound = min(unread) if unread else None
        taken = []
        for reader in buffered:
            count = (
                len(reader.buffer)
                if bound is None
                else int(np.searchsorted(reader.buffer["hash"], np.uint64(bound), side="right"))
            )
            taken.append(reader.buffer[:count])
            reader.buffer = reader.buffer[count:]
        yield sort_entries(np.concatenate(taken))
