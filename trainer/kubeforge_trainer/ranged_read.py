"""Reading one large object fast: concurrent ranged reads into one buffer, hashed in order while
they arrive.

A checkpoint's state is megabytes to gigabytes. One GET streams it over one connection (on S3
that is the bottleneck: each connection has its own bandwidth), and hashing it afterwards adds
the hash's time to the download's. `read_object` reads the object as `PART_BYTES` ranges on
`READERS` threads (what boto3's transfer manager does, with its 8 MiB parts; an object of one
part is one plain GET); each reader copies its part into its place in one preallocated buffer
(numpy's copy releases the GIL), and the calling thread hashes the buffer in order as soon as
each part is in. The buffer is a uint8 tensor, so the state's tensors can then be views of it
(`state_file`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy
import torch

from kubeforge.storage import ObjectStore

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

PART_BYTES = 8 * 1024 * 1024
READERS = 8  # below botocore's default connection pool (10): no connection is thrown away


class Hash(Protocol):
    """What `read_object` needs of a hash (hashlib's and xxhash's objects)."""

    def update(self, data: ReadableBuffer, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class DownloadedObject:
    """An object's bytes in a 1-D uint8 CPU tensor, and their digest (as `hexdigest` gives it)."""

    buffer: torch.Tensor
    digest: str


def read_object(
    store: ObjectStore,
    key: str,
    size: int,
    new_hash: Callable[[], Hash],
    *,
    part_bytes: int = PART_BYTES,
    readers: int = READERS,
) -> DownloadedObject:
    """The object, which must be `size` bytes long, read concurrently in ranges and hashed in
    order; raises ValueError when its size differs, ObjectNotFound when there is none."""
    buffer = torch.empty(size, dtype=torch.uint8)
    array = buffer.numpy()
    digest = new_hash()
    if size <= part_bytes:  # one GET, whose length is the size check: no second request
        data = store.get(key)
        if len(data) != size:
            raise ValueError(f"{key!r} has {len(data)} bytes, not {size}")
        array[:] = numpy.frombuffer(data, dtype=numpy.uint8)
        digest.update(array.data)
        return DownloadedObject(buffer, digest.hexdigest())
    ranges = [(start, min(start + part_bytes, size)) for start in range(0, size, part_bytes)]

    def fetch(start: int, stop: int) -> None:
        array[start:stop] = numpy.frombuffer(store.get_range(key, start, stop), dtype=numpy.uint8)

    with ThreadPoolExecutor(
        max_workers=min(readers, len(ranges) + 1), thread_name_prefix="ranged-read"
    ) as pool:
        # Asked alongside the parts rather than before them: one round trip less.
        actual_size = pool.submit(store.size, key)
        pending = [pool.submit(fetch, start, stop) for start, stop in ranges]
        try:
            for (start, stop), future in zip(ranges, pending, strict=True):
                future.result()
                digest.update(array[start:stop].data)  # releases the GIL: the readers keep reading
            if actual_size.result() != size:
                raise ValueError(f"{key!r} has {actual_size.result()} bytes, not {size}")
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return DownloadedObject(buffer, digest.hexdigest())
