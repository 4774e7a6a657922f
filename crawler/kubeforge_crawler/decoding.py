"""Response bodies decoded as they stream in, never past a size limit.

A body passes through a chain of decoders, one per `Content-Encoding` (gzip, deflate, br, zstd),
into a `BoundedBody`. Every decoder emits its output in pieces of at most `PIECE` bytes and
the body refuses (or, for robots.txt, truncates at) the limit counted after decompression, so a
decompression bomb is stopped after at most the limit plus one piece has been produced, whatever
its compression ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import IO, Protocol, cast

import brotli  # type: ignore[import-untyped]
import zstandard

PIECE = 64 * 1024
"""The most bytes a decoder produces at a time."""

Sink = Callable[[bytes], None]


class BodyTooLarge(Exception):
    """The decoded body exceeds the limit."""


class UnsupportedEncoding(Exception):
    """The response uses a Content-Encoding the crawler does not decode."""


class BodyFull(Exception):
    """A truncating body reached its limit: reading can stop."""


class BoundedBody:
    """Collects decoded bytes up to `limit`; past it, refuses or (with `truncate`) stops."""

    def __init__(self, limit: int, *, truncate: bool = False) -> None:
        self.limit = limit
        self.truncate = truncate
        self._pieces: list[bytes] = []
        self.size = 0

    def __call__(self, piece: bytes) -> None:
        if self.size + len(piece) > self.limit:
            if not self.truncate:
                raise BodyTooLarge(f"the decoded body exceeds {self.limit} bytes")
            self._pieces.append(piece[: self.limit - self.size])
            self.size = self.limit
            raise BodyFull
        self._pieces.append(piece)
        self.size += len(piece)

    def bytes(self) -> bytes:
        return b"".join(self._pieces)


class Decoder(Protocol):
    """One content coding, undone piece by piece into a sink."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class _Zlib:
    """gzip (several members allowed), zlib-wrapped deflate, or raw deflate."""

    def __init__(self, sink: Sink, wbits: int | None) -> None:
        self._sink = sink
        self._wbits = wbits
        self._inflater: zlib._Decompress | None = None

    def _start(self, data: bytes) -> zlib._Decompress:
        if self._wbits is None:
            # "deflate" should be zlib-wrapped, but servers also send raw deflate.
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._wbits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
        return zlib.decompressobj(self._wbits)

    def feed(self, data: bytes) -> None:
        while data:
            if self._inflater is None:
                self._inflater = self._start(data)
            inflater = self._inflater
            self._sink(inflater.decompress(data, PIECE))
            data = inflater.unconsumed_tail
            if inflater.eof:
                # The next gzip member, if any, starts in the unused data.
                data = inflater.unused_data + data
                self._inflater = None

    def finish(self) -> None:
        if self._inflater is not None:
            self._sink(self._inflater.flush())


class _Brotli:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._decompressor = brotli.Decompressor()

    def feed(self, data: bytes) -> None:
        self._sink(self._decompressor.process(data, output_buffer_limit=PIECE))
        while not self._decompressor.can_accept_more_data():
            self._sink(self._decompressor.process(b"", output_buffer_limit=PIECE))

    def finish(self) -> None:
        # Output can still be held back once all input is in; it comes with empty input.
        while not self._decompressor.is_finished():
            piece = self._decompressor.process(b"", output_buffer_limit=PIECE)
            if not piece:
                return
            self._sink(piece)


class _SinkWriter:
    """The file-like target zstandard writes decompressed pieces to."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink(bytes(data))
        return len(data)


class _Zstd:
    def __init__(self, sink: Sink) -> None:
        target = cast("IO[bytes]", _SinkWriter(sink))
        self._writer = zstandard.ZstdDecompressor().stream_writer(target, write_size=PIECE)

    def feed(self, data: bytes) -> None:
        # The writer hands all output of the data fed to the sink before it returns.
        self._writer.write(data)

    def finish(self) -> None:
        return


def _decoder(coding: str, sink: Sink) -> Decoder:
    if coding in {"gzip", "x-gzip"}:
        return _Zlib(sink, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return _Zlib(sink, None)
    if coding == "br":
        return _Brotli(sink)
    if coding == "zstd":
        return _Zstd(sink)
    raise UnsupportedEncoding(f"Content-Encoding {coding!r} is not supported")


ACCEPT_ENCODING = "gzip, deflate, br, zstd"
CORRUPT_BODY_ERRORS: tuple[type[Exception], ...] = (zlib.error, brotli.error, zstandard.ZstdError)
"""What the decoders raise on a body that is not valid in its coding."""


class _Chain:
    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def feed(self, data: bytes) -> None:
        self._decoders[0].feed(data)

    def finish(self) -> None:
        for decoder in self._decoders:
            decoder.finish()


class _Identity:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def feed(self, data: bytes) -> None:
        self._sink(data)

    def finish(self) -> None:
        return


def decoder_for(content_encoding: str, sink: Sink) -> Decoder:
    """The decoder that undoes `content_encoding` (codings applied in order) into `sink`."""
    codings = [
        coding.strip().lower()
        for coding in content_encoding.split(",")
        if coding.strip() and coding.strip().lower() != "identity"
    ]
    if not codings:
        return _Identity(sink)
    # The last coding applied is undone first; each decoder feeds the one that undoes the
    # coding applied before it.
    decoders: list[Decoder] = []
    target: Sink = sink
    for coding in codings:
        decoder = _decoder(coding, target)
        decoders.append(decoder)
        target = decoder.feed
    decoders.reverse()
    return _Chain(decoders)
