"""Throughput and model FLOPs utilisation (MFU): FLOPs per token, and the GPU's dense bf16 peak.

Peaks are the dense (not 2:4-sparse) bf16 tensor-core figures from the vendors' data sheets,
half the sparse figures they headline. The PCIe and NVL cards run at lower clocks and power than
the SXM ones of the same name, so they have their own, lower peaks. MFU is reported only for bf16
runs on a GPU in this table; elsewhere it is not defined.
"""

from __future__ import annotations

import time

import torch

PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H200 NVL": 835e12,
    "H100": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIE": 756e12,
    "H800": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
}


def transformer_flops_per_token(
    matmul_weights: int, layers: int, attention_width: int, context: int
) -> float:
    """Training FLOPs per token of a decoder, as PaLM (appendix B) and torchtitan count them: 6 per
    weight that multiplies activations (2 forward, 4 backward) plus attention's scores and
    weighted sums, 12 x layers x width (heads x head size) x context, counted as if unmasked."""
    return 6.0 * matmul_weights + 12.0 * layers * attention_width * context


def peak_flops(device: torch.device) -> float | None:
    """The dense bf16 peak of the device, when it is a GPU in the table."""
    if device.type != "cuda":
        return None
    return peak_bf16_flops(torch.cuda.get_device_name(device))


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU CUDA names so ("NVIDIA H200"), when it is in the table."""
    name = device_name.upper()
    for model, peak in sorted(PEAK_BF16_FLOPS.items(), key=lambda item: -len(item[0])):
        if model in name:
            return peak
    return None


class RateMeter:
    """Samples per second over the window since it was last read."""

    def __init__(self) -> None:
        self._since = time.monotonic()
        self._samples = 0

    def add(self, samples: int) -> None:
        self._samples += samples

    def read(self) -> float:
        now = time.monotonic()
        rate = self._samples / max(now - self._since, 1e-9)
        self._since, self._samples = now, 0
        return rate
