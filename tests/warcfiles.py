"""WARC and WET files written here from real text, as Common Crawl writes them: one gzip member
per record, a `warcinfo` record first, `request`/`response` pairs (WARC) or `conversion` records
(WET). The pages are pydoc's HTML (WARC) or plain text (WET) of standard-library modules; the
hostile records a test plants are made by the functions below, byte for byte.
"""

from __future__ import annotations

import gzip
import pydoc
import uuid
from datetime import UTC, datetime

DATE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
HTML_MODULES = ("json", "csv", "heapq", "shlex", "textwrap", "base64", "bisect", "glob")


def module_html(name: str) -> str:
    return pydoc.html.page(name, pydoc.html.document(pydoc.locate(name)))


def module_text(name: str) -> str:
    return pydoc.plain(pydoc.render_doc(name))


def record_id(seed: str) -> str:
    """A stable WARC-Record-ID, so a test knows which record a document came from."""
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}>"


def record(
    kind: str,
    url: str,
    block: bytes,
    content_type: str,
) -> bytes:
    """One record as a gzip member."""
    header = (
        f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: {record_id(kind + url)}\r\n"
        f"WARC-Date: {DATE:%Y-%m-%dT%H:%M:%SZ}\r\nWARC-Target-URI: {url}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(block)}\r\n\r\n"
    )
    return gzip.compress(header.encode() + block + b"\r\n\r\n", mtime=0)


def warcinfo() -> bytes:
    return record("warcinfo", "", b"software: kubeforge tests\r\n", "application/warc-fields")


def request(url: str) -> bytes:
    """The request record that precedes a response record."""
    block = f"GET / HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n\r\n".encode()
    return record("request", url, block, "application/http; msgtype=request")


def response(
    url: str, body: bytes, *, status: int = 200, media_type: str = "text/html; charset=utf-8"
) -> bytes:
    """The request record and the response record of an HTTP exchange."""
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {media_type}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return request(url) + record(
        "response", url, head.encode() + body, "application/http; msgtype=response"
    )


def conversion(url: str, text: str) -> bytes:
    """A WET record: a page's text."""
    return record("conversion", url, text.encode(), "text/plain")


def malformed_header() -> bytes:
    """A gzip member whose content is no WARC record."""
    return gzip.compress(b"NOT-WARC/9\r\nthis is no header\r\n\r\n", mtime=0)


def not_gzip() -> bytes:
    """Bytes that start like a gzip member and are not one."""
    return b"\x1f\x8b\x08\x00" + b"garbage that no inflater takes " * 3
