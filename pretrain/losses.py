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


def dino_loss(
    student_logits: list[torch.Tensor],
    teacher_logits: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Return the DINO cross-entropy H(softmax((t - c) / T_t), softmax(s / T_s)) averaged over view pairs.

    `student_logits` contains one (B, K) tensor per view with the global views first, in the same order as
    `teacher_logits`, which contains the global views only. Every teacher view is paired with every student
    view except itself, so with 2 global and N local views there are 2 * (N + 1) pairs. The teacher side
    is centred by `center` (1, K), sharpened by `teacher_temp` and detached here.
    """
    if len(student_logits) < len(teacher_logits):
        raise ValueError(
            f"the student needs at least the teacher's {len(teacher_logits)} views, got {len(student_logits)}"
        )
    teacher_probs = [
        F.softmax((logits.detach().float() - center) / teacher_temp, dim=-1) for logits in teacher_logits
    ]  # each (B, K)
    student_log_probs = [F.log_softmax(logits.float() / student_temp, dim=-1) for logits in student_logits]

    total = student_logits[0].new_zeros((), dtype=torch.float32)
    pairs = 0
    for teacher_index, probs in enumerate(teacher_probs):
        for student_index, log_probs in enumerate(student_log_probs):
            if student_index == teacher_index:
                continue
            total = total + (-probs * log_probs).sum(dim=-1).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("DINO needs at least two views to form a pair of different views")
    return total / pairs


def sync_energy_loss(energy: torch.Tensor, in_sync: torch.Tensor) -> torch.Tensor:
    """Return the binary cross-entropy of the audio-visual sync classifier whose logit is -energy.

    `energy` (B,) is low for pairs the model thinks are in sync; `in_sync` (B,) is 1 for true audio and
    0 for time-shifted audio.
    """
    return F.binary_cross_entropy_with_logits(-energy.float(), in_sync.float())
