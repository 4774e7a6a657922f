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


class TextSource:
    """The windows of a published dataset; sample ids run through the parts in manifest order."""

    def __init__(
        self, store: ObjectStore, context_length: int, tokenizer: TextTokenizer | None = None
    ) -> None:
        self.store = store
        self.context_length = context_length
        self.tokenizer: TextTokenizer = tokenizer or ByteTokenizer()
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
        self._fingerprint = f"{digest.hexdigest()}-context-{context_length}{tokens}"

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

    def _load(self, index: int, part: ManifestPart) -> Tokens:
        texts = [document.text for document in kept_documents(self.store, part)]
        tokens = self.tokenizer.encode_documents(texts)
        self._cache[index] = tokens
        if len(self._cache) > CACHED_PARTS:
            self._cache.popitem(last=False)
        return tokens
