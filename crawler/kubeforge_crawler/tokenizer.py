"""The publish stage's tokenizer: a byte-level BPE trained on a version's kept documents.

Trained with Hugging Face `tokenizers` (Rust) from a generator that reads one part at a time, so
memory holds one part's documents and the pair counts, never the corpus. The result depends only
on the kept documents, their manifest order and the settings (`tokenizers` merges its word counts
in a fixed order and breaks ties between pairs by the pair), so two trainings on the same version
write the same bytes. The pre-tokenizer is GPT-2's byte-level one: every string encodes, nothing
maps to an unknown token, and decoding gives the text back. The end-of-document token is the
vocabulary's only special token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from kubeforge.api.dataingest import TokenizerTraining
from kubeforge.dataset import (
    END_OF_DOCUMENT_TOKEN,
    TOKENIZER_KEY,
    ManifestPart,
    TokenizerInfo,
    kept_documents,
)
from kubeforge.storage import ObjectStore


def _texts(store: ObjectStore, parts: Sequence[ManifestPart]) -> Iterator[str]:
    for part in parts:
        for document in kept_documents(store, part):
            yield document.text


def train_tokenizer(texts: Iterator[str], settings: TokenizerTraining) -> Tokenizer:
    """A byte-level BPE tokenizer fitted to the texts."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        special_tokens=[END_OF_DOCUMENT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def count_tokens(tokenizer: Tokenizer, texts: list[str]) -> int:
    """The tokens of the texts as the trainer reads them: each document's, then its end."""
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return sum(len(encoding.ids) for encoding in encodings) + len(texts)


def publish_tokenizer(
    store: ObjectStore, parts: Sequence[ManifestPart], settings: TokenizerTraining
) -> tuple[TokenizerInfo, tuple[ManifestPart, ...]]:
    """Trains the version's tokenizer, writes it, and counts each part's tokens with it (two
    streamed passes over the parts)."""
    tokenizer = train_tokenizer(_texts(store, parts), settings)
    data = tokenizer.to_str().encode("utf-8")
    store.put(TOKENIZER_KEY, data)
    counted = tuple(
        part.model_copy(
            update={
                "tokens": count_tokens(
                    tokenizer, [document.text for document in kept_documents(store, part)]
                )
            }
        )
        for part in parts
    )
    info = TokenizerInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
    )
    return info, counted
