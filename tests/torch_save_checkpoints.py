"""Checkpoints of the previous format, written as kubeforge wrote them before its own state
format: `state.pt` by torch.save, a sha256 in the manifest, a plain `latest`. The checkpoint tests
check that they still load; the checkpoint benchmark restores one beside the current format.
"""

from __future__ import annotations

import hashlib
import io
import json

import torch

from kubeforge.storage import ObjectStore


def torch_saved(state: object) -> bytes:
    """`state` as torch.save writes it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def put_torch_save_checkpoint(
    store: ObjectStore, step: int, data: bytes, *, world_size: int = 1
) -> None:
    """Writes `data` (a torch.save state) as the checkpoint of `step`, `latest` pointing at it."""
    directory = f"step-{step:09d}"
    store.put(f"{directory}/state.pt", data)
    manifest = {
        "step": step,
        "files": {"state.pt": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}},
        "torch_version": torch.__version__,
        "world_size": world_size,
        "created_at": "2026-11-27T10:00:00Z",
    }
    store.put(f"{directory}/manifest.json", json.dumps(manifest).encode())
    store.put("latest", directory.encode())
