"""Video, audio and joint audio-visual encoders.

`VideoEncoder` maps clips (B, 3, T, H, W) to vectors: 'narrow' is a small 3D ResNet sized for CPUs, while
'r3d_18' and 'r2plus1d_18' are torchvision's video ResNets at full size, randomly initialised, with the
classifier removed. `AudioEncoder` is a 2D ResNet over log-mel spectrograms (B, 1, n_mels, frames).
`AVEncoder` runs the branches of its modality and fuses their concatenated vectors with an MLP into the joint
embedding. Every constructor takes explicit sizes, so no layer is built by a dummy forward pass.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchvision.models import video as video_models

from pretrain.config import Modality, ModelConfig

VideoArch = Literal["narrow", "r3d_18", "r2plus1d_18"]

# Output size of torchvision's video ResNets once the classifier is removed.
TORCHVISION_VIDEO_DIM = 512


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut; works in 2D or 3D through `conv` and `norm`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x)
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.norm2(self.conv2(x))
        return self.relu(x + residual)


class NarrowVideoResNet(nn.Module):
    """A 3D ResNet with one residual block per stage and widths (w, 2w, 4w, 8w); output size 8w.

    The stem keeps time and halves space. Each later stage halves time and space, so 8 frames at 64x64 end
    as 1 x 4 x 4 before global average pooling.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages = [ResidualBlock(width, widths[0], stride=1, dims=3)]
        for in_channels, out_channels in zip(widths[:-1], widths[1:]):
            stages.append(ResidualBlock(in_channels, out_channels, stride=2, dims=3))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_dim = widths[-1]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(video))  # (B, 8w, T', H', W')
        return self.pool(x).flatten(1)  # (B, 8w)


class VideoEncoder(nn.Module):
    """Encode video clips (B, 3, T, H, W) into vectors (B, out_dim)."""

    def __init__(self, arch: VideoArch, width: int = 16) -> None:
        super().__init__()
        self.arch = arch
        if arch == "narrow":
            self.backbone: nn.Module = NarrowVideoResNet(width)
            self.out_dim = self.backbone.out_dim
        elif arch in ("r3d_18", "r2plus1d_18"):
            backbone = getattr(video_models, arch)(weights=None)
            backbone.fc = nn.Identity()
            self.backbone = backbone
            self.out_dim = TORCHVISION_VIDEO_DIM
        else:
            raise ValueError(f"unknown video architecture {arch!r}; expected narrow, r3d_18 or r2plus1d_18")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, H, W), got shape {tuple(video.shape)}")
        return self.backbone(video)  # (B, out_dim)


class AudioEncoder(nn.Module):
    """Encode log-mel spectrograms (B, 1, n_mels, frames) into vectors (B, 8 * width).

    Four residual stages of widths (w, 2w, 4w, 8w), each but the first halving both axes, then global
    average pooling, so any spectrogram length is accepted.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages = [ResidualBlock(width, widths[0], stride=2, dims=2)]
        for in_channels, out_channels in zip(widths[:-1], widths[1:]):
            stages.append(ResidualBlock(in_channels, out_channels, stride=2, dims=2))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        if logmel.dim() != 4 or logmel.shape[1] != 1:
            raise ValueError(f"log-mel input must be (B, 1, n_mels, frames), got shape {tuple(logmel.shape)}")
        x = self.stages(self.stem(logmel))  # (B, 8w, M', F')
        return self.pool(x).flatten(1)  # (B, 8w)


def two_layer_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Build linear -> batch norm -> ReLU -> linear: the fusion MLP, and the BYOL projector and predictor."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class AVEncoder(nn.Module):
    """Run the video and/or audio branch and fuse their vectors into the joint embedding.

    In 'video' or 'audio' mode only that branch exists and the fusion MLP takes its vector alone, so every
    model exports a joint embedding. `forward` returns a dict with 'joint' plus one key per present branch.
    """

    def __init__(
        self,
        video: VideoEncoder | None,
        audio: AudioEncoder | None,
        fusion_hidden_dim: int,
        joint_dim: int,
    ) -> None:
        super().__init__()
        if video is None and audio is None:
            raise ValueError("AVEncoder needs a video encoder, an audio encoder, or both")
        self.video = video
        self.audio = audio
        fused_dim = 0
        if video is not None:
            fused_dim += video.out_dim
        if audio is not None:
            fused_dim += audio.out_dim
        self.fusion = two_layer_mlp(fused_dim, fusion_hidden_dim, joint_dim)
        self.joint_dim = joint_dim

    @property
    def modality(self) -> Modality:
        if self.video is not None and self.audio is not None:
            return "audio_video"
        return "video" if self.video is not None else "audio"

    @property
    def dims(self) -> dict[str, int]:
        """Size of each exported embedding, keyed like the output of `forward`."""
        sizes = {"joint": self.joint_dim}
        if self.video is not None:
            sizes["video"] = self.video.out_dim
        if self.audio is not None:
            sizes["audio"] = self.audio.out_dim
        return sizes

    def forward(
        self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        outputs: dict[str, torch.Tensor] = {}
        if self.video is not None:
            if video is None:
                raise ValueError(f"this {self.modality} encoder needs a video input")
            outputs["video"] = self.video(video)  # (B, Dv)
        if self.audio is not None:
            if audio is None:
                raise ValueError(f"this {self.modality} encoder needs an audio input")
            outputs["audio"] = self.audio(audio)  # (B, Da)

        fused = torch.cat([outputs[name] for name in ("video", "audio") if name in outputs], dim=1)  # (B, Dv + Da)
        outputs["joint"] = self.fusion(fused)  # (B, joint_dim)
        return outputs


def build_encoder(model: ModelConfig, modality: Modality) -> AVEncoder:
    """Build the untrained encoder that a model config and modality describe."""
    video = VideoEncoder(model.video_arch, model.video_width) if modality in ("video", "audio_video") else None
    audio = AudioEncoder(model.audio_width) if modality in ("audio", "audio_video") else None
    return AVEncoder(video, audio, fusion_hidden_dim=model.fusion_hidden_dim, joint_dim=model.joint_dim)
