"""WARC and WET records read from a stream of a file's bytes, each either a document or the
reason it is refused.

Common Crawl's files (and those of warcio, wget and Heritrix) are one gzip member per record, so
a member's offset in the file is where its record can be read again without what precedes it:
`read_warc_records` decompresses member after member from any such offset (a stream of ranged
reads handed in as chunks, never the whole file), parses each with FastWARC (chosen over warcio by
`benchmarks/crawler/warc_readers.py`), and yields for each record the offset of the member after
it, where a resumed read starts.

A hostile member is refused and counted, never fatal: one that is not gzip, or whose record
header FastWARC cannot parse, is `MalformedRecord` (the read goes on at the next gzip member
header); one that decompresses past the size limit is `TooLarge` (the rest of it is decompressed
and thrown away as it comes, so memory stays bounded); a member cut off by the end of the file is
`TruncatedRecord`. Of the records, `response` records must be HTTP 200 (`HttpError`) with an HTML
media type (`UnsupportedContentType`); `conversion` records (WET) are text. Other record types
(`warcinfo`, `request`, `metadata`) are skipped without a count: they are not documents.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from kubeforge.api.dataingest import DropReason

SUFFIXES = (".warc.gz", ".warc.wet.gz")
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
HTTP_OK = 200
_GZIP_MAGIC = b"\x1f\x8b\x08"
_WINDOW = zlib.MAX_WBITS | 16  # a gzip header and trailer around deflate data
_OUTPUT_STEP = 1024 * 1024
"""The most decompressed bytes produced per step, so an oversized member never sits in memory."""
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
    """The compressed bytes from an offset on, consumed from the front."""

    def __init__(self, chunks: Iterable[bytes], offset: int) -> None:
        self._chunks = iter(chunks)
        self.data = b""
        self.offset = offset
        """The file offset of `data[0]`."""

    def more(self) -> bool:
        """Appends the next chunk; False at the end of the file."""
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self.data += chunk
        return True

    def consume(self, count: int) -> None:
        self.data = self.data[count:]
        self.offset += count


def read_warc_records(
    chunks: Iterable[bytes], max_record_bytes: int, start: int = 0
) -> Iterator[ReadRecord]:
    """The records of a gzipped WARC or WET file whose bytes from `start` on are `chunks`."""
    source = _Chunks(chunks, start)
    while source.data or source.more():
        offset = source.offset
        member = _member(source, max_record_bytes)
        if isinstance(member, RefusedRecord):
            yield ReadRecord(member, source.offset)
            continue
        for outcome in _parse(member, offset):
            yield ReadRecord(outcome, source.offset)


def _member(source: _Chunks, limit: int) -> bytes | RefusedRecord:
    """The decompressed member at the front of `source` (consumed), or why it is refused."""
    offset = source.offset
    while len(source.data) < len(_GZIP_MAGIC) and source.more():
        pass
    if not source.data.startswith(_GZIP_MAGIC):
        _skip_to_next_member(source)
        return RefusedRecord(offset, DropReason.MALFORMED_RECORD, "not a gzip member")
    decompressor = zlib.decompressobj(_WINDOW)
    output = bytearray()
    size = 0
    while True:
        try:
            piece = decompressor.decompress(source.data, _OUTPUT_STEP)
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
            source.consume(len(source.data) - len(decompressor.unused_data))
            break
        source.consume(len(source.data) - len(decompressor.unconsumed_tail))
        if not (piece or source.data or source.more()):
            return RefusedRecord(offset, DropReason.TRUNCATED_RECORD, "the file ends in it")
    if size > limit:
        return RefusedRecord(offset, DropReason.TOO_LARGE, f"{size} bytes, above {limit}")
    return bytes(output)


def _skip_to_next_member(source: _Chunks) -> None:
    """Consumes bytes up to the next gzip member header after the front one, or to the end."""
    while True:
        found = source.data.find(_GZIP_MAGIC, 1)
        if found > 0:
            source.consume(found)
            return
        # Keeps the last bytes, which may begin a header that the next chunk completes.
        source.consume(max(1, len(source.data) - len(_GZIP_MAGIC) + 1))
        if not source.more():
            source.consume(len(source.data))
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
