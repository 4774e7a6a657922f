"""Reading one large object fast: concurrent ranged reads, hashed in order while they arrive.

A checkpoint's state is hundreds of megabytes to gigabytes. One GET streams it over one
connection (on S3 that is the bottleneck: each connection has its own bandwidth), and hashing it
afterwards adds the hash's time to the download's. `read_parts` reads the object as
`PART_BYTES` ranges on `READERS` threads (what boto3's transfer manager does, with its 8 MiB
parts), while the calling thread hashes the parts in order as soon as each one is in. The parts
stay separate bytes objects: `PartsFile` presents them to `torch.load` as one seekable file, so
deserialising copies each tensor once, straight from the part it lies in, and no joined copy of
the whole object is ever made.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubeforge.storage import ObjectStore

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PART_BYTES = 8 * 1024 * 1024
READERS = 8  # below botocore's default connection pool (10): no connection is thrown away


@dataclass(frozen=True)
class ObjectParts:
    """An object read in parts: its bytes in order and their sha256."""

    parts: list[bytes]
    sha256: str

    def open(self) -> io.BufferedReader:
        """The object as a read-only binary file, without copying it."""
        return io.BufferedReader(PartsFile(self.parts))


def read_parts(
    store: ObjectStore, key: str, size: int, *, part_bytes: int = PART_BYTES, readers: int = READERS
) -> ObjectParts:
    """The object, which must be `size` bytes long, read concurrently in ranges and hashed in
    order; raises ValueError when its size differs, ObjectNotFound when there is none."""
    starts = range(0, size, part_bytes)
    digest = hashlib.sha256()
    parts: list[bytes] = []
    with ThreadPoolExecutor(
        max_workers=min(readers, len(starts) + 1), thread_name_prefix="ranged-read"
    ) as pool:
        # Asked alongside the parts rather than before them: one round trip less.
        actual_size = pool.submit(store.size, key)
        pending = [
            pool.submit(store.get_range, key, start, min(start + part_bytes, size))
            for start in starts
        ]
        try:
            for future in pending:
                part = future.result()
                digest.update(part)  # releases the GIL: the readers keep reading meanwhile
                parts.append(part)
            if actual_size.result() != size:
                raise ValueError(f"{key!r} has {actual_size.result()} bytes, not {size}")
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return ObjectParts(parts, digest.hexdigest())


class PartsFile(io.RawIOBase):
    """Consecutive bytes objects read as one seekable file."""

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__()
        self._parts = [memoryview(part) for part in parts if part]
        self._starts: list[int] = []
        offset = 0
        for part in self._parts:
            self._starts.append(offset)
            offset += len(part)
        self._size = offset
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if origin + offset < 0:
            raise ValueError(f"negative seek position {origin + offset}")
        self._position = origin + offset
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._position < self._size:
            index = bisect.bisect_right(self._starts, self._position) - 1
            offset = self._position - self._starts[index]
            chunk = self._parts[index][offset : offset + len(target) - filled]
            target[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            self._position += len(chunk)
        return filled
