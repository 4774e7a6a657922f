"""A Llama-3-style decoder: RMSNorm, rotary positions, SwiGLU MLPs, grouped-query attention.

The architecture of Llama 3 (torchtitan's, in plain PyTorch), sized by a `LlamaShape`, with the
vocabulary the task's text source has. Attention uses PyTorch's fused scaled-dot-product kernels;
the transformer blocks are the ModuleList `blocks`, as in the GPT, so that a wrapper can shard
them one by one. Parameter names follow Hugging Face's LlamaForCausalLM inside a block, and rotary
positions rotate the two halves of each head (its convention), so the weights map one to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kubeforge_trainer.llama_shapes import LlamaShape, RopeScaling


class Attention(nn.Module):
    """Causal self-attention whose key and value heads are shared by groups of query heads."""

    def __init__(self, shape: LlamaShape) -> None:
        super().__init__()
        self.heads, self.kv_heads = shape.heads, shape.kv_heads
        self.head_size = shape.head_size
        width = shape.hidden_size
        self.q_proj = nn.Linear(width, self.heads * self.head_size, bias=False)
        self.k_proj = nn.Linear(width, self.kv_heads * self.head_size, bias=False)
        self.v_proj = nn.Linear(width, self.kv_heads * self.head_size, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_size, width, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.heads, self.head_size).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.kv_heads, self.head_size).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.kv_heads, self.head_size).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if self.kv_heads != self.heads:
            group = self.heads // self.kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out: torch.Tensor = self.o_proj(attended.transpose(1, 2).reshape(batch, length, -1))
        return out


class SwiGLU(nn.Module):
    """The gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, width: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(width, intermediate_size, bias=False)
        self.up_proj = nn.Linear(width, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return out


class Block(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then + mlp(norm(x))."""

    def __init__(self, shape: LlamaShape) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(shape.hidden_size, eps=shape.norm_eps)
        self.attention = Attention(shape)
        self.mlp_norm = nn.RMSNorm(shape.hidden_size, eps=shape.norm_eps)
        self.mlp = SwiGLU(shape.hidden_size, shape.intermediate_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        out: torch.Tensor = x + self.mlp(self.mlp_norm(x))
        return out


class Llama(nn.Module):
    """Next-token logits for every position of a batch of token sequences."""

    def __init__(self, vocab_size: int, shape: LlamaShape) -> None:
        super().__init__()
        self.shape = shape
        self.context_length = shape.context_length
        self.hidden_size = shape.hidden_size
        self.token_embedding = nn.Embedding(vocab_size, shape.hidden_size)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.final_norm = nn.RMSNorm(shape.hidden_size, eps=shape.norm_eps)
        self.head = nn.Linear(shape.hidden_size, vocab_size, bias=False)
        if shape.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        # Derived from the shape, never trained: not part of the state dict.
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initial weights as torchtitan's Llama 3 (normals truncated at +-2, the projections back
        into the residual stream scaled down with depth), and the rotary tables. Callable again
        after materialising a model built on the meta device.

        Untied: the embedding is N(0, 1) and the output layer N(0, 1/width) cut at 3 standard
        deviations, as torchtitan. Tied: the shared matrix is N(0, 0.02²) as Hugging Face's
        Llama, since an N(0, 1) output layer would start with logits of standard deviation
        sqrt(width).
        """
        device = self.token_embedding.weight.device
        self.rope_cos, self.rope_sin = rotary_tables(self.shape, device)
        for layer, block in enumerate(self.blocks):
            assert isinstance(block, Block)
            depth_std = 0.02 / math.sqrt(2 * (layer + 1))
            attention, mlp = block.attention, block.mlp
            for linear, std in (
                (attention.q_proj, 0.02),
                (attention.k_proj, 0.02),
                (attention.v_proj, 0.02),
                (attention.o_proj, depth_std),
                (mlp.gate_proj, 0.02),
                (mlp.up_proj, depth_std),
                (mlp.down_proj, depth_std),
            ):
                nn.init.trunc_normal_(linear.weight, std=std)
            block.attention_norm.reset_parameters()
            block.mlp_norm.reset_parameters()
        self.final_norm.reset_parameters()
        if self.shape.tie_embeddings:
            nn.init.normal_(self.token_embedding.weight, std=0.02)
        else:
            nn.init.normal_(self.token_embedding.weight)
            std = self.hidden_size**-0.5
            nn.init.trunc_normal_(self.head.weight, std=std, a=-3 * std, b=3 * std)

    def lookup_parameters(self) -> int:
        """Parameters only looked up, never multiplied: the token embedding unless the output
        layer shares it."""
        return 0 if self.shape.tie_embeddings else self.token_embedding.weight.numel()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.context_length:
            raise ValueError(f"{length} tokens exceed the context length {self.context_length}")
        cos, sin = self.rope_cos[:length], self.rope_sin[:length]
        x = self.token_embedding(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits: torch.Tensor = self.head(self.final_norm(x))
        return logits


def rotary_tables(shape: LlamaShape, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's angle for each of a head's frequency pairs, both halves
    repeated: (context_length, head_size)."""
    half = shape.head_size // 2
    exponents = torch.arange(half, device=device, dtype=torch.float32) / half
    frequencies = 1.0 / (shape.rope_theta**exponents)
    if shape.rope_scaling is not None:
        frequencies = scaled_frequencies(frequencies, shape.rope_scaling)
    positions = torch.arange(shape.context_length, device=device, dtype=torch.float32)
    angles = torch.outer(positions, frequencies).repeat(1, 2)
    return angles.cos(), angles.sin()


def scaled_frequencies(frequencies: torch.Tensor, scaling: RopeScaling) -> torch.Tensor:
    """The frequencies under Llama 3.1's scaling, computed as `transformers` does (its
    `_compute_llama3_parameters`), so that a folder's model gives the same logits here."""
    context = scaling.original_context_length
    wavelengths = 2 * math.pi / frequencies
    divided = torch.where(
        wavelengths > context / scaling.low_freq_factor, frequencies / scaling.factor, frequencies
    )
    smooth = (context / wavelengths - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * divided / scaling.factor + smooth * divided
    medium = (wavelengths >= context / scaling.high_freq_factor) & (
        wavelengths <= context / scaling.low_freq_factor
    )
    return torch.where(medium, smoothed, divided)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of (batch, heads, length, head_size) queries or keys: each
    pair (i, i + head_size/2) turned by its position's angle for frequency i."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)
