"""Learning-rate schedule: linear warm-up, then cosine decay to a floor, counted in optimiser steps."""

from __future__ import annotations

import math


class WarmupCosine:
    """Multiplier of the peak learning rate at a step, for `torch.optim.lr_scheduler.LambdaLR`.

    Rises linearly from 1 / (warmup_steps + 1) to 1 over `warmup_steps`, then falls by a half cosine to
    `min_ratio` at `total_steps` and stays there. A callable object rather than a closure, so the
    scheduler's state dict records its settings.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, got {warmup_steps}, {total_steps}"
            )
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
