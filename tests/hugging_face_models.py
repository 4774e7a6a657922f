"""The tiny `transformers` Llama the Hugging Face tests save and load: two layers of width 64,
four heads sharing two key-value heads, a SwiGLU of 96."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig


def tiny_llama_config(vocab_size: int, **changes: Any) -> LlamaConfig:
    settings: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
    }
    return LlamaConfig(**{**settings, **changes})
