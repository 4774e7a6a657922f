"""A language model's data: a kubeforge dataset's documents as token windows.

A tokenizer (`kubeforge_trainer.tokenizer`: byte-level, the dataset version's own BPE, or one
named by URI) turns each document's text into tokens followed by an end-of-document token. Each
part of the dataset is one block of the global order: its documents' tokens are concatenated and
cut into windows of contextLength + 1 tokens (inputs and the targets shifted by one),
consecutive windows sharing one token.

Opening the source reads only the manifest: a part's windows follow from its token count, which
the manifest records for the version's own tokenizer (`ManifestPart.tokens`), and which for the
byte-level one is the UTF-8 bytes plus the kept documents (`ManifestPart.text_bytes`). A part
whose count is not recorded (another tokenizer, or a dataset published before the counts) is
read and encoded once to count it. Afterwards a part is read only when the prefetching loader
needs it and it has left the small cache.

With a held-out fraction (trainer.validation) the documents `held_out` picks are left
out of the parts' windows and their texts kept, in manifest order, for the validation set. Which
documents a part holds out is known only from their texts' hashes, so then opening the source
reads and encodes every part once, whatever the manifest records.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from kubeforge.dataset import ManifestPart, kept_documents, read_manifest
from kubeforge.storage import ObjectStore
from kubeforge_trainer.order import SampleIds
from kubeforge_trainer.tokenizer import ByteTokenizer, TextTokenizer, Tokens

CACHED_PARTS = 8
HASH_BITS = 64


def held_out(content_hash: str, fraction: float) -> bool:
    """Whether the document of this content hash (`sha256:HEX`, of its text) is in the held-out
    split: when its first 64 bits are below `fraction` of 2^64. The split depends on the text
    alone, so it is the same at every world size, after every restart, with every seed, and
    across versions of a dataset (a page crawled again stays held out); exact duplicates share
    a hash, so none is on both sides."""
    digest = content_hash.removeprefix("sha256:")
    return int(digest[: HASH_BITS // 4], 16) < fraction * (1 << HASH_BITS)


class TextSource:
    """The windows of a published dataset; sample ids run through the parts in manifest order."""

    def __init__(
        self,
        store: ObjectStore,
        context_length: int,
        tokenizer: TextTokenizer | None = None,
        holdout: float = 0.0,
    ) -> None:
        self.store = store
        self.context_length = context_length
        self.tokenizer: TextTokenizer = tokenizer or ByteTokenizer()
        self.holdout = holdout
        self.held_out_texts: list[str] = []
        """The held-out documents' texts, in manifest order (read when the source opens)."""
        manifest = read_manifest(store)
        own = manifest.tokenizer
        self._counted = own is not None and own.sha256 == self.tokenizer.sha256
        self._cache: OrderedDict[int, Tokens] = OrderedDict()
        self._parts: list[ManifestPart] = []
        sizes: list[int] = []
        for part in manifest.parts:
            windows = (self._token_count(len(self._parts), part) - 1) // context_length
            if windows > 0:
                self._parts.append(part)
                sizes.append(windows)
            else:
                self._cache.pop(len(self._parts), None)
        if not sizes:
            raise ValueError(f"{store.uri}: no part holds {context_length + 1} tokens")
        self._sizes = tuple(sizes)
        self._starts = np.cumsum((0, *sizes))
        digest = hashlib.sha256()
        for part in self._parts:
            digest.update(part.sha256.encode())
        # The byte-level tokenizer adds nothing, so its runs resume from older checkpoints.
        tokens = "" if self.tokenizer.sha256 is None else f"-tokenizer-{self.tokenizer.sha256}"
        split = f"-holdout-{holdout}" if holdout else ""
        self._fingerprint = f"{digest.hexdigest()}-context-{context_length}{tokens}{split}"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return self._sizes

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def collate(self, ids: SampleIds) -> tuple[torch.Tensor, torch.Tensor]:
        parts = np.searchsorted(self._starts, ids, side="right") - 1
        span = self.context_length
        windows = np.empty((len(ids), span + 1), dtype=np.int64)
        for row, (sample, part) in enumerate(zip(ids, parts, strict=True)):
            first = int(sample - self._starts[part]) * span
            windows[row] = self._tokens(int(part))[first : first + span + 1]
        tensor = torch.from_numpy(windows)
        return tensor[:, :-1], tensor[:, 1:]

    def _token_count(self, index: int, part: ManifestPart) -> int:
        """The part's tokens, from the manifest where it knows them, else by encoding it."""
        if self.holdout:
            return len(self._load(index, part, keep_held_out=True))
        if self._counted and part.tokens is not None:
            return part.tokens
        if isinstance(self.tokenizer, ByteTokenizer) and part.text_bytes is not None:
            return part.text_bytes + part.documents - len(part.removed)
        return len(self._load(index, part))

    def _tokens(self, index: int) -> Tokens:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        return self._load(index, self._parts[index])

    def _load(self, index: int, part: ManifestPart, *, keep_held_out: bool = False) -> Tokens:
        """The part's training tokens; `keep_held_out` adds its held-out texts to theirs."""
        texts = []
        for document in kept_documents(self.store, part):
            if self.holdout and held_out(document.content_hash, self.holdout):
                if keep_held_out:
                    self.held_out_texts.append(document.text)
            else:
                texts.append(document.text)
        tokens = self.tokenizer.encode_documents(texts)
        self._cache[index] = tokens
        if len(self._cache) > CACHED_PARTS:
            self._cache.popitem(last=False)
        return tokens
