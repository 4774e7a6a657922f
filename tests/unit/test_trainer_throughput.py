"""MFU's denominator: the dense bf16 peak picked from the name CUDA gives a GPU (pure)."""

from __future__ import annotations

import pytest

from kubeforge_trainer.throughput import peak_bf16_flops


@pytest.mark.parametrize(
    ("device_name", "peak"),
    [
        ("NVIDIA H200", 989e12),
        ("NVIDIA H200 NVL", 835e12),
        ("NVIDIA GH200 480GB", 989e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_the_peak_is_the_named_gpus_dense_bf16_figure(device_name: str, peak: float | None) -> None:
    assert peak_bf16_flops(device_name) == peak
