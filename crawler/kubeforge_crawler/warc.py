"""WARC and WET records read from a stream of a file's bytes, each either a document or the
reason it is refused.

Common Crawl's files (and those of warcio, wget and Heritrix) are one gzip member per record, so
a member's offset in the file is where its record can be read again without what precedes it.
`read_warc_records` reads from any such offset (a stream of ranged reads handed in as chunks,
never the whole file) and yields each record with the offset of the member after it, where a
resumed read starts. FastWARC (chosen over warcio by `benchmarks/crawler/warc_readers.py`) reads
the stream and gives each record's member offset. It stops at the first member it cannot read,
reads a member cut off by the end of the file as a short record and passes over one cut before
its header; so that member, the file's last one and whatever follows it are inflated alone with
zlib (`_member`: exact, but several times slower), and FastWARC goes on after them.

A hostile member is refused and counted, never fatal: one that is not gzip, or whose record
header FastWARC cannot parse, is `MalformedRecord` (the read goes on at the next gzip member
header); a record longer than the size limit (its Content-Length, or what its member inflates to
when read alone, in steps thrown away as they come, so memory stays bounded) is `TooLarge`; a
member cut off by the end of the file is `TruncatedRecord`. Of the records, `response` records
must be HTTP 200 (`HttpError`) with an HTML media type (`UnsupportedContentType`); `conversion`
records (WET) are text. Other record types (`warcinfo`, `request`, `metadata`) are skipped
without a count: they are not documents.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from kubeforge.api.dataingest import DropReason

SUFFIXES = (".warc.gz", ".warc.wet.gz")
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
HTTP_OK = 200
_GZIP_MAGIC = b"\x1f\x8b\x08"
_WINDOW = zlib.MAX_WBITS | 16  # a gzip header and trailer around deflate data
_OUTPUT_STEP = 1024 * 1024
"""The most decompressed bytes produced per step, so an oversized member never sits in memory."""
_FEED_STEP = 64 * 1024
"""The most compressed bytes given to zlib per step: what it leaves after a member is copied."""
_DOCUMENT_TYPES = WarcRecordType.response | WarcRecordType.conversion


@dataclass(frozen=True)
class WarcDocument:
    """A record that holds a document: an HTML page (`html`) or text, with its provenance."""

    record_id: str
    offset: int
    """Where the record's gzip member starts in its file."""
    url: str
    date: datetime
    html: bool
    body: bytes
    charset: str | None


@dataclass(frozen=True)
class RefusedRecord:
    """A record, or bytes meant to be one, that yields no document, and why."""

    offset: int
    reason: DropReason
    detail: str


@dataclass(frozen=True)
class ReadRecord:
    """One record's outcome, and the offset where reading goes on after it."""

    outcome: WarcDocument | RefusedRecord
    next_offset: int


class _Chunks:
    """The compressed bytes from an offset on, consumed from the front without copying."""

    def __init__(self, chunks: Iterable[bytes], offset: int) -> None:
        self._chunks = iter(chunks)
        self._data = b""
        self._position = 0
        self.offset = offset
        """The file offset of the front byte."""

    def available(self) -> int:
        return len(self._data) - self._position

    def front(self, count: int) -> memoryview:
        """Up to `count` bytes from the front (not consumed)."""
        return memoryview(self._data)[self._position : self._position + count]

    def find(self, pattern: bytes, start: int) -> int:
        """Where `pattern` is from `start` bytes past the front on, counted from the front; -1
        when it is not in what has been read."""
        found = self._data.find(pattern, self._position + start)
        return found - self._position if found >= 0 else -1

    def more(self) -> bool:
        """Appends the next chunk; False at the end of the file."""
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        # Called once what is left is a few bytes at most: only those are copied.
        self._data = self._data[self._position :] + chunk
        self._position = 0
        return True

    def consume(self, count: int) -> None:
        self._position += count
        self.offset += count


OpenAt = Callable[[int], Iterable[bytes]]
"""A file's bytes from an offset to its end, in chunks (e.g. `read_ranges` of the file)."""


def read_warc_records(
    open_at: OpenAt, max_record_bytes: int, start: int = 0
) -> Iterator[ReadRecord]:
    """The records of a gzipped WARC or WET file from `start` on."""
    position: int | None = start
    while position is not None:
        position = yield from _read_fast(open_at, max_record_bytes, position)


def _read_fast(open_at: OpenAt, limit: int, start: int) -> Generator[ReadRecord, None, int | None]:
    """Reads with FastWARC over the stream from `start`, which gives each record's member offset
    but stops at the first member it cannot read: that one is then read alone (`_read_member`),
    and the offset after it returned, where FastWARC goes on. None: the file is read."""
    records = ArchiveIterator(_Stream(open_at(start)), parse_http=True)
    # A record's outcome waits for the next record's offset, where reading goes on after it.
    last: tuple[int, WarcDocument | RefusedRecord | None] | None = None
    try:
        for record in records:
            offset = start + record.stream_pos
            if last is not None and last[1] is not None:
                yield ReadRecord(last[1], offset)
            last = (offset, _outcome(record, offset, limit))
    except OSError:
        failed = start if last is None else _member_end(open_at, last[0], limit)
        if last is not None and last[1] is not None:
            yield ReadRecord(last[1], failed)
        return (yield from _read_member(open_at, failed, limit))
    end = start
    if last is not None:
        # FastWARC reads a member cut off by the end of the file as a short record: the last
        # member is read alone to tell.
        source = _Chunks(open_at(last[0]), last[0])
        member = _member(source, limit)
        if isinstance(member, RefusedRecord) and member.reason is DropReason.TRUNCATED_RECORD:
            yield ReadRecord(member, source.offset)
        elif last[1] is not None:
            yield ReadRecord(last[1], source.offset)
        end = source.offset
    # Nor does it yield a member cut off before its record's header: what is left is read alone.
    while any(open_at(end)):
        end = yield from _read_member(open_at, end, limit)
    return None


def _member_end(open_at: OpenAt, offset: int, limit: int) -> int:
    source = _Chunks(open_at(offset), offset)
    _member(source, limit)
    return source.offset


def _read_member(open_at: OpenAt, offset: int, limit: int) -> Generator[ReadRecord, None, int]:
    """The records of the one member at `offset`, inflated and parsed alone; returns the offset
    after it."""
    source = _Chunks(open_at(offset), offset)
    member = _member(source, limit)
    if isinstance(member, RefusedRecord):
        yield ReadRecord(member, source.offset)
    else:
        for outcome in _parse(member, offset):
            yield ReadRecord(outcome, source.offset)
    return source.offset


class _Stream(io.RawIOBase):
    """Chunks as a file FastWARC reads."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        self._position += count
        return count


def _member(source: _Chunks, limit: int) -> bytes | RefusedRecord:
    """The decompressed member at the front of `source` (consumed), or why it is refused."""
    offset = source.offset
    while source.available() < len(_GZIP_MAGIC) and source.more():
        pass
    front = bytes(source.front(len(_GZIP_MAGIC)))
    if len(front) < len(_GZIP_MAGIC) and _GZIP_MAGIC.startswith(front):
        source.consume(len(front))
        return RefusedRecord(offset, DropReason.TRUNCATED_RECORD, "the file ends in it")
    if front != _GZIP_MAGIC:
        _skip_to_next_member(source)
        return RefusedRecord(offset, DropReason.MALFORMED_RECORD, "not a gzip member")
    decompressor = zlib.decompressobj(_WINDOW)
    output = bytearray()
    size = 0
    while True:
        fed = source.front(_FEED_STEP)
        try:
            piece = decompressor.decompress(fed, _OUTPUT_STEP)
        except zlib.error as error:
            _skip_to_next_member(source)
            return RefusedRecord(offset, DropReason.MALFORMED_RECORD, f"gzip: {error}")
        size += len(piece)
        if size <= limit:
            output += piece
        elif output:
            output = bytearray()  # over the limit: the rest is only counted
        if decompressor.eof:
            # What follows the member starts the next one (the unconsumed tail may repeat it).
            source.consume(len(fed) - len(decompressor.unused_data))
            break
        source.consume(len(fed) - len(decompressor.unconsumed_tail))
        if not (piece or source.available() or source.more()):
            return RefusedRecord(offset, DropReason.TRUNCATED_RECORD, "the file ends in it")
    if size > limit:
        return RefusedRecord(offset, DropReason.TOO_LARGE, f"{size} bytes, above {limit}")
    return bytes(output)


def _skip_to_next_member(source: _Chunks) -> None:
    """Consumes bytes up to the next gzip member header after the front one, or to the end."""
    while True:
        found = source.find(_GZIP_MAGIC, 1)
        if found > 0:
            source.consume(found)
            return
        # Keeps the last bytes, which may begin a header that the next chunk completes.
        source.consume(max(1, source.available() - len(_GZIP_MAGIC) + 1))
        if not source.more():
            source.consume(source.available())
            return


def _parse(member: bytes, offset: int) -> Iterator[WarcDocument | RefusedRecord]:
    """The document records of one member (usually one record) that starts at `offset`."""
    records = ArchiveIterator(
        io.BytesIO(member), record_types=_DOCUMENT_TYPES, parse_http=True, stream_detect=False
    )
    try:
        for record in records:
            yield _document(record, offset)
    except OSError as error:
        yield RefusedRecord(offset, DropReason.MALFORMED_RECORD, str(error))


def _outcome(record: WarcRecord, offset: int, limit: int) -> WarcDocument | RefusedRecord | None:
    """A record's outcome as the fast path reads it; None for a record that is no document."""
    if not record.record_type & _DOCUMENT_TYPES:
        return None
    if record.content_length > limit:
        return RefusedRecord(offset, DropReason.TOO_LARGE, f"{record.content_length} bytes")
    return _document(record, offset)


def _document(record: WarcRecord, offset: int) -> WarcDocument | RefusedRecord:
    url = record.headers.get("WARC-Target-URI") or ""
    record_id = record.record_id or ""
    if not url or not record_id:
        return RefusedRecord(offset, DropReason.MALFORMED_RECORD, "no WARC-Target-URI or id")
    date = record.record_date or datetime.now(UTC)
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    if record.record_type == WarcRecordType.conversion:
        return WarcDocument(record_id, offset, url, date, False, record.reader.read(), "utf-8")
    if not record.is_http or record.http_headers is None:
        return RefusedRecord(offset, DropReason.MALFORMED_RECORD, "a response without HTTP")
    status = record.http_headers.status_code
    if status != HTTP_OK:
        return RefusedRecord(offset, DropReason.HTTP_ERROR, f"{url}: HTTP {status}")
    media_type = (record.http_content_type or "").lower()
    if media_type not in HTML_TYPES:
        return RefusedRecord(offset, DropReason.UNSUPPORTED_CONTENT_TYPE, f"{url}: {media_type}")
    body = record.reader.read()
    return WarcDocument(record_id, offset, url, date, True, body, record.http_charset)
