"""BYOL (Grill et al., 2020) on the joint audio-visual embedding, with an optional cross-modal term.

Online network: encoder f, projector g, predictor q. Target network: copies of f and g with no predictor,
updated only by the EMA after each optimiser step. For two views v, v' of a clip the loss is
2 - 2 cos(q(g(f(v))), sg(g'(f'(v')))), symmetrised over the views. The joint embedding f(v)["joint"] is
the representation that `embed` exports.

Cross-modal term (weight `cross_modal_weight`, audio_video only): per-modality projectors and predictors
let the video branch of one view predict the target audio projection of the other view. The audio branch
likewise predicts the target video projection, which ties the two modalities' representations together.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pretrain.collapse import normalized_embedding_std
from pretrain.config import PretrainConfig
from pretrain.encoders import AVEncoder, build_encoder, two_layer_mlp
from pretrain.losses import symmetric_byol_loss

# Batch layout shared with pretrain.data: each present modality is a tensor with both views stacked first,
# video (2, B, 3, T, H, W) and audio (2, B, 1, n_mels, frames).
ViewBatch = dict[str, torch.Tensor]


class BYOL(nn.Module):
    """Online and target networks; `forward(batch)` returns the loss and the scalars worth logging."""

    name = "byol"
    # The trainer calls EMA.update(self.online, self.target, tau) after each optimiser step.
    uses_target_network = True

    def __init__(
        self,
        encoder: AVEncoder,
        projector_hidden_dim: int,
        projector_dim: int,
        predictor_hidden_dim: int,
        cross_modal_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if cross_modal_weight > 0.0 and encoder.modality != "audio_video":
            raise ValueError(f"the cross-modal term needs an audio_video encoder, got {encoder.modality}")
        self.cross_modal_weight = cross_modal_weight

        online = nn.ModuleDict(
            {"encoder": encoder, "projector": two_layer_mlp(encoder.joint_dim, projector_hidden_dim, projector_dim)}
        )
        predictors = nn.ModuleDict({"joint": two_layer_mlp(projector_dim, predictor_hidden_dim, projector_dim)})
        if cross_modal_weight > 0.0:
            for modality in ("video", "audio"):
                online[f"{modality}_projector"] = two_layer_mlp(
                    encoder.dims[modality], projector_hidden_dim, projector_dim
                )
                predictors[modality] = two_layer_mlp(projector_dim, predictor_hidden_dim, projector_dim)
        self.online = online
        self.predictors = predictors

        # The target starts as an exact copy; gradients never reach it, only the EMA moves it.
        self.target = copy.deepcopy(online)
        self.target.requires_grad_(False)

    @classmethod
    def from_config(cls, config: PretrainConfig) -> BYOL:
        return cls(
            build_encoder(config.model, config.data.modality),
            projector_hidden_dim=config.method.projector_hidden_dim,
            projector_dim=config.method.projector_dim,
            predictor_hidden_dim=config.method.predictor_hidden_dim,
            cross_modal_weight=config.method.cross_modal_weight,
        )

    @property
    def encoder(self) -> AVEncoder:
        """The online encoder, whose embeddings are the learned representation."""
        return self.online["encoder"]

    def forward(self, batch: ViewBatch) -> tuple[torch.Tensor, dict[str, float]]:
        # Both views go through each network as one batch of 2B clips.
        inputs = {name: batch[name].flatten(0, 1) for name in ("video", "audio") if name in batch}  # (2B, ...)
        online = self.encoder(**inputs)  # joint (2B, D)
        online_projection = self.online["projector"](online["joint"])  # (2B, P)
        prediction = self.predictors["joint"](online_projection)  # (2B, P)

        with torch.no_grad():
            target = self.target["encoder"](**inputs)
            target_projection = self.target["projector"](target["joint"])  # (2B, P)

        joint_loss = symmetric_byol_loss(prediction.chunk(2), target_projection.detach().chunk(2))
        loss = joint_loss
        logs = {
            "byol_loss": joint_loss.item(),
            "embedding_std": normalized_embedding_std(online["joint"].chunk(2)[0]),
            "projection_std": normalized_embedding_std(online_projection.chunk(2)[0]),
        }

        if self.cross_modal_weight > 0.0:
            cross_loss = self._cross_modal_loss(online, target)
            loss = loss + self.cross_modal_weight * cross_loss
            logs["cross_modal_loss"] = cross_loss.item()

        logs["loss"] = loss.item()
        return loss, logs

    def _cross_modal_loss(
        self, online: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Return the mean of video-predicts-audio and audio-predicts-video, each symmetrised over the views."""
        predictions = {}
        target_projections = {}
        for modality in ("video", "audio"):
            projection = self.online[f"{modality}_projector"](online[modality])  # (2B, P)
            predictions[modality] = self.predictors[modality](projection)  # (2B, P)
            with torch.no_grad():
                target_projections[modality] = self.target[f"{modality}_projector"](target[modality])  # (2B, P)

        video_to_audio = symmetric_byol_loss(predictions["video"].chunk(2), target_projections["audio"].chunk(2))
        audio_to_video = symmetric_byol_loss(predictions["audio"].chunk(2), target_projections["video"].chunk(2))
        return 0.5 * (video_to_audio + audio_to_video)
