"""Self-supervised losses as pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the BYOL regression loss 2 - 2 cos(prediction, target), averaged over the batch.

    Equal to the squared distance between the L2-normalised vectors, so it lies in [0, 4]. The target must
    already be detached (it comes from the EMA network); this function does not stop its gradient.
    """
    prediction = F.normalize(prediction.float(), dim=-1)  # (B, P)
    target = F.normalize(target.float(), dim=-1)  # (B, P)
    cosine = (prediction * target).sum(dim=-1)  # (B,)
    return (2.0 - 2.0 * cosine).mean()


def symmetric_byol_loss(
    predictions: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Return the BYOL loss symmetrised over two views: view 1 predicts target 2 and view 2 predicts target 1."""
    first, second = predictions
    target_first, target_second = targets
    return 0.5 * (byol_loss(first, target_second) + byol_loss(second, target_first))
