"""The trainer's text source reads a dataset's parts in either output format: the same documents
written as JSON lines and as Parquet give the same token windows. It sizes the parts from the
manifest without reading them, and by reading them where an older manifest does not say. Real
files, real pyarrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kubeforge.api.dataingest import OutputFormat
from kubeforge.dataset import part_format
from kubeforge.storage import FileStore
from kubeforge_trainer.text import TextSource
from tests.workloads.trainer_runs import write_text_dataset

TEXTS = [
    ["The crawler keeps documents that pass its filters.", "Zweite Seite, mit Umlauten: äöü."],
    ["A third document, in its own part, long enough for a window or two."],
]


def test_parquet_and_jsonl_parts_give_the_same_windows(tmp_path: Path) -> None:
    sources = {}
    for format in OutputFormat:
        store = FileStore(tmp_path / format.value)
        write_text_dataset(store, TEXTS, format)
        assert {part_format(key) for key in store.list("parts/")} == {format}
        sources[format] = TextSource(store, context_length=16)
    jsonl, parquet = sources[OutputFormat.JSONL], sources[OutputFormat.PARQUET]
    assert parquet.block_sizes == jsonl.block_sizes
    assert sum(parquet.block_sizes) > 2
    ids = np.arange(sum(parquet.block_sizes), dtype=np.int64)
    for got, expected in zip(parquet.collate(ids), jsonl.collate(ids), strict=True):
        assert torch.equal(got, expected)
    first_input = bytes(parquet.collate(ids[:1])[0][0].tolist())
    assert first_input == TEXTS[0][0].encode()[:16]


def test_parts_are_sized_from_the_manifest_without_reading_them(tmp_path: Path) -> None:
    sized, unsized = FileStore(tmp_path / "sized"), FileStore(tmp_path / "unsized")
    write_text_dataset(sized, TEXTS)
    write_text_dataset(unsized, TEXTS, sized=False)
    expected = TextSource(unsized, context_length=16).block_sizes  # counted by reading
    parts = tmp_path / "sized" / "parts"
    parts.rename(tmp_path / "away")
    source = TextSource(sized, context_length=16)  # the parts are not there to read
    assert source.block_sizes == expected
    (tmp_path / "away").rename(parts)
    ids = np.arange(sum(expected), dtype=np.int64)
    for got, wanted in zip(
        source.collate(ids), TextSource(unsized, context_length=16).collate(ids), strict=True
    ):
        assert torch.equal(got, wanted)
