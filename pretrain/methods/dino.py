"""DINO (Caron et al., 2021): self-distillation without labels on the joint audio-visual embedding.

Student: encoder f and head h. Teacher: copies of both, updated only by the EMA after each optimiser step.
The head is a 3-layer MLP, an L2-normalised bottleneck and a weight-normalised linear layer onto K
prototypes (its weight rows are unit vectors, as in DINO with `norm_last_layer`). The teacher's output is
centred by an EMA of its batch mean and sharpened by a low temperature that warms up linearly. The loss
is the cross-entropy between the teacher's softmax on each global view and the student's softmax on every
other view.

Multi-crop: the student sees the 2 global views and N small local views of a clip, the teacher only the
2 global ones. Matching local to global views teaches the encoder that a part of the scene predicts the
whole. Collapse shows in the logs: `teacher_entropy` near 0 (every clip one-hot on one prototype) or
`teacher_kl_uniform` near 0 (the batch spread evenly over all K, carrying no information).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pretrain.collapse import normalized_embedding_std
from pretrain.config import PretrainConfig
from pretrain.encoders import AVEncoder, build_encoder
from pretrain.losses import dino_loss

# Batch layout shared with pretrain.data: global views (2, B, ...) under "video" and "audio", local views
# (N, B, ...) under "video_local" and "audio_local" with smaller crops and shorter spectrograms.
ViewBatch = dict[str, torch.Tensor]


def teacher_temperature(step: int, start: float, end: float, warmup_steps: int) -> float:
    """Return the teacher temperature at `step`: `start` at step 0, linear to `end` at `warmup_steps`, then `end`.

    A low temperature early keeps the teacher's targets sharp while the student is still random, which
    DINO found to prevent collapse in the first steps.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * max(step, 0) / warmup_steps


def next_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """Return the centre after one EMA step: momentum * center + (1 - momentum) * mean of `teacher_logits` rows.

    `center` is (1, K) and `teacher_logits` (B, K). Under `torch.distributed` the batch mean is averaged
    over all processes, so every replica keeps the same centre.
    """
    batch_center = teacher_logits.detach().float().sum(dim=0, keepdim=True)  # (1, K)
    count = torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(batch_center)
        dist.all_reduce(count)
    batch_center = batch_center / count
    return center * momentum + batch_center * (1.0 - momentum)


class NormalizedLinear(nn.Module):
    """A bias-free linear layer whose weight rows are L2-normalised (weight norm with g fixed to 1)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1))  # (B, out_dim)


class DINOHead(nn.Module):
    """Map embeddings to K prototype scores: MLP, L2-normalised bottleneck, weight-normalised last layer."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.last_layer = NormalizedLinear(bottleneck_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.mlp(x), dim=-1)  # (B, bottleneck_dim)
        return self.last_layer(bottleneck)  # (B, K)


class DINO(nn.Module):
    """Student, teacher and teacher centre, where `forward(batch)` returns the loss and its logs."""

    name = "dino"
    # The trainer calls EMA.update(self.online, self.target, tau) after each optimiser step.
    uses_target_network = True

    def __init__(
        self,
        encoder: AVEncoder,
        head_hidden_dim: int,
        head_bottleneck_dim: int,
        head_out_dim: int,
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        teacher_temp_start: float = 0.04,
        teacher_temp_warmup_steps: int = 0,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.teacher_temp_start = teacher_temp_start
        self.teacher_temp_warmup_steps = teacher_temp_warmup_steps
        self.center_momentum = center_momentum
        # The optimiser step the next forward belongs to; the trainer sets it through `set_step`.
        self.step = 0

        self.online = nn.ModuleDict(
            {
                "encoder": encoder,
                "head": DINOHead(encoder.joint_dim, head_hidden_dim, head_bottleneck_dim, head_out_dim),
            }
        )
        # The teacher starts as an exact copy; gradients never reach it, only the EMA moves it.
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        # A buffer, so checkpoints carry it and a resumed run keeps centring where it stopped.
        self.register_buffer("center", torch.zeros(1, head_out_dim))

    @classmethod
    def from_config(cls, config: PretrainConfig) -> DINO:
        method = config.method
        return cls(
            build_encoder(config.model, config.data.modality),
            head_hidden_dim=method.head_hidden_dim,
            head_bottleneck_dim=method.head_bottleneck_dim,
            head_out_dim=method.head_out_dim,
            student_temp=method.student_temp,
            teacher_temp=method.teacher_temp,
            teacher_temp_start=method.teacher_temp_start,
            teacher_temp_warmup_steps=method.teacher_temp_warmup_steps,
            center_momentum=method.center_momentum,
        )

    @property
    def encoder(self) -> AVEncoder:
        """The student encoder, whose embeddings are the learned representation."""
        return self.online["encoder"]

    def set_step(self, step: int) -> None:
        """Record the optimiser step about to run, which sets the teacher temperature."""
        self.step = step

    def current_teacher_temp(self) -> float:
        return teacher_temperature(
            self.step, self.teacher_temp_start, self.teacher_temp, self.teacher_temp_warmup_steps
        )

    def forward(self, batch: ViewBatch) -> tuple[torch.Tensor, dict[str, float]]:
        num_global = count_views(batch, "")
        num_local = count_views(batch, "_local")
        modalities = [name for name in ("video", "audio") if name in batch]
        global_inputs = {name: batch[name].flatten(0, 1) for name in modalities}  # (2B, ...)
        local_inputs = {
            name: batch[f"{name}_local"].flatten(0, 1) for name in modalities if f"{name}_local" in batch
        }  # (NB, ...)

        # Student: global and local views in two passes, since their crops differ in size.
        student_global = self.encoder(**global_inputs)  # joint (2B, D)
        student_logits = list(self.online["head"](student_global["joint"]).chunk(num_global))  # each (B, K)
        if num_local > 0:
            student_local = self.encoder(**local_inputs)  # joint (NB, D)
            student_logits += list(self.online["head"](student_local["joint"]).chunk(num_local))

        # Teacher: global views only.
        with torch.no_grad():
            teacher_joint = self.target["encoder"](**global_inputs)["joint"]  # (2B, D)
            teacher_output = self.target["head"](teacher_joint)  # (2B, K)
        teacher_logits = list(teacher_output.chunk(num_global))

        teacher_temp = self.current_teacher_temp()
        loss = dino_loss(student_logits, teacher_logits, self.center, self.student_temp, teacher_temp)
        logs = {
            "loss": loss.item(),
            "dino_loss": loss.item(),
            "teacher_temp": teacher_temp,
            "embedding_std": normalized_embedding_std(student_global["joint"].chunk(num_global)[0]),
            **collapse_logs(teacher_output, self.center, teacher_temp),
        }

        # The centre moves after the loss used it, so this batch is centred by the previous batches only.
        if self.training:
            self.center.copy_(next_center(self.center, teacher_output, self.center_momentum))
        return loss, logs


def count_views(batch: ViewBatch, suffix: str) -> int:
    """Return V, the views of the (V, B, ...) tensors whose keys end in `suffix`, or 0 if there are none."""
    for name in ("video", "audio"):
        if f"{name}{suffix}" in batch:
            return batch[f"{name}{suffix}"].shape[0]
    return 0


@torch.no_grad()
def collapse_logs(
    teacher_output: torch.Tensor, center: torch.Tensor, teacher_temp: float
) -> dict[str, float]:
    """Return the teacher's mean entropy per clip and the KL from its batch-mean distribution to uniform, in nats.

    Both use the centred, sharpened softmax that the loss uses as its target. Entropy near 0 means every clip
    gets a one-hot target. KL to uniform near 0 means the batch as a whole uses every prototype equally,
    which, together with entropy near log K, is the uniform collapse that centring alone would cause.
    """
    probs = F.softmax((teacher_output.float() - center) / teacher_temp, dim=-1)  # (2B, K)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean()
    mean_probs = probs.mean(dim=0)  # (K,)
    num_prototypes = probs.shape[-1]
    kl_uniform = (mean_probs * (mean_probs.clamp_min(1e-12).log() + math.log(num_prototypes))).sum()
    return {"teacher_entropy": entropy.item(), "teacher_kl_uniform": kl_uniform.item()}
