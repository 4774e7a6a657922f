"""A language model's held-out split: which documents it holds (by their texts' hashes alone),
that the text source trains on exactly the others, the bytes each token stands for (which bits
per byte divide by), the validation set's windows, the metrics' arithmetic, and one evaluation
in a real (one-process, gloo) process group. Real files, real `tokenizers`, real torch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from kubeforge.api.dataingest import TokenizerTraining
from kubeforge.api.trainingjob import TokenizerConfig, TokenizerType
from kubeforge.dataset import content_hash
from kubeforge.storage import FileStore
from kubeforge_trainer.distributed import Distributed
from kubeforge_trainer.gpt import GPT
from kubeforge_trainer.tasks import loss_sum
from kubeforge_trainer.text import TextSource, held_out
from kubeforge_trainer.tokenizer import ByteTokenizer, TextTokenizer, load_tokenizer
from kubeforge_trainer.validation import Evaluation, ValidationSet, evaluate
from tests.workloads.trainer_runs import free_port, module_docs, write_text_dataset

FRACTION = 0.25
TEXTS = [
    [text] + [f"{text[:400]} (page {page})" for page in range(6)]
    for [text] in module_docs(["json", "csv", "textwrap"])
]
AWKWARD = ["  leading spaces,\ttabs\nand lines  ", "Umlaute äöü, 数据, emoji 🚀, \x00 NUL", ""]


def test_the_split_depends_on_the_text_alone_and_holds_about_the_fraction() -> None:
    hashes = [content_hash(f"document {number}") for number in range(20_000)]
    small = {h for h in hashes if held_out(h, 0.01)}
    large = {h for h in hashes if held_out(h, 0.05)}
    assert small < large  # a larger fraction holds out more, and the same ones
    assert 0.007 < len(small) / len(hashes) < 0.013
    assert 0.045 < len(large) / len(hashes) < 0.055
    assert held_out(content_hash("the same text"), 0.5) == held_out(
        content_hash("the same text"), 0.5
    )
    assert not held_out("sha256:" + "f" * 64, 0.5)
    assert held_out("sha256:" + "0" * 64, 0.001)


def _split(texts: list[list[str]]) -> tuple[list[list[str]], list[str]]:
    training = [[t for t in part if not held_out(content_hash(t), FRACTION)] for part in texts]
    held = [t for part in texts for t in part if held_out(content_hash(t), FRACTION)]
    return training, held


def test_the_source_trains_on_exactly_the_documents_not_held_out(tmp_path: Path) -> None:
    training, held = _split(TEXTS)
    assert held, "the split should hold some of these texts out"
    assert all(training)
    whole, trained_only = FileStore(tmp_path / "whole"), FileStore(tmp_path / "training")
    write_text_dataset(whole, TEXTS)
    write_text_dataset(trained_only, training)
    source = TextSource(whole, context_length=32, holdout=FRACTION)
    expected = TextSource(trained_only, context_length=32)
    assert source.block_sizes == expected.block_sizes
    ids = np.arange(sum(source.block_sizes), dtype=np.int64)
    for got, wanted in zip(source.collate(ids), expected.collate(ids), strict=True):
        assert torch.equal(got, wanted)
    assert source.held_out_texts == held
    assert source.fingerprint != TextSource(whole, context_length=32).fingerprint


def _tokenizers(tmp_path: Path) -> list[TextTokenizer]:
    store = FileStore(tmp_path / "bpe")
    write_text_dataset(store, TEXTS, tokenizer=TokenizerTraining(vocab_size=512))
    return [ByteTokenizer(), load_tokenizer(TokenizerConfig(type=TokenizerType.DATASET), store)]


def test_the_bytes_each_token_stands_for_sum_to_each_documents_bytes(tmp_path: Path) -> None:
    texts = [text for part in TEXTS for text in part] + AWKWARD
    for tokenizer in _tokenizers(tmp_path):
        tokens, counts = tokenizer.encode_counting_bytes(texts)
        assert np.array_equal(tokens, tokenizer.encode_documents(texts))
        assert counts.shape == tokens.shape
        assert counts.min() >= 0
        ends = np.flatnonzero(tokens == tokenizer.end_of_document)
        assert len(ends) == len(texts)
        assert (counts[ends] == 0).all()
        per_document = np.cumsum(counts)[ends]
        assert np.array_equal(
            np.diff(per_document, prepend=0), [len(text.encode()) for text in texts]
        )


def test_the_validation_set_takes_the_first_windows_with_their_targets_bytes(
    tmp_path: Path,
) -> None:
    texts = ["abcdefghij", "äöü"]  # 10 + 1 + 6 + 1 byte tokens
    validation = ValidationSet.build(texts, ByteTokenizer(), context_length=4, limit=3)
    assert len(validation) == 3
    assert bytes(validation.windows[0].tolist()) == b"abcde"
    assert validation.windows[1][0] == ord("e")  # consecutive windows share a token
    assert validation.target_bytes.tolist() == [4, 4, 3]  # the third's targets: j, end, ä, ä
    everything = ValidationSet.build(texts, ByteTokenizer(), context_length=4, limit=100)
    assert len(everything) == (18 - 1) // 4
    many = [f"document {number}, long enough for a window" for number in range(1000)]
    first = ValidationSet.build(many, ByteTokenizer(), context_length=4, limit=2)
    assert torch.equal(first.windows, ValidationSet.build(many[:1], ByteTokenizer(), 4, 2).windows)
    with pytest.raises(ValueError, match=r"raise trainer\.validation\.fraction"):
        ValidationSet.build(["ab"], ByteTokenizer(), context_length=4, limit=1)


def test_bits_per_byte_divide_the_loss_in_bits_by_the_texts_bytes() -> None:
    uniform = math.log(257)  # a model that knows nothing of 257 byte tokens
    evaluation = Evaluation.from_sums(loss_nats=uniform * 1000, tokens=1000, text_bytes=1000)
    assert evaluation.loss == pytest.approx(uniform)
    assert evaluation.perplexity == pytest.approx(257)
    assert evaluation.bits_per_byte == pytest.approx(math.log2(257))
    # A BPE token standing for four bytes at four times the loss scores the same per byte.
    bpe = Evaluation.from_sums(loss_nats=4 * uniform * 250, tokens=250, text_bytes=1000)
    assert bpe.bits_per_byte == pytest.approx(evaluation.bits_per_byte)
    assert bpe.loss == pytest.approx(4 * uniform)
    assert math.isfinite(Evaluation.from_sums(1e6, 1, 1).perplexity)


@pytest.fixture
def one_process() -> Iterator[Distributed]:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        yield Distributed(
            rank=0,
            local_rank=0,
            world_size=1,
            device=torch.device("cpu"),
            control=dist.group.WORLD,
        )
    finally:
        dist.destroy_process_group()


def test_an_evaluation_is_the_mean_loss_over_every_window_in_any_micro_batches(
    one_process: Distributed,
) -> None:
    torch.manual_seed(0)
    model = GPT(257, 16, layers=1, hidden_size=32, heads=2)
    texts = [text for part in TEXTS for text in part][:3]
    validation = ValidationSet.build(texts, ByteTokenizer(), context_length=16, limit=10)
    windows = validation.windows
    with torch.no_grad():
        expected = float(loss_sum(model(windows[:, :-1]), windows[:, 1:])) / windows[:, 1:].numel()
    results = [
        evaluate(model, validation, one_process, loss_sum, micro_size=size, autocast=False)
        for size in (1, 3, 10)
    ]
    for result in results:
        assert result.tokens == 10 * 16
        assert result.loss == pytest.approx(expected, rel=1e-5)
        text_bytes = int(validation.target_bytes.sum())
        assert result.bits_per_byte == pytest.approx(
            expected * result.tokens / (math.log(2) * text_bytes), rel=1e-5
        )
    assert model.training  # evaluation leaves the model as it found it
