"""A dataset version's BPE tokenizer: trained at publish by the crawler's code, read by the
trainer's. Training twice on the same documents writes the same tokenizer.json bytes; the counts
the manifest records are the tokens the trainer's source reads; text survives encoding and
decoding; manifests from before tokenizers still read. Real `tokenizers`, real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kubeforge.api.dataingest import TokenizerTraining
from kubeforge.api.trainingjob import TokenizerConfig, TokenizerType
from kubeforge.dataset import (
    MANIFEST_KEY,
    TOKENIZER_KEY,
    Manifest,
    kept_documents,
    read_manifest,
)
from kubeforge.storage import FileStore
from kubeforge_trainer.text import TextSource
from kubeforge_trainer.tokenizer import BpeTokenizer, ByteTokenizer, load_tokenizer
from tests.workloads.trainer_runs import module_docs, write_text_dataset

SETTINGS = TokenizerTraining(vocab_size=1024)
TEXTS = module_docs(["json", "csv", "textwrap"])
AWKWARD = ["  leading spaces,\ttabs\nand lines  ", "Umlaute äöü, 数据, emoji 🚀, \x00 NUL", ""]


def published(root: Path) -> FileStore:
    store = FileStore(root)
    write_text_dataset(store, TEXTS, tokenizer=SETTINGS)
    return store


def test_two_trainings_on_the_same_documents_write_the_same_tokenizer(tmp_path: Path) -> None:
    first, second = published(tmp_path / "first"), published(tmp_path / "second")
    assert first.get(TOKENIZER_KEY) == second.get(TOKENIZER_KEY)
    assert read_manifest(first).tokenizer == read_manifest(second).tokenizer
    assert [part.tokens for part in read_manifest(first).parts] == [
        part.tokens for part in read_manifest(second).parts
    ]


def test_the_manifest_names_the_tokenizer_and_counts_the_tokens_the_trainer_reads(
    tmp_path: Path,
) -> None:
    store = published(tmp_path)
    manifest = read_manifest(store)
    assert manifest.tokenizer is not None
    assert 257 < manifest.tokenizer.vocab_size <= SETTINGS.vocab_size
    tokenizer = load_tokenizer(TokenizerConfig(type=TokenizerType.DATASET), store)
    assert tokenizer.vocab_size == manifest.tokenizer.vocab_size
    for part in manifest.parts:
        texts = [document.text for document in kept_documents(store, part)]
        tokens = tokenizer.encode_documents(texts)
        assert tokens.dtype == np.uint16
        assert part.tokens == len(tokens)
        assert part.tokens < part.text_bytes  # merges make fewer tokens than bytes
        assert tokens[-1] == tokenizer.end_of_document


def test_a_source_with_the_versions_tokenizer_is_sized_without_reading_parts(
    tmp_path: Path,
) -> None:
    store = published(tmp_path / "dataset")
    tokenizer = load_tokenizer(TokenizerConfig(type=TokenizerType.DATASET), store)
    manifest = read_manifest(store)
    (tmp_path / "dataset" / "parts").rename(tmp_path / "away")
    source = TextSource(store, context_length=16, tokenizer=tokenizer)
    assert source.vocab_size == tokenizer.vocab_size
    assert source.block_sizes == tuple((part.tokens - 1) // 16 for part in manifest.parts)
    (tmp_path / "away").rename(tmp_path / "dataset" / "parts")
    inputs, targets = source.collate(np.arange(3, dtype=np.int64))
    assert tokenizer.decode(inputs[0].tolist()).startswith(TEXTS[0][0][:20])
    assert inputs[0, 1:].tolist() == targets[0, :-1].tolist()
    assert source.fingerprint.endswith(f"-tokenizer-{tokenizer.sha256}")


@pytest.mark.parametrize("text", AWKWARD)
def test_text_survives_encoding_and_decoding(tmp_path: Path, text: str) -> None:
    bpe = load_tokenizer(TokenizerConfig(type=TokenizerType.DATASET), published(tmp_path))
    for tokenizer in (bpe, ByteTokenizer()):
        assert tokenizer.decode(tokenizer.encode(text)) == text
        ended = tokenizer.encode_documents([text, text])
        assert list(ended) == [*tokenizer.encode(text), tokenizer.end_of_document] * 2


def test_a_tokenizer_named_by_uri_is_read_and_needs_an_end_of_document_token(
    tmp_path: Path,
) -> None:
    data = published(tmp_path / "dataset").get(TOKENIZER_KEY)
    (tmp_path / "tokenizers").mkdir()
    (tmp_path / "tokenizers" / "web.json").write_bytes(data)
    uri = (tmp_path / "tokenizers" / "web.json").as_uri()
    tokenizer = load_tokenizer(TokenizerConfig(type=TokenizerType.URI, uri=uri), None)
    assert isinstance(tokenizer, BpeTokenizer)
    assert tokenizer.encode("json.dumps") == BpeTokenizer(data, "copy").encode("json.dumps")
    without_end = json.loads(data)
    without_end["added_tokens"] = []
    del without_end["model"]["vocab"]["<|endoftext|>"]
    with pytest.raises(ValueError, match="no end-of-document token in its vocabulary"):
        BpeTokenizer(json.dumps(without_end).encode(), "tokenizer.json")


def test_manifests_from_before_tokenizers_still_read(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    write_text_dataset(store, TEXTS)
    written = json.loads(store.get(MANIFEST_KEY))
    for part in written["parts"]:
        part.pop("tokens")
    written.pop("tokenizer")
    store.put(MANIFEST_KEY, json.dumps(written).encode())
    manifest = read_manifest(store)
    assert isinstance(manifest, Manifest)
    assert manifest.tokenizer is None
    assert {part.tokens for part in manifest.parts} == {None}
    with pytest.raises(ValueError, match="published without a tokenizer: set output"):
        load_tokenizer(TokenizerConfig(type=TokenizerType.DATASET), store)
    assert TextSource(store, context_length=16).vocab_size == 257
