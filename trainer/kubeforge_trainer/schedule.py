"""The learning-rate schedule: linear warmup to the peak, then cosine decay to a tenth of it."""

from __future__ import annotations

import math
from collections.abc import Callable

FINAL_FRACTION = 0.1


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate for the step about to be taken (LambdaLR)."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        decay_steps = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return FINAL_FRACTION + (1.0 - FINAL_FRACTION) * cosine

    return multiplier
