"""The MLP's data: scikit-learn's handwritten digits, bundled in its wheel, as 28x28 images.

The 1,797 8x8 digits are resampled (bilinear) to the 28x28 = 784 inputs the MLP classifies, and
split once, by a fixed seed that is not the training seed, into a training set (80%) and a test
set, so every run and every restart sees the same split. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

from kubeforge_trainer.order import SampleIds

IMAGE_SIDE = 28
INPUTS = IMAGE_SIDE * IMAGE_SIDE
CLASSES = 10
TEST_FRACTION = 0.2
SPLIT_SEED = 20260101


def _all_digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    resized = F.interpolate(images, size=(IMAGE_SIDE, IMAGE_SIDE), mode="bilinear")
    return resized.reshape(len(images), INPUTS), torch.from_numpy(digits.target.astype(np.int64))


class DigitsSource:
    """The training or the test split, addressed by sample id (0..len-1)."""

    def __init__(self, split: str) -> None:
        inputs, labels = _all_digits()
        shuffled = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
        test_count = int(len(labels) * TEST_FRACTION)
        chosen = shuffled[:test_count] if split == "test" else shuffled[test_count:]
        index = torch.from_numpy(np.sort(chosen))
        self.inputs = inputs[index]
        self.labels = labels[index]
        self.split = split

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return (len(self.labels),)

    @property
    def fingerprint(self) -> str:
        return f"sklearn-digits-{IMAGE_SIDE}x{IMAGE_SIDE}-{self.split}-{len(self.labels)}"

    def collate(self, ids: SampleIds) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(ids)
        return self.inputs[index], self.labels[index]
