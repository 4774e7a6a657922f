"""The GPT's data: a kubeforge dataset's documents as byte-level token windows.

Tokens are the UTF-8 bytes of each document's text (0..255) followed by an end-of-document token
(256), so no tokenizer is trained or downloaded. Each part of the dataset is one block of the
global order: its documents' tokens are concatenated and cut into windows of contextLength + 1
tokens (inputs and the targets shifted by one), consecutive windows sharing one token.

Opening the source reads only the manifest: a part's windows follow from the UTF-8 bytes and the
count of its kept documents, which the manifest records (`ManifestPart.text_bytes`). A part that
lacks them (a dataset published before they were recorded) is read once to count its tokens.
Afterwards a part is read only when the prefetching loader needs it and it has left the small
cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import numpy.typing as npt
import torch

from kubeforge.dataset import ManifestPart, read_manifest, read_part
from kubeforge.storage import ObjectStore
from kubeforge_trainer.order import SampleIds

END_OF_DOCUMENT = 256
VOCAB_SIZE = 257
CACHED_PARTS = 8

Tokens = npt.NDArray[np.int16]


def encode(text: str) -> Tokens:
    """The tokens of one document, ending with the end-of-document token."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int16)
    return np.append(data, np.int16(END_OF_DOCUMENT))


class TextSource:
    """The windows of a published dataset; sample ids run through the parts in manifest order."""

    def __init__(self, store: ObjectStore, context_length: int) -> None:
        self.store = store
        self.context_length = context_length
        manifest = read_manifest(store)
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
        self._fingerprint = f"{digest.hexdigest()}-context-{context_length}"

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
        """The part's tokens: one per byte of text and one per document that is kept."""
        if part.text_bytes is None:
            return len(self._load(index, part))
        return part.text_bytes + part.documents - len(part.removed)

    def _tokens(self, index: int) -> Tokens:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        return self._load(index, self._parts[index])

    def _load(self, index: int, part: ManifestPart) -> Tokens:
        removed = set(part.removed)
        documents = read_part(self.store, part.key, part.sha256)
        pieces = [encode(document.text) for document in documents if document.id not in removed]
        tokens = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int16)
        self._cache[index] = tokens
        if len(self._cache) > CACHED_PARTS:
            self._cache.popitem(last=False)
        return tokens
