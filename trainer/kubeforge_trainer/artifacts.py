"""The run's final artifacts, next to its checkpoints: `final/model.pt` (the weights),
`final/config.yaml` (the worker config), `final/metrics.json` (the measurements) and, for a
Llama, `final/hf/`: the model as a Hugging Face folder (`hugging_face`) that `transformers`
loads."""

from __future__ import annotations

import io
import json
from typing import Any

import torch
import yaml
from torch import nn

from kubeforge.plan import WorkerConfig
from kubeforge.storage import ObjectStore
from kubeforge_trainer import hugging_face
from kubeforge_trainer.llama import Llama
from kubeforge_trainer.tokenizer import TextTokenizer

DIRECTORY = "final"
HUGGING_FACE_DIRECTORY = f"{DIRECTORY}/hf"


def write_final_artifacts(
    store: ObjectStore,
    weights: dict[str, Any],
    config: WorkerConfig,
    metrics: dict[str, Any],
    model: nn.Module,
    tokenizer: TextTokenizer | None,
) -> None:
    """`weights` is the whole state of `model` (gathered, when the model is sharded); a
    language model's `tokenizer` goes into its Hugging Face folder."""
    saved = io.BytesIO()
    torch.save(weights, saved)
    store.put(f"{DIRECTORY}/model.pt", saved.getvalue())
    if isinstance(model, Llama):
        assert tokenizer is not None  # every language model has one
        hugging_face.write_folder(store, HUGGING_FACE_DIRECTORY, weights, model.shape, tokenizer)
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    store.put(f"{DIRECTORY}/config.yaml", yaml.safe_dump(document, sort_keys=False).encode())
    store.put(f"{DIRECTORY}/metrics.json", json.dumps(metrics, indent=2).encode())
