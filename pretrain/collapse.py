"""Collapse monitor: how spread out a batch of embeddings is on the unit sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def normalized_embedding_std(embeddings: torch.Tensor) -> float:
    """Return the per-dimension std of the L2-normalised embeddings across the batch, averaged over dimensions.

    A collapsed encoder (every clip mapped to one point) gives 0; embeddings spread uniformly over the sphere
    give about 1 / sqrt(D). BYOL can collapse silently while its loss looks fine, so this is logged.
    """
    if embeddings.shape[0] < 2:
        return float("nan")
    unit = F.normalize(embeddings.detach().float(), dim=1)  # (B, D)
    return unit.std(dim=0).mean().item()
