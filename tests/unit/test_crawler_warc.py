"""The WARC record reader (`kubeforge_crawler.warc`) and the files `sources.warc` names
(`kubeforge_crawler.warc_files`), on WARC and WET files written from pydoc's pages, streamed from
a real directory in ranges."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeforge.api.dataingest import DropReason, WarcSources
from kubeforge.storage import FileStore, read_ranges
from kubeforge_crawler.warc import RefusedRecord, WarcDocument, read_warc_records
from kubeforge_crawler.warc_files import WarcFiles
from tests import warcfiles

LIMIT = 1024 * 1024


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def opener(data: bytes, size: int = 4096) -> Callable[[int], list[bytes]]:
    """The file `data` read from an offset in chunks of `size` bytes."""
    return lambda offset: chunked(data[offset:], size)


def outcomes(data: bytes, size: int = 4096, start: int = 0) -> list[WarcDocument | RefusedRecord]:
    return [read.outcome for read in read_warc_records(opener(data, size), LIMIT, start)]


def test_documents_keep_their_record_id_and_offset() -> None:
    html = warcfiles.module_html("json").encode()
    text = warcfiles.module_text("csv")
    first = warcfiles.warcinfo() + warcfiles.response("https://docs.example/json", html)
    data = first + warcfiles.conversion("https://docs.example/csv", text)
    documents = outcomes(data)
    assert documents == [
        WarcDocument(
            record_id=warcfiles.record_id("responsehttps://docs.example/json"),
            offset=len(warcfiles.warcinfo() + warcfiles.request("https://docs.example/json")),
            url="https://docs.example/json",
            date=warcfiles.DATE,
            html=True,
            body=html,
            charset="utf-8",
        ),
        WarcDocument(
            record_id=warcfiles.record_id("conversionhttps://docs.example/csv"),
            offset=len(first),
            url="https://docs.example/csv",
            date=warcfiles.DATE,
            html=False,
            body=text.encode(),
            charset="utf-8",
        ),
    ]
    page = documents[0]
    assert isinstance(page, WarcDocument)
    # The offset is the response's own gzip member (after the warcinfo and the request).
    assert outcomes(data, start=page.offset)[0] == page


@pytest.mark.parametrize("chunk", [5, 4096, 10**7])
def test_hostile_records_are_refused_and_reading_goes_on(chunk: int) -> None:
    good = warcfiles.conversion("https://docs.example/heapq", warcfiles.module_text("heapq"))
    hostile = [
        (warcfiles.malformed_header(), DropReason.MALFORMED_RECORD),
        (warcfiles.not_gzip(), DropReason.MALFORMED_RECORD),
        (
            warcfiles.response("https://a.example/gone", b"<p>gone</p>", status=404),
            DropReason.HTTP_ERROR,
        ),
        (
            warcfiles.response("https://a.example/a.pdf", b"%PDF", media_type="application/pdf"),
            DropReason.UNSUPPORTED_CONTENT_TYPE,
        ),
        (
            warcfiles.response("https://a.example/big", b"<p>" + b"x" * (2 * LIMIT) + b"</p>"),
            DropReason.TOO_LARGE,
        ),
    ]
    data = b"".join(member + good for member, _ in hostile) + good[: len(good) // 2]
    found = outcomes(data, chunk)
    refused = [item.reason for item in found if isinstance(item, RefusedRecord)]
    assert refused == [reason for _, reason in hostile] + [DropReason.TRUNCATED_RECORD]
    kept = [item for item in found if isinstance(item, WarcDocument)]
    assert [item.url for item in kept] == ["https://docs.example/heapq"] * len(hostile)


@pytest.mark.parametrize("cut", [2, 6, 12, 40])
def test_a_member_cut_off_anywhere_by_the_end_of_the_file_is_truncated(cut: int) -> None:
    good = warcfiles.conversion("https://docs.example/heapq", warcfiles.module_text("heapq"))
    found = outcomes(good + good[:cut])
    assert [type(item) for item in found] == [WarcDocument, RefusedRecord]
    assert isinstance(found[1], RefusedRecord)
    assert (found[1].offset, found[1].reason) == (len(good), DropReason.TRUNCATED_RECORD)


def test_a_read_resumed_at_any_next_offset_yields_the_rest() -> None:
    data = warcfiles.warcinfo() + b"".join(
        warcfiles.response(f"https://docs.example/{name}", warcfiles.module_html(name).encode())
        for name in warcfiles.HTML_MODULES[:4]
    )
    whole = list(read_warc_records(opener(data), LIMIT))
    assert len(whole) == 4
    for index, read in enumerate(whole):
        rest = read_warc_records(opener(data, 999), LIMIT, read.next_offset)
        assert [again.outcome for again in rest] == [later.outcome for later in whole[index + 1 :]]


def test_ranges_stream_a_file_from_an_offset(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    data = bytes(range(256)) * 40
    store.put("a.warc.gz", data)
    assert b"".join(read_ranges(store, "a.warc.gz", 1000, range_bytes=300)) == data[1000:]
    assert [len(part) for part in read_ranges(store, "a.warc.gz", 9000, range_bytes=700)] == [
        700,
        540,
    ]


def test_files_are_named_by_uri_prefix_and_path_index(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for key in ("crawl/a.warc.gz", "crawl/b.warc.wet.gz", "crawl/c.json", "other/d.warc.gz"):
        store.put(key, b"")
    store.put("index/wet.paths.gz", gzip.compress(b"../other/d.warc.gz\n\n../crawl/a.warc.gz\n"))
    root = tmp_path.as_uri()
    sources = WarcSources(
        files=[f"{root}/crawl/a.warc.gz"],
        prefixes=[f"{root}/crawl"],
        path_indexes=[f"{root}/index/wet.paths.gz"],
    )
    named = WarcFiles(sources).named()
    assert [file.uri for file in named] == [
        f"{root}/crawl/a.warc.gz",
        f"{root}/crawl/b.warc.wet.gz",
        f"{root}/other/d.warc.gz",
    ]
    assert all(file.store.size(file.key) == 0 for file in named)
