"""Hugging Face Llama model folders: kubeforge's Llama written as one, and read from one.

A folder as `LlamaForCausalLM.save_pretrained` writes it: `config.json`, the weights in
`model.safetensors` (or, above `MAX_SHARD_BYTES`, in shards that `model.safetensors.index.json`
names) and the tokenizer as `tokenizer.json` with the `tokenizer_config.json` that
`AutoTokenizer` reads. The parameters differ from Hugging Face's only in the prefixes of their
names (`hugging_face_name`): both models rotate the two halves of each head for rotary positions
(`rotate_half`), so the query and key weights are copied as they are, never permuted.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from kubeforge.storage import ObjectStore
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.llama_shapes import LlamaShape, RopeScaling
from kubeforge_trainer.tokenizer import FOLDER_TOKENIZER, TextTokenizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_CONFIG = "tokenizer_config.json"

MAX_SHARD_BYTES = 5 * 10**9
"""The weights go into shards above this size: Hugging Face's default shard size, and the most
one S3 PUT takes."""
LONGEST_DEFAULT_CONTEXT = 8192
"""The training context of a folder's model when the job does not set contextLength: its
max_position_embeddings up to this (Llama 3's pretraining context; its releases say 131072)."""

_TOP_LEVEL = {
    "token_embedding.weight": "model.embed_tokens.weight",
    "final_norm.weight": "model.norm.weight",
    "head.weight": "lm_head.weight",
}
_IN_BLOCK = {
    "attention_norm": "input_layernorm",
    "attention": "self_attn",
    "mlp_norm": "post_attention_layernorm",
    "mlp": "mlp",
}


def hugging_face_name(name: str) -> str:
    """LlamaForCausalLM's name of one of the Llama's parameters: blocks.3.attention.q_proj.weight
    is model.layers.3.self_attn.q_proj.weight."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    blocks, layer, module, rest = name.split(".", 3)
    assert blocks == "blocks", name
    return f"model.layers.{layer}.{_IN_BLOCK[module]}.{rest}"


# Writing a folder.


def llama_config(shape: LlamaShape, vocab_size: int, end_of_document: int) -> dict[str, Any]:
    """The config.json of LlamaForCausalLM for a shape: the context the model trained at is its
    max_position_embeddings; the weights are float32, as the trainer keeps them."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": shape.context_length,
        "rms_norm_eps": shape.norm_eps,
        "rope_theta": shape.rope_theta,
        "rope_scaling": _rope_scaling_config(shape.rope_scaling),
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": shape.tie_embeddings,
        "bos_token_id": None,
        "eos_token_id": end_of_document,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def _rope_scaling_config(scaling: RopeScaling | None) -> dict[str, Any] | None:
    if scaling is None:
        return None
    return {
        "rope_type": "llama3",
        "factor": scaling.factor,
        "low_freq_factor": scaling.low_freq_factor,
        "high_freq_factor": scaling.high_freq_factor,
        "original_max_position_embeddings": scaling.original_context_length,
    }


def write_folder(
    store: ObjectStore,
    prefix: str,
    weights: dict[str, torch.Tensor],
    shape: LlamaShape,
    tokenizer: TextTokenizer,
    *,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> None:
    """A Llama's whole state (kubeforge's names) and tokenizer as a Hugging Face folder under
    `prefix`. A tied output layer is not written: Hugging Face ties it to the embedding."""
    tensors = {
        hugging_face_name(name): tensor.contiguous()
        for name, tensor in weights.items()
        if not (shape.tie_embeddings and name == "head.weight")
    }
    vocab_size = weights["token_embedding.weight"].shape[0]
    for key, data in _weight_files(tensors, max_shard_bytes).items():
        store.put(f"{prefix}/{key}", data)
    document = llama_config(shape, vocab_size, tokenizer.end_of_document)
    store.put(f"{prefix}/{CONFIG}", _json(document))
    store.put(f"{prefix}/{FOLDER_TOKENIZER}", tokenizer.tokenizer_json)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": tokenizer.end_of_document_token,
        "model_max_length": shape.context_length,
        "clean_up_tokenization_spaces": False,
    }
    store.put(f"{prefix}/{TOKENIZER_CONFIG}", _json(tokenizer_config))


def _weight_files(tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> dict[str, bytes]:
    """model.safetensors, or shards of at most `max_shard_bytes` (a larger tensor alone) and the
    index that names each tensor's shard."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        return {WEIGHTS: save_safetensors(shards[0], metadata=metadata)}
    files: dict[str, bytes] = {}
    weight_map: dict[str, str] = {}
    for number, shard in enumerate(shards, start=1):
        key = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        files[key] = save_safetensors(shard, metadata=metadata)
        weight_map.update(dict.fromkeys(shard, key))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    files[WEIGHTS_INDEX] = _json({"metadata": {"total_size": total}, "weight_map": weight_map})
    return files


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


# Reading a folder.


def read_config(folder: ObjectStore) -> dict[str, Any]:
    """The folder's config.json, refused unless it describes a model the Llama here computes
    exactly as LlamaForCausalLM does."""
    where = f"{folder.uri}/{CONFIG}"
    if not folder.exists(CONFIG):
        raise ValueError(f"{where} is missing: initFrom names a Hugging Face model folder")
    config: dict[str, Any] = json.loads(folder.get(CONFIG))
    architectures = config.get("architectures") or [config.get("model_type")]
    if "LlamaForCausalLM" not in architectures and config.get("model_type") != "llama":
        raise ValueError(f"{where}: {architectures} is not a Llama (LlamaForCausalLM)")
    unsupported = {
        "hidden_act": (config.get("hidden_act", "silu"), "silu"),
        "attention_bias": (config.get("attention_bias", False), False),
        "mlp_bias": (config.get("mlp_bias", False), False),
    }
    for name, (value, supported) in unsupported.items():
        if value != supported:
            raise ValueError(f"{where}: {name} {value!r} is not supported (only {supported!r})")
    rope_type = _rope_type(_rope(config))
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"{where}: rope_type {rope_type!r} is not supported (default or llama3)")
    return config


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """The rotary settings: rope_parameters (transformers 5) or rope_scaling (4); none: {}."""
    rope: dict[str, Any] = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return rope


def _rope_type(rope: dict[str, Any]) -> str:
    """`rope_type` (`type` before transformers 4.45); none: default, unscaled."""
    return str(rope.get("rope_type", rope.get("type", "default")))


def _rope_scaling(rope: dict[str, Any]) -> RopeScaling | None:
    if _rope_type(rope) != "llama3":
        return None
    return RopeScaling(
        factor=float(rope["factor"]),
        low_freq_factor=float(rope["low_freq_factor"]),
        high_freq_factor=float(rope["high_freq_factor"]),
        original_context_length=int(rope["original_max_position_embeddings"]),
    )


def shape_of_config(
    config: dict[str, Any], where: str, context_length: int | None
) -> tuple[LlamaShape, int]:
    """The shape a Llama config.json describes, and its vocabulary size. The training context is
    `context_length`, else the config's max_position_embeddings up to LONGEST_DEFAULT_CONTEXT."""
    rope = _rope(config)
    longest = int(config.get("max_position_embeddings", LONGEST_DEFAULT_CONTEXT))
    try:
        heads = int(config["num_attention_heads"])
        hidden_size = int(config["hidden_size"])
        head_dim = config.get("head_dim")
        if head_dim is not None and int(head_dim) * heads != hidden_size:
            raise ValueError(
                f"{where}: head_dim {head_dim} is not hidden_size / num_attention_heads"
            )
        shape = LlamaShape(
            layers=int(config["num_hidden_layers"]),
            hidden_size=hidden_size,
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            intermediate_size=int(config["intermediate_size"]),
            context_length=context_length or min(longest, LONGEST_DEFAULT_CONTEXT),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            rope_theta=float(config.get("rope_theta", rope.get("rope_theta", 10_000.0))),
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_scaling=_rope_scaling(rope),
        )
        return shape, int(config["vocab_size"])
    except KeyError as missing:
        raise ValueError(f"{where}: {missing} is missing") from None


def read_llama(folder: ObjectStore, context_length: int | None) -> Llama:
    """A Llama of the folder's shape (initialised, not loaded: `load_weights`)."""
    shape, vocab_size = shape_of_config(read_config(folder), folder.uri, context_length)
    return Llama(vocab_size, shape)


def load_weights(folder: ObjectStore, model: Llama) -> None:
    """The folder's weights (any floating type, converted) into a Llama of its shape. A tied
    model's output layer is its embedding, whether or not the folder holds lm_head.weight."""
    names = {hugging_face_name(name): name for name in model.state_dict()}
    tied = model.shape.tie_embeddings
    if tied:
        del names["lm_head.weight"]
    tensors: dict[str, torch.Tensor] = {}
    for key in _weight_keys(folder):
        tensors.update(load_safetensors(folder.get(key)))
    if tied:
        tensors.pop("lm_head.weight", None)
    missing, unexpected = names.keys() - tensors.keys(), tensors.keys() - names.keys()
    if missing or unexpected:
        raise ValueError(
            f"{folder.uri}: the weights do not match its config.json: missing "
            f"{sorted(missing)[:5] or 'none'}, unexpected {sorted(unexpected)[:5] or 'none'}"
        )
    state = {names[name]: tensor for name, tensor in tensors.items()}
    if tied:
        state["head.weight"] = state["token_embedding.weight"]
    model.load_state_dict(state)


def _weight_keys(folder: ObjectStore) -> list[str]:
    """model.safetensors, or the shards its index names."""
    if folder.exists(WEIGHTS_INDEX):
        index = json.loads(folder.get(WEIGHTS_INDEX))
        return sorted(set(index["weight_map"].values()))
    if not folder.exists(WEIGHTS):
        raise ValueError(f"{folder.uri}: neither {WEIGHTS} nor {WEIGHTS_INDEX}")
    return [WEIGHTS]
