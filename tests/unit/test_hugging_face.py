"""Hugging Face Llama folders both ways, checked with `transformers` itself on local folders (no
hub): kubeforge's Llama exported (tied and untied, whole and sharded, with the byte-level
tokenizer's tokenizer.json) computes the same logits in LlamaForCausalLM and its tokenizer the
same ids in AutoTokenizer; a folder LlamaForCausalLM saves loads into kubeforge's Llama with the
same logits; and folders the Llama cannot compute exactly are refused, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from kubeforge.api.trainingjob import ModelArchitecture, ModelConfig
from kubeforge.storage import FileStore
from kubeforge_trainer import hugging_face
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.llama_shapes import LlamaShape
from kubeforge_trainer.tasks import build_language_model
from kubeforge_trainer.tokenizer import ByteTokenizer
from tests.hugging_face_models import tiny_llama_config

TEXT = "Grüße, kubeforge! The model's tokens:\n\t0123"


def tiny_shape(*, tied: bool) -> LlamaShape:
    # Grouped-query attention (4 heads, 2 key-value heads) and Llama 2's rotary base.
    return LlamaShape(2, 64, 4, 2, 96, 48, tie_embeddings=tied, rope_theta=10_000.0)


def exported(tmp_path: Path, *, tied: bool, max_shard_bytes: int) -> tuple[Llama, Path]:
    torch.manual_seed(0)
    model = Llama(ByteTokenizer.vocab_size, tiny_shape(tied=tied)).eval()
    state = model.state_dict()
    hugging_face.write_folder(
        FileStore(tmp_path),
        "hf",
        state,
        model.shape,
        ByteTokenizer(),
        max_shard_bytes=max_shard_bytes,
    )
    return model, tmp_path / "hf"


@pytest.mark.parametrize(
    ("tied", "max_shard_bytes", "weight_files"),
    [
        (True, hugging_face.MAX_SHARD_BYTES, ["model.safetensors"]),
        # Shards of at most 100 kB (the model has 0.45 MB): the index names each tensor's.
        (False, 100_000, [f"model-0000{n}-of-00004.safetensors" for n in range(1, 5)]),
    ],
)
def test_an_exported_llama_computes_the_same_logits_in_transformers(
    tmp_path: Path, tied: bool, max_shard_bytes: int, weight_files: list[str]
) -> None:
    model, folder = exported(tmp_path, tied=tied, max_shard_bytes=max_shard_bytes)
    assert sorted(path.name for path in folder.glob("*.safetensors")) == weight_files
    if len(weight_files) > 1:
        index = json.loads((folder / hugging_face.WEIGHTS_INDEX).read_text())
        assert sorted(set(index["weight_map"].values())) == weight_files
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_key_value_heads"], config["tie_word_embeddings"]) == (2, tied)

    loaded = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert ids == ByteTokenizer().encode(TEXT)
    assert tokenizer.decode(ids) == TEXT
    assert tokenizer.eos_token_id == ByteTokenizer.end_of_document
    tokens = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens).logits, model(tokens))


def test_a_folder_transformers_saved_loads_with_the_same_logits(tmp_path: Path) -> None:
    torch.manual_seed(1)
    # Multi-query attention: one key-value head.
    config = tiny_llama_config(
        300, num_key_value_heads=1, max_position_embeddings=48, tie_word_embeddings=True
    )
    reference = LlamaForCausalLM(config).eval()
    reference.save_pretrained(tmp_path)
    folder = FileStore(tmp_path)
    model = hugging_face.read_llama(folder, context_length=None)
    hugging_face.load_weights(folder, model)
    assert (model.context_length, model.shape.kv_heads, model.shape.norm_eps) == (48, 1, 1e-6)
    tokens = torch.randint(0, 300, (2, 48))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens), reference(tokens).logits)


def test_llama_3_1s_rotary_scaling_gives_transformers_logits_both_ways(tmp_path: Path) -> None:
    # Llama 3.1 and 3.2's settings, with the original context shortened to 16 tokens so that
    # 128 positions reach the scaled, the interpolated and the kept frequencies.
    torch.manual_seed(2)
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500_000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    reference = LlamaForCausalLM(tiny_llama_config(300, rope_parameters=rope)).eval()
    reference.save_pretrained(tmp_path / "saved")
    saved = FileStore(tmp_path / "saved")
    model = hugging_face.read_llama(saved, context_length=None)
    hugging_face.load_weights(saved, model)
    assert model.shape.rope_scaling is not None
    tokens = torch.randint(0, 300, (1, 128))
    with torch.no_grad():
        expected = reference(tokens).logits
        torch.testing.assert_close(model.eval()(tokens), expected)
    hugging_face.write_folder(
        FileStore(tmp_path), "exported", model.state_dict(), model.shape, ByteTokenizer()
    )
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "exported", local_files_only=True)
    with torch.no_grad():
        torch.testing.assert_close(exported.eval()(tokens).logits, expected)


def test_the_training_context_is_the_jobs_else_the_folders_up_to_8192(tmp_path: Path) -> None:
    _, folder = exported(tmp_path, tied=True, max_shard_bytes=hugging_face.MAX_SHARD_BYTES)
    config = json.loads((folder / "config.json").read_text())
    assert hugging_face.shape_of_config(config, "here", 16)[0].context_length == 16
    config["max_position_embeddings"] = 131072
    assert hugging_face.shape_of_config(config, "here", None)[0].context_length == 8192


def rewritten(folder: Path, **changes: object) -> FileStore:
    """The folder with its config.json changed; a setting changed to None is left out."""
    config = {**json.loads((folder / "config.json").read_text()), **changes}
    settings = {name: value for name, value in config.items() if value is not None}
    (folder / "config.json").write_text(json.dumps(settings))
    return FileStore(folder)


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        (
            {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"},
            r"\['GPT2LMHeadModel'\] is not a Llama",
        ),
        (
            {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
            "rope_type 'yarn' is not supported",
        ),
        ({"attention_bias": True}, "attention_bias True is not supported"),
        ({"head_dim": 32}, "head_dim 32 is not hidden_size / num_attention_heads"),
        ({"vocab_size": None}, "'vocab_size' is missing"),
        ({"num_hidden_layers": 3}, "the weights do not match its config.json: missing"),
    ],
)
def test_a_folder_the_llama_cannot_compute_exactly_is_refused(
    tmp_path: Path, changes: dict[str, object], refusal: str
) -> None:
    _, folder = exported(tmp_path, tied=True, max_shard_bytes=hugging_face.MAX_SHARD_BYTES)
    store = rewritten(folder, **changes)
    with pytest.raises(ValueError, match=refusal):
        hugging_face.load_weights(store, hugging_face.read_llama(store, context_length=None))


def test_a_folder_without_config_or_a_vocabulary_too_small_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"config\.json is missing"):
        hugging_face.read_config(FileStore(tmp_path))
    _, folder = exported(tmp_path, tied=True, max_shard_bytes=hugging_face.MAX_SHARD_BYTES)
    spec = ModelConfig(architecture=ModelArchitecture.LLAMA, init_from=folder.as_uri())
    assert build_language_model(spec, 257).token_embedding.num_embeddings == 257
    with pytest.raises(ValueError, match="the tokenizer's 1024 tokens exceed the 257 of"):
        build_language_model(spec, 1024)
