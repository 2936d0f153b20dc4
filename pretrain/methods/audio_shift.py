"""Audio-visual sync energy model (after Owens & Efros, 2018): is this audio in time with this video?

Video and audio encoders, the joint fusion MLP of `AVEncoder`, and a final linear layer give a scalar
energy per (video, audio) pair. Each clip of a batch appears twice: with its true audio and with audio of
the same source shifted in time by a random offset (see `pretrain.shifted_audio`). The pairs are therefore
exactly half in sync and half shifted. The model is trained as a binary classifier whose logit is
-energy, so low energy means in sync. To tell the two apart it must relate what is seen to what is heard,
and the joint embedding it learns for that is the representation that `embed` exports.

The energy is also an anomaly score: `energy(video, audio)` on a trained checkpoint is high when the sound
does not match the visible behaviour.
"""

from __future__ import annotations

import torch
from torch import nn

from pretrain.collapse import normalized_embedding_std
from pretrain.config import PretrainConfig
from pretrain.encoders import AVEncoder, build_encoder
from pretrain.losses import sync_energy_loss

# Batch layout shared with pretrain.data: video (1, B, 3, T, H, W) and audio (2, B, 1, n_mels, frames), where
# audio[0] is each clip's own audio and audio[1] the same source's audio shifted in time.
ViewBatch = dict[str, torch.Tensor]


class AudioShift(nn.Module):
    """Encoder plus energy layer, where `forward(batch)` returns the sync loss and its logs."""

    name = "audio_shift"
    uses_target_network = False

    def __init__(self, encoder: AVEncoder) -> None:
        super().__init__()
        if encoder.modality != "audio_video":
            raise ValueError(f"the audio-shift model needs an audio_video encoder, got {encoder.modality}")
        self.online = nn.ModuleDict({"encoder": encoder, "energy_head": nn.Linear(encoder.joint_dim, 1)})

    @classmethod
    def from_config(cls, config: PretrainConfig) -> AudioShift:
        return cls(build_encoder(config.model, config.data.modality))

    @property
    def encoder(self) -> AVEncoder:
        """The encoder, whose joint embedding is the learned representation."""
        return self.online["encoder"]

    def energy(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Return the energy (B,) of clips (B, 3, T, H, W) with log-mel audio (B, 1, n_mels, frames).

        Low energy means the model finds the audio in sync with the video; higher is more anomalous.
        """
        joint = self.encoder(video=video, audio=audio)["joint"]  # (B, D)
        return self.online["energy_head"](joint).squeeze(-1)  # (B,)

    def forward(self, batch: ViewBatch) -> tuple[torch.Tensor, dict[str, float]]:
        video = batch["video"][0]  # (B, 3, T, H, W)
        audio = batch["audio"]  # (2, B, 1, M, F)
        clips = video.shape[0]

        # The video branch runs once per clip and its vector is reused for both audio versions.
        # The concatenation order (video, audio) matches AVEncoder.forward, so `energy` gives the same values.
        video_features = self.encoder.video(video)  # (B, Dv)
        audio_features = self.encoder.audio(audio.flatten(0, 1))  # (2B, Da)
        fused = torch.cat([video_features.repeat(2, 1), audio_features], dim=1)  # (2B, Dv + Da)
        joint = self.encoder.fusion(fused)  # (2B, D)
        energy = self.online["energy_head"](joint).squeeze(-1)  # (2B,)

        in_sync = torch.cat([energy.new_ones(clips), energy.new_zeros(clips)])  # (2B,)
        loss = sync_energy_loss(energy, in_sync)

        with torch.no_grad():
            predicted_in_sync = (energy < 0).float()
            accuracy = (predicted_in_sync == in_sync).float().mean()
            sync_energy, shifted_energy = energy.float().chunk(2)
        logs = {
            "loss": loss.item(),
            "sync_loss": loss.item(),
            "sync_accuracy": accuracy.item(),
            "energy_in_sync": sync_energy.mean().item(),
            "energy_shifted": shifted_energy.mean().item(),
            "embedding_std": normalized_embedding_std(joint[:clips]),
        }
        return loss, logs
