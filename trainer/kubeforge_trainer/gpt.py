"""A small GPT: pre-LayerNorm transformer blocks with causal attention, tied embeddings.

The shape of GPT-2 (learned positions, GELU MLPs four times as wide, weight tying), sized by the
TrainingJob's model settings. Attention uses PyTorch's fused scaled-dot-product kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden_size: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out: torch.Tensor = self.out(attended.transpose(1, 2).reshape(batch, length, width))
        return out


class Block(nn.Module):
    def __init__(self, hidden_size: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = CausalSelfAttention(hidden_size, heads)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size),
            nn.GELU(),
            nn.Linear(4 * hidden_size, hidden_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        out: torch.Tensor = x + self.mlp(self.mlp_norm(x))
        return out


class GPT(nn.Module):
    """Next-token logits for every position of a batch of token sequences."""

    def __init__(
        self, vocab_size: int, context_length: int, layers: int, hidden_size: int, heads: int
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.hidden_size = hidden_size
        padded_vocab = math.ceil(vocab_size / 64) * 64  # matmul-friendly; extra rows never hit
        self.token_embedding = nn.Embedding(padded_vocab, hidden_size)
        self.position_embedding = nn.Embedding(context_length, hidden_size)
        self.blocks = nn.ModuleList(Block(hidden_size, heads) for _ in range(layers))
        self.final_norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, padded_vocab, bias=False)
        self.head.weight = self.token_embedding.weight
        self.apply(_init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("out.weight") or name.endswith("mlp.2.weight"):
                # GPT-2's scaling of residual projections by depth.
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    def lookup_parameters(self) -> int:
        """Parameters only looked up, never multiplied: the position embedding (the token
        embedding is also the output layer)."""
        return self.position_embedding.weight.numel()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.final_norm(x))
        if logits.shape[-1] == self.vocab_size:
            return logits
        # A copy, not a view: the loss's reshape would copy the view anyway, and FSDP warns of
        # a sharded model returning a view (an in-place change would skip its backward hook).
        return logits[..., : self.vocab_size].contiguous()


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
