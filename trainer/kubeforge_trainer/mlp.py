"""The MLP classifier: 784 inputs (a 28x28 image) through ReLU hidden layers to 10 classes."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """`layers` hidden layers of `hidden_size` units each."""

    def __init__(self, inputs: int, classes: int, layers: int, hidden_size: int) -> None:
        super().__init__()
        stack: list[nn.Module] = []
        width = inputs
        for _ in range(layers):
            stack += [nn.Linear(width, hidden_size), nn.ReLU()]
            width = hidden_size
        stack.append(nn.Linear(width, classes))
        self.net = nn.Sequential(*stack)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of flattened images."""
        logits: torch.Tensor = self.net(inputs)
        return logits
