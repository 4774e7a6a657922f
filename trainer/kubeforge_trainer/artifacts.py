"""The run's final artifacts, next to its checkpoints: `final/model.pt` (the weights),
`final/config.yaml` (the worker config) and `final/metrics.json` (the measurements)."""

from __future__ import annotations

import io
import json
from typing import Any

import torch
import yaml

from kubeforge.plan import WorkerConfig
from kubeforge.storage import ObjectStore

DIRECTORY = "final"


def write_final_artifacts(
    store: ObjectStore,
    weights: dict[str, Any],
    config: WorkerConfig,
    metrics: dict[str, Any],
) -> None:
    """`weights` is the whole model's state (gathered, when the model is sharded)."""
    saved = io.BytesIO()
    torch.save(weights, saved)
    store.put(f"{DIRECTORY}/model.pt", saved.getvalue())
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    store.put(f"{DIRECTORY}/config.yaml", yaml.safe_dump(document, sort_keys=False).encode())
    store.put(f"{DIRECTORY}/metrics.json", json.dumps(metrics, indent=2).encode())
