"""The llama architecture's shapes: the named ones, and the one a TrainingJob's model describes.

The published shapes are those of Meta's Hugging Face releases (the `config.json` of
meta-llama/Llama-3.2-1B, Llama-3.2-3B and Llama-3.1-8B); the vocabulary is not part of a shape,
since a model trained here takes its dataset's. kubeforge's own sizes follow GPT-3's table (Brown
et al. 2020, table 2.1) for depth, width and heads, with Llama's choices for the rest: a SwiGLU
hidden layer of 8/3 of the width (`swiglu_width`) and fewer key-value heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from kubeforge.api.trainingjob import ModelConfig, ModelSize

T = TypeVar("T")

DEFAULT_ROPE_THETA = 500_000.0
"""Llama 3's rotary base."""


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's rotary frequency scaling (Hugging Face's rope_type llama3), which its releases
    use to extend an `original_context_length` pretraining context: frequencies whose wavelength
    exceeds original_context_length / low_freq_factor are divided by `factor`, those below
    original_context_length / high_freq_factor kept, and those between interpolated."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_context_length: int


@dataclass(frozen=True)
class LlamaShape:
    """Every dimension of a Llama model but its vocabulary."""

    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    intermediate_size: int
    context_length: int
    tie_embeddings: bool
    rope_theta: float = DEFAULT_ROPE_THETA
    norm_eps: float = 1e-5
    rope_scaling: RopeScaling | None = None
    """Only from a Hugging Face folder (`model.initFrom`); the named shapes train unscaled."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads:
            raise ValueError(
                f"hiddenSize {self.hidden_size} is not a multiple of heads {self.heads}"
            )
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not a multiple of kvHeads {self.kv_heads}")
        if self.head_size % 2:
            raise ValueError(f"the head size {self.head_size} is odd: rotary positions need pairs")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.heads


NAMED_SHAPES = {
    # Positional, as a table: layers, hiddenSize, heads, kvHeads, intermediateSize, contextLength.
    ModelSize.TINY: LlamaShape(2, 128, 4, 2, 384, 128, tie_embeddings=True),
    ModelSize.SIZE_125M: LlamaShape(12, 768, 12, 4, 2048, 2048, tie_embeddings=True),
    ModelSize.SIZE_350M: LlamaShape(24, 1024, 16, 4, 2816, 2048, tie_embeddings=True),
    ModelSize.LLAMA_3_2_1B: LlamaShape(16, 2048, 32, 8, 8192, 8192, tie_embeddings=True),
    ModelSize.LLAMA_3_2_3B: LlamaShape(28, 3072, 24, 8, 8192, 8192, tie_embeddings=True),
    ModelSize.LLAMA_3_1_8B: LlamaShape(32, 4096, 32, 8, 14336, 8192, tie_embeddings=False),
}
"""The named shapes. The published ones train at Llama 3's pretraining context, 8192 tokens
(their releases extend it to 131072 afterwards, with scaled rotary frequencies)."""


def swiglu_width(hidden_size: int) -> int:
    """The SwiGLU hidden layer of a width: 8/3 of it (as many weights as a GELU MLP four times as
    wide), rounded up to a multiple of 128 for the matmuls."""
    return -(-8 * hidden_size // (3 * 128)) * 128


def shape_of(model: ModelConfig) -> LlamaShape:
    """The shape the model settings describe: the named size (tiny when none is named) with the
    dimensions they set instead of its own. Heads without kvHeads are multi-head attention; a
    width without intermediateSize has `swiglu_width`."""
    base = NAMED_SHAPES[model.size or ModelSize.TINY]
    intermediate_size = model.intermediate_size
    if intermediate_size is None and model.hidden_size is not None:
        intermediate_size = swiglu_width(model.hidden_size)
    return LlamaShape(
        layers=_given(model.layers, base.layers),
        hidden_size=_given(model.hidden_size, base.hidden_size),
        heads=_given(model.heads, base.heads),
        kv_heads=_given(model.kv_heads, _given(model.heads, base.kv_heads)),
        intermediate_size=_given(intermediate_size, base.intermediate_size),
        context_length=_given(model.context_length, base.context_length),
        tie_embeddings=_given(model.tie_embeddings, base.tie_embeddings),
        rope_theta=_given(model.rope_theta, base.rope_theta),
        norm_eps=base.norm_eps,
    )


def _given(value: T | None, default: T) -> T:
    return default if value is None else value
