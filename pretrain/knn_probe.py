"""The kNN probe of a representation, as DINO evaluates one: cosine similarity, k = 20, votes exp(sim / 0.07).

A held-out clip takes the class with the largest sum of weights among its k nearest labelled clips.
Labels of a shard set's clips are their `label` metadata, or their source video's file name when `label`
is null, so a shard set without class labels measures how well clips of one recording group together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def clip_probe_label(meta: dict) -> str:
    """Return a clip's probe class: its `label` metadata, or its source file name when that is null."""
    label = meta.get("label")
    return str(label) if label is not None else str(meta.get("source_name"))


def knn_top1(
    bank: torch.Tensor,
    bank_labels: Sequence[str],
    queries: torch.Tensor,
    query_labels: Sequence[str],
    *,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Return the top-1 accuracy of the weighted kNN vote of `queries` (Q, D) against `bank` (N, D)."""
    if len(bank) == 0 or len(queries) == 0:
        raise ValueError("the kNN probe needs at least one labelled clip and one held-out clip")
    classes = sorted(set(bank_labels) | set(query_labels))
    index = {name: position for position, name in enumerate(classes)}
    bank_classes = torch.tensor([index[name] for name in bank_labels])  # (N,)
    query_classes = torch.tensor([index[name] for name in query_labels])  # (Q,)

    similarity = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T  # (Q, N)
    top_similarity, top_index = similarity.topk(min(k, len(bank)), dim=1)  # (Q, k)
    weights = (top_similarity / temperature).exp()  # (Q, k)
    votes = torch.zeros(len(queries), len(classes))  # (Q, C)
    votes.scatter_add_(1, bank_classes[top_index], weights)
    return float((votes.argmax(dim=1) == query_classes).float().mean())
