"""The pretraining config: one frozen dataclass per section, loaded from YAML plus `section.key=value` overrides.

Defaults here are the only defaults: YAML files under configs/pretrain/ set what differs from them. Range
checks live in each section's `__post_init__` so a bad value fails at load time with the key's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pretrain.errors import ConfigError
from pretrain.typed_config import (
    config_field,
    config_from_dict,
    config_to_dict,
    describe_config,
    format_config_help,
    load_config,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "ProbeConfig",
    "RunConfig",
    "config_from_dict",
    "config_to_dict",
    "describe_config",
    "format_config_help",
    "load_config",
]

Modality = Literal["video", "audio", "audio_video"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """Input clips and the augmentations that turn each clip into two views."""

    shards: str = config_field(help="shard set folder written by `latentwatch shards build` (required)")
    modality: Modality = config_field(
        "video",
        help="inputs the encoder sees: 'video' for footage without sound, 'audio', or 'audio_video'",
    )
    num_frames: int = config_field(8, help="frames per video view, sampled across the clip; 4-16")
    crop_size: int = config_field(
        112, help="side in pixels of the square random resized crop; 112 for the video ResNets, 48-96 on CPU"
    )
    crop_scale: tuple[float, float] = config_field(
        (0.3, 1.0), help="min and max area fraction of the random resized crop; (0.08-0.5, 1.0)"
    )
    flip: float = config_field(0.5, help="probability of a horizontal flip per view; 0-1")
    color_jitter: float = config_field(
        0.4, help="strength of brightness/contrast/saturation jitter, the same for all frames of a view; 0-0.8"
    )
    n_mels: int = config_field(64, help="mel bands of the log-mel spectrogram for audio views; 64-128")
    num_workers: int = config_field(
        2, help="DataLoader worker processes per training process; 0 decodes in the main process"
    )
    shuffle_buffer: int = config_field(
        64, help="clips held in the streaming shuffle buffer; 64-1000 (larger mixes better, costs memory)"
    )
    local_views: int = config_field(
        0, help="small local views per clip besides the two global ones (DINO multi-crop, student only); 0 or 2-10"
    )
    local_crop_size: int = config_field(
        48, help="side in pixels of each local view, about half of crop_size; 16 or more"
    )
    local_crop_scale: tuple[float, float] = config_field(
        (0.05, 0.3), help="min and max area fraction of the local views' random resized crop; (0.05, 0.3-0.4)"
    )

    def __post_init__(self) -> None:
        _require(self.num_frames >= 1, f"data.num_frames must be at least 1, got {self.num_frames}")
        _require(self.crop_size >= 16, f"data.crop_size must be at least 16 pixels, got {self.crop_size}")
        low, high = self.crop_scale
        _require(
            0.0 < low <= high <= 1.0, f"data.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}"
        )
        _require(0.0 <= self.flip <= 1.0, f"data.flip is a probability in [0, 1], got {self.flip}")
        _require(0.0 <= self.color_jitter < 1.0, f"data.color_jitter must be in [0, 1), got {self.color_jitter}")
        _require(self.n_mels >= 8, f"data.n_mels must be at least 8, got {self.n_mels}")
        _require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        _require(self.shuffle_buffer >= 1, f"data.shuffle_buffer must be at least 1, got {self.shuffle_buffer}")
        _require(self.local_views >= 0, f"data.local_views must be >= 0, got {self.local_views}")
        _require(
            self.local_crop_size >= 16, f"data.local_crop_size must be at least 16 pixels, got {self.local_crop_size}"
        )
        low, high = self.local_crop_scale
        _require(
            0.0 < low <= high <= 1.0,
            f"data.local_crop_scale must satisfy 0 < min <= max <= 1, got {self.local_crop_scale}",
        )

    @property
    def uses_video(self) -> bool:
        return self.modality in ("video", "audio_video")

    @property
    def uses_audio(self) -> bool:
        return self.modality in ("audio", "audio_video")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder architecture and embedding sizes."""

    video_arch: Literal["narrow", "r3d_18", "r2plus1d_18"] = config_field(
        "narrow",
        help="video encoder: 'narrow' (small 3D ResNet for CPU) or torchvision's 'r3d_18' / 'r2plus1d_18' (GPU)",
    )
    video_width: int = config_field(
        16, help="channels of the first 'narrow' stage, doubled per stage (output 8x); 8-32; ignored otherwise"
    )
    audio_width: int = config_field(
        16, help="channels of the first audio CNN stage, doubled per stage (output 8x); 8-64"
    )
    fusion_hidden_dim: int = config_field(512, help="hidden width of the fusion MLP; 128-2048")
    joint_dim: int = config_field(256, help="size of the joint embedding, the representation; 64-1024")

    def __post_init__(self) -> None:
        _require(self.video_width >= 1, f"model.video_width must be >= 1, got {self.video_width}")
        _require(self.audio_width >= 1, f"model.audio_width must be >= 1, got {self.audio_width}")
        _require(self.fusion_hidden_dim >= 1, f"model.fusion_hidden_dim must be >= 1, got {self.fusion_hidden_dim}")
        _require(self.joint_dim >= 1, f"model.joint_dim must be >= 1, got {self.joint_dim}")


@dataclass(frozen=True)
class MethodConfig:
    """The self-supervised objective and its heads."""

    name: Literal["byol", "dino", "audio_shift"] = config_field(
        "byol",
        help="self-supervised method: 'byol', 'dino' (self-distillation with multi-crop) or 'audio_shift' "
        "(audio-visual sync energy; needs audio_video)",
    )
    projector_hidden_dim: int = config_field(
        4096, help="hidden width of the projector MLP; 4096 in BYOL, 256-1024 on CPU"
    )
    projector_dim: int = config_field(256, help="output size of the projector and predictor; 64-256")
    predictor_hidden_dim: int = config_field(
        4096, help="hidden width of the predictor MLP; 4096 in BYOL, 256-1024 on CPU"
    )
    tau_base: float = config_field(
        0.99,
        help="starting EMA momentum of the target network, raised to 1 by a cosine; 0.99-0.999 "
        "(below 0.98 the target chases the online network and training is unstable)",
    )
    cross_modal_weight: float = config_field(
        0.0,
        help="weight of the cross-modal term (video view predicts the audio target and back), added to the "
        "joint term; needs audio_video; 0 disables, 0.5-1 typical",
    )
    head_hidden_dim: int = config_field(2048, help="DINO: hidden width of the 3-layer head MLP; 2048, 256-512 on CPU")
    head_bottleneck_dim: int = config_field(
        256, help="DINO: size of the L2-normalised bottleneck before the last layer; 64-256"
    )
    head_out_dim: int = config_field(
        4096, help="DINO: K, the number of prototypes the softmax runs over; 4096-65536, 256-1024 on CPU"
    )
    student_temp: float = config_field(0.1, help="DINO: softmax temperature of the student; 0.1")
    teacher_temp: float = config_field(
        0.07, help="DINO: teacher temperature after warm-up; 0.04-0.07 (above 0.07 training tends to collapse)"
    )
    teacher_temp_start: float = config_field(
        0.04, help="DINO: teacher temperature at step 0, raised linearly to teacher_temp; 0.04"
    )
    teacher_temp_warmup_steps: int = config_field(
        300, help="DINO: optimiser steps of the linear teacher temperature warm-up; about 5-30% of total_steps"
    )
    center_momentum: float = config_field(
        0.9, help="DINO: EMA momentum of the centre subtracted from teacher outputs; 0.9-0.99"
    )
    shift_min_seconds: float = config_field(
        0.5, help="audio_shift: smallest time shift of the out-of-sync audio, in seconds; 0.3-1"
    )
    shift_max_seconds: float = config_field(
        2.5, help="audio_shift: largest time shift of the out-of-sync audio, either direction, in seconds; 1-5"
    )

    def __post_init__(self) -> None:
        for name in ("head_hidden_dim", "head_bottleneck_dim", "head_out_dim"):
            value = getattr(self, name)
            _require(value >= 1, f"method.{name} must be >= 1, got {value}")
        for name in ("student_temp", "teacher_temp", "teacher_temp_start"):
            value = getattr(self, name)
            _require(value > 0.0, f"method.{name} must be > 0, got {value}")
        _require(
            self.teacher_temp_warmup_steps >= 0,
            f"method.teacher_temp_warmup_steps must be >= 0, got {self.teacher_temp_warmup_steps}",
        )
        _require(
            0.0 <= self.center_momentum < 1.0, f"method.center_momentum must be in [0, 1), got {self.center_momentum}"
        )
        _require(
            0.0 < self.shift_min_seconds <= self.shift_max_seconds,
            "method.shift_min_seconds and shift_max_seconds must satisfy 0 < min <= max, got "
            f"{self.shift_min_seconds} and {self.shift_max_seconds}",
        )
        for name in ("projector_hidden_dim", "projector_dim", "predictor_hidden_dim"):
            value = getattr(self, name)
            _require(value >= 1, f"method.{name} must be >= 1, got {value}")
        _require(0.0 <= self.tau_base < 1.0, f"method.tau_base must be in [0, 1), got {self.tau_base}")
        _require(
            self.cross_modal_weight >= 0.0, f"method.cross_modal_weight must be >= 0, got {self.cross_modal_weight}"
        )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay, counted in optimiser steps."""

    lr: float = config_field(
        1e-3, help="peak learning rate after warm-up; 1e-4 to 3e-3 for AdamW at batch 32-256"
    )
    min_lr_ratio: float = config_field(0.01, help="final learning rate as a fraction of lr; 0-0.1")
    weight_decay: float = config_field(1e-4, help="AdamW decoupled weight decay; 0-0.1")
    warmup_steps: int = config_field(100, help="optimiser steps of linear warm-up from 0 to lr; 1-10% of total")
    total_steps: int = config_field(1000, help="optimiser steps of the whole run (micro-batches / grad_accumulation)")
    batch_size: int = config_field(
        32, help="clips per micro-batch per process (each gives two views); BYOL works from 16, better at 256+"
    )
    grad_accumulation: int = config_field(
        1, help="micro-batches summed per optimiser step; effective batch = batch_size x this x processes"
    )
    grad_clip: float = config_field(
        1.0, help="maximum global L2 norm of the gradients before each step; 0 disables; 0.5-5 typical"
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = config_field(
        "no", help="autocast precision: 'no' (CPU), 'bf16' (Ampere or newer GPUs), 'fp16' (older GPUs)"
    )

    def __post_init__(self) -> None:
        _require(self.lr > 0.0, f"optim.lr must be > 0, got {self.lr}")
        _require(0.0 <= self.min_lr_ratio <= 1.0, f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        _require(self.weight_decay >= 0.0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.total_steps >= 1, f"optim.total_steps must be at least 1, got {self.total_steps}")
        _require(
            0 <= self.warmup_steps <= self.total_steps,
            f"optim.warmup_steps must be in [0, total_steps={self.total_steps}], got {self.warmup_steps}",
        )
        _require(self.batch_size >= 2, f"optim.batch_size must be at least 2 (batch norm), got {self.batch_size}")
        _require(self.grad_accumulation >= 1, f"optim.grad_accumulation must be >= 1, got {self.grad_accumulation}")
        _require(self.grad_clip >= 0.0, f"optim.grad_clip must be >= 0, got {self.grad_clip}")


@dataclass(frozen=True)
class RunConfig:
    """Run folder, seed, logging and checkpoint schedule."""

    out_dir: str = config_field("runs/byol", help="run folder; written as OUT_DIR.partial until training ends")
    seed: int = config_field(0, help="seed of model initialisation, augmentations and shard shuffling")
    log_every: int = config_field(10, help="optimiser steps between log.jsonl lines; 1-100")
    checkpoint_every: int = config_field(
        500, help="optimiser steps between writes of checkpoints/last.pt (also written at the end)"
    )
    wandb_mode: Literal["offline", "online", "disabled"] = config_field(
        "offline", help="Weights & Biases mode; 'offline' writes under the run folder, 'disabled' skips wandb"
    )
    wandb_project: str = config_field("latentwatch", help="Weights & Biases project name")

    def __post_init__(self) -> None:
        _require(bool(self.out_dir.strip()), "run.out_dir must not be empty")
        _require(self.log_every >= 1, f"run.log_every must be at least 1, got {self.log_every}")
        _require(self.checkpoint_every >= 1, f"run.checkpoint_every must be at least 1, got {self.checkpoint_every}")


@dataclass(frozen=True)
class ProbeConfig:
    """Optional online kNN probe: how well the current encoder groups labelled held-out clips, every N steps.

    A clip's class is its `label` metadata, or its source video's file name when `label` is null. The
    probe embeds both shard sets with the online encoder in eval mode, as `latentwatch embed` does, and
    logs `probe/knn_top1`: the top-1 accuracy of DINO's weighted kNN vote of each query clip over the bank.
    """

    every: int = config_field(0, help="optimiser steps between probes; 0 disables the probe")
    bank_shards: str = config_field("", help="labelled shard set the probe votes with; a few hundred clips at most")
    query_shards: str = config_field(
        "", help="held-out labelled shard set the probe classifies; other time spans or videos than the bank"
    )
    k: int = config_field(20, help="neighbours per vote; 10-50")
    temperature: float = config_field(0.07, help="vote weight exp(cosine similarity / temperature); 0.07")

    def __post_init__(self) -> None:
        _require(self.every >= 0, f"probe.every must be >= 0, got {self.every}")
        _require(self.k >= 1, f"probe.k must be >= 1, got {self.k}")
        _require(self.temperature > 0.0, f"probe.temperature must be > 0, got {self.temperature}")
        if self.every > 0:
            _require(
                bool(self.bank_shards.strip()) and bool(self.query_shards.strip()),
                "probe.every > 0 needs probe.bank_shards and probe.query_shards",
            )


@dataclass(frozen=True)
class PretrainConfig:
    """Everything one pretraining run needs; saved resolved as the run folder's config.yaml."""

    data: DataConfig = config_field(help="input clips and augmentations")
    model: ModelConfig = config_field(help="encoders", default_factory=ModelConfig)
    method: MethodConfig = config_field(help="self-supervised objective", default_factory=MethodConfig)
    optim: OptimConfig = config_field(help="optimiser and schedule", default_factory=OptimConfig)
    run: RunConfig = config_field(help="run folder, seed and logging", default_factory=RunConfig)
    probe: ProbeConfig = config_field(help="optional online kNN probe", default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        if self.method.name == "audio_shift":
            _require(
                self.data.modality == "audio_video",
                f"method.name 'audio_shift' needs data.modality 'audio_video', got {self.data.modality!r}",
            )
        if self.data.local_views > 0:
            _require(
                self.method.name == "dino",
                f"data.local_views > 0 is used by method 'dino' only, got method.name {self.method.name!r}; "
                "set data.local_views=0",
            )
        if self.method.cross_modal_weight > 0.0:
            _require(
                self.data.modality == "audio_video",
                "method.cross_modal_weight > 0 needs data.modality 'audio_video', "
                f"got {self.data.modality!r}",
            )
