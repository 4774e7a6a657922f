"""A language model's validation set (trainer.validation) and its evaluation.

The text source holds out the documents `text.held_out` picks, by their texts' hashes, and
keeps their texts. Those, in manifest order, are tokenized and cut into windows exactly as the
training text; the first `batches * batch.globalSize` windows are the validation set, the same at
every evaluation. Each rank evaluates its contiguous share of them (`order.rank_share`) in
micro-batches, and the summed loss, tokens and bytes are all-reduced, so the result is the same
at any world size (up to the order of floating-point sums).

Bits per byte are the summed loss in nats over ln 2 times the UTF-8 bytes of the text the
predicted tokens stand for (`TextTokenizer.encode_counting_bytes`; the end-of-document token
stands for none): a byte-level and a BPE model of the same text are compared on equal terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from kubeforge_trainer.distributed import Distributed
from kubeforge_trainer.order import rank_share
from kubeforge_trainer.tokenizer import TextTokenizer

ENCODE_TEXTS = 256
"""Held-out texts encoded at a time, until they make the validation set's windows."""


@dataclass(frozen=True)
class Evaluation:
    """The validation metrics of one evaluation, from the sums over the validation set."""

    loss: float
    """Mean cross-entropy per predicted token, in nats."""
    perplexity: float
    bits_per_byte: float
    tokens: int

    @classmethod
    def from_sums(cls, loss_nats: float, tokens: int, text_bytes: int) -> Evaluation:
        loss = loss_nats / tokens
        return cls(
            loss=loss,
            perplexity=math.exp(min(loss, 700.0)),  # exp overflows a float above ~709
            bits_per_byte=loss_nats / (math.log(2) * text_bytes),
            tokens=tokens,
        )


@dataclass(frozen=True)
class ValidationSet:
    """Held-out windows of contextLength + 1 tokens, and the bytes of each window's targets."""

    windows: torch.Tensor
    target_bytes: torch.Tensor

    @classmethod
    def build(
        cls, texts: Sequence[str], tokenizer: TextTokenizer, context_length: int, limit: int
    ) -> ValidationSet:
        """The first `limit` windows of the texts (fewer when they hold fewer); only as many
        texts are encoded as they take."""
        needed = limit * context_length + 1
        encoded = [tokenizer.encode_counting_bytes(())]
        for start in range(0, len(texts), ENCODE_TEXTS):
            encoded.append(tokenizer.encode_counting_bytes(texts[start : start + ENCODE_TEXTS]))
            if sum(len(tokens) for tokens, _ in encoded) >= needed:
                break
        tokens = np.concatenate([tokens for tokens, _ in encoded])
        byte_counts = np.concatenate([counts for _, counts in encoded])
        count = min(limit, (len(tokens) - 1) // context_length)
        if count < 1:
            raise ValueError(
                f"the held-out documents hold {len(tokens)} tokens, not the {context_length + 1} "
                "of one window: raise trainer.validation.fraction"
            )
        starts = np.arange(count) * context_length
        rows = starts[:, None] + np.arange(context_length + 1)
        targets = byte_counts[rows[:, 1:]]
        return cls(
            windows=torch.from_numpy(tokens[rows].astype(np.int64)),
            target_bytes=torch.from_numpy(targets.sum(axis=1)),
        )

    def __len__(self) -> int:
        return len(self.windows)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    validation: ValidationSet,
    group: Distributed,
    loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    micro_size: int,
    autocast: bool,
) -> Evaluation:
    """The model's loss (`loss_sum`: summed over a micro-batch's predictions) on the validation
    set; a collective call. Every rank runs the same
    number of forward passes (a sharded model's forward gathers parameters from all of them): a
    rank whose share is shorter, or empty, evaluates the set's first window again, uncounted."""
    share = rank_share(len(validation), group.rank, group.world_size)
    longest = -(-len(validation) // group.world_size)
    sums = torch.zeros(3, dtype=torch.float64, device=group.device)
    was_training = model.training
    model.eval()
    for offset in range(0, longest, micro_size):
        rows = share[offset : offset + micro_size]
        counted = len(rows) > 0
        chosen = slice(rows.start, rows.stop) if counted else slice(0, 1)
        window = validation.windows[chosen].to(group.device)
        with torch.autocast(group.device.type, torch.bfloat16, enabled=autocast):
            logits = model(window[:, :-1])
        if counted:
            sums[0] += loss_sum(logits, window[:, 1:]).double()
            sums[1] += window[:, 1:].numel()
            sums[2] += int(validation.target_bytes[chosen].sum())
    model.train(was_training)
    dist.all_reduce(sums)
    return Evaluation.from_sums(float(sums[0]), int(sums[1]), int(sums[2]))
