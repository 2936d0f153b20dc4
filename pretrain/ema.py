"""Exponential moving average of an online network into a target network, and its momentum schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """Return the EMA momentum tau at `step`: `base` at step 0, rising by a half cosine to 1 at `total_steps`.

    tau = 1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2, the BYOL schedule; steps past the end
    stay at 1.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    progress = min(max(step, 0), total_steps) / total_steps
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMA:
    """Move a target network's parameters toward an online network's: xi <- tau * xi + (1 - tau) * theta.

    Called explicitly after each optimiser step. Only parameters are averaged. Buffers such as batch-norm
    running statistics stay the target's own, because the target runs its own forward passes in train mode
    and updates them there.
    """

    def __init__(self) -> None:
        self.updates = 0

    @torch.no_grad()
    def update(self, online: nn.Module, target: nn.Module, tau: float) -> None:
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"EMA momentum tau must be in [0, 1], got {tau}")
        online_parameters = dict(online.named_parameters())
        target_parameters = dict(target.named_parameters())
        if online_parameters.keys() != target_parameters.keys():
            missing = sorted(online_parameters.keys() ^ target_parameters.keys())
            raise ValueError(f"online and target networks differ in parameters: {missing[:5]}")

        names = list(online_parameters)
        target_tensors = [target_parameters[name].data for name in names]
        online_tensors = [online_parameters[name].data for name in names]
        # lerp_(online, 1 - tau) computes target + (1 - tau) * (online - target), the same update in one op.
        torch._foreach_lerp_(target_tensors, online_tensors, 1.0 - tau)
        self.updates += 1
