"""The language models' tokenizers: text to token ids and back, and the vocabulary's size.

`bytes` needs nothing: a token per UTF-8 byte (0..255) and an end-of-document token (256). The
others are Hugging Face `tokenizer.json` files read from object storage when the job starts
(never downloaded from a hub): the dataset version's own, trained at publish, one named by URI,
or the one in the Hugging Face model folder the model starts from (`model.initFrom`). Documents
are encoded without the tokenizer's own special tokens (a BOS a template would add), each followed
by the end-of-document token, exactly as the publish stage counted them. Each tokenizer has a
`tokenizer.json`, the byte-level one too (a byte-level BPE without merges that gives the same
ids), for the Hugging Face folder a trained Llama is exported as.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from kubeforge.api.trainingjob import TokenizerConfig, TokenizerType
from kubeforge.dataset import END_OF_DOCUMENT_TOKEN, read_manifest
from kubeforge.storage import ObjectStore, open_store

Tokens = npt.NDArray[np.uint16] | npt.NDArray[np.uint32]
ByteCounts = npt.NDArray[np.int64]

FOLDER_TOKENIZER = "tokenizer.json"
"""The tokenizer's file in a Hugging Face model folder."""

END_OF_DOCUMENT_TOKENS = (END_OF_DOCUMENT_TOKEN, "<|end_of_text|>", "</s>", "<eos>")
"""Tokens a tokenizer.json named by URI may end documents with, the first one present chosen."""


class TextTokenizer(Protocol):
    @property
    def vocab_size(self) -> int: ...

    @property
    def end_of_document(self) -> int: ...

    @property
    def end_of_document_token(self) -> str: ...

    @property
    def sha256(self) -> str | None:
        """The digest of its tokenizer.json; None for the byte-level one."""

    @property
    def tokenizer_json(self) -> bytes:
        """The Hugging Face tokenizer.json that encodes and decodes as this tokenizer does."""

    def encode(self, text: str) -> list[int]: ...

    def encode_documents(self, texts: Sequence[str]) -> Tokens:
        """The documents' tokens, each document's followed by the end-of-document token."""

    def encode_counting_bytes(self, texts: Sequence[str]) -> tuple[Tokens, ByteCounts]:
        """`encode_documents(texts)`, and the UTF-8 bytes of text each token stands for (none
        for the end-of-document token): they sum to each document's bytes exactly."""

    def decode(self, ids: Sequence[int]) -> str: ...


def _dtype(vocab_size: int) -> type[np.uint16] | type[np.uint32]:
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def _ended(
    pieces: Sequence[Sequence[int] | npt.NDArray[Any]], end: int, dtype: type
) -> npt.NDArray[Any]:
    lengths = np.fromiter((len(piece) + 1 for piece in pieces), dtype=np.int64, count=len(pieces))
    tokens: npt.NDArray[Any] = np.empty(int(lengths.sum()), dtype=dtype)
    start = 0
    for piece, length in zip(pieces, lengths, strict=True):
        tokens[start : start + length - 1] = piece
        tokens[start + length - 1] = end
        start += int(length)
    return tokens


class ByteTokenizer:
    """A token per UTF-8 byte, and an end-of-document token."""

    vocab_size = 257
    end_of_document = 256
    end_of_document_token = END_OF_DOCUMENT_TOKEN
    sha256 = None

    @property
    def tokenizer_json(self) -> bytes:
        """A byte-level BPE without merges: each byte is the token of its byte-level character,
        whose id is the byte's value, and the end-of-document token is 256."""
        vocabulary = {character: byte for byte, character in enumerate(_byte_characters())}
        vocabulary[END_OF_DOCUMENT_TOKEN] = self.end_of_document
        tokenizer = Tokenizer(models.BPE(vocab=vocabulary, merges=[]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens([END_OF_DOCUMENT_TOKEN])
        return tokenizer.to_str().encode()

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_documents(self, texts: Sequence[str]) -> Tokens:
        pieces = [np.frombuffer(text.encode("utf-8"), dtype=np.uint8) for text in texts]
        return _ended(pieces, self.end_of_document, np.uint16)

    def encode_counting_bytes(self, texts: Sequence[str]) -> tuple[Tokens, ByteCounts]:
        tokens = self.encode_documents(texts)
        return tokens, (tokens != self.end_of_document).astype(np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        """The bytes decoded; invalid UTF-8 (a model may write any byte) replaced."""
        return bytes(token for token in ids if token < 256).decode("utf-8", errors="replace")


def _byte_characters() -> list[str]:
    """The character the byte-level pre-tokenizer maps each byte to, by byte (GPT-2's table: the
    printable bytes are themselves, the others follow from 256 on)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = (byte for byte in range(256) if byte not in printable)
    table = dict(zip(printable, printable, strict=True))
    table.update((byte, 256 + index) for index, byte in enumerate(others))
    return [chr(table[byte]) for byte in range(256)]


class BpeTokenizer:
    """A Hugging Face tokenizer.json."""

    def __init__(self, data: bytes, where: str, end_of_document: str | None = None) -> None:
        self._tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        self.tokenizer_json = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        names = (end_of_document,) if end_of_document else END_OF_DOCUMENT_TOKENS
        ids = [self._tokenizer.token_to_id(name) for name in names]
        found = [token for token in ids if token is not None]
        if not found:
            raise ValueError(f"{where}: no end-of-document token in its vocabulary: {names}")
        self.end_of_document = found[0]
        self.end_of_document_token = names[ids.index(found[0])]
        self._dtype = _dtype(self.vocab_size)

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_documents(self, texts: Sequence[str]) -> Tokens:
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return _ended([encoding.ids for encoding in encodings], self.end_of_document, self._dtype)

    def encode_counting_bytes(self, texts: Sequence[str]) -> tuple[Tokens, ByteCounts]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        tokens = _ended([encoding.ids for encoding in encodings], self.end_of_document, self._dtype)
        counts = [
            _token_bytes(text, encoding.offsets)
            for text, encoding in zip(texts, encodings, strict=True)
        ]
        return tokens, _ended(counts, 0, np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)


def _token_bytes(text: str, offsets: Sequence[tuple[int, int]]) -> ByteCounts:
    """The UTF-8 bytes each token of `text` stands for, from the tokens' character offsets: a
    token ends where its offset ends (or where an earlier one did, for the byte-level pieces of
    one character, which share the character's offsets) and the last one at the text's end, so
    the counts sum to the text's bytes."""
    if not offsets:
        return np.empty(0, dtype=np.int64)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)
    ends_at_char = np.concatenate(([0], np.cumsum(widths, dtype=np.int64)))
    ends = np.maximum.accumulate(ends_at_char[np.array([end for _, end in offsets])])
    ends[-1] = ends_at_char[-1]
    return np.diff(ends, prepend=0)


def folder_tokenizer(folder: ObjectStore) -> BpeTokenizer:
    """The tokenizer.json of a Hugging Face model folder."""
    where = f"{folder.uri}/{FOLDER_TOKENIZER}"
    if not folder.exists(FOLDER_TOKENIZER):
        raise ValueError(f"{where} is missing: name the tokenizer in tokenizer.type")
    return BpeTokenizer(folder.get(FOLDER_TOKENIZER), where)


def load_tokenizer(
    config: TokenizerConfig, dataset: ObjectStore | None, init_from: str | None = None
) -> TextTokenizer:
    """The tokenizer the config names, read from the dataset version, its URI or the Hugging Face
    folder the model starts from (`init_from`), which is also the default when there is one."""
    kind = config.type or (TokenizerType.MODEL if init_from else TokenizerType.BYTES)
    if kind == TokenizerType.BYTES:
        return ByteTokenizer()
    if kind == TokenizerType.URI:
        assert config.uri is not None  # the API requires it with this type
        folder, _, name = config.uri.rpartition("/")
        return BpeTokenizer(open_store(folder).get(name), config.uri)
    if kind == TokenizerType.MODEL:
        if init_from is None:  # the API requires it with this type
            raise ValueError("tokenizer.type model needs model.initFrom")
        return folder_tokenizer(open_store(init_from))
    if dataset is None:
        raise ValueError("tokenizer.type dataset needs spec.dataset")
    info = read_manifest(dataset).tokenizer
    if info is None:
        raise ValueError(
            f"{dataset.uri} was published without a tokenizer: set output.tokenizer on its "
            "DataIngest, or choose tokenizer.type bytes or uri"
        )
    data = dataset.get(info.key)
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise ValueError(f"{dataset.uri}/{info.key}: sha256 differs from the manifest's")
    return BpeTokenizer(data, f"{dataset.uri}/{info.key}", info.end_of_document)
