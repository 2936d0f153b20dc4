"""Export frozen embeddings of every clip in a shard set: the embeddings folder that `detect` reads.

The encoder is rebuilt from the config stored in the checkpoint and runs in eval mode without gradients.
Its inputs are deterministic: `video_eval_tensor` spreads frames evenly over the clip and resizes the whole
frame so its shorter side is `data.crop_size`, and audio becomes the log-mel spectrogram of the clip. Rows follow the stored
order of the shard set, and row i of `embeddings.npy` is line i of `meta.jsonl`.

For an audio-shift checkpoint exported with `--modality joint`, the folder also contains `energy.npy`:
float32 (N,), row i the model's energy of clip i with its own in-sync audio, the same value as
`AudioShift.energy`. Higher energy means the model finds the sound less in sync with the picture, so it
is an anomaly score of its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pretrain.checkpoint import load_checkpoint
from pretrain.config import ConfigError, PretrainConfig, config_from_dict
from pretrain.encoders import AVEncoder
from pretrain.errors import CheckpointError, PretrainError
from pretrain.methods import METHODS
from shards.audio import LogMel
from shards.augment import video_eval_tensor
from shards.read import iter_clips, read_index

logger = logging.getLogger(__name__)

EMBEDDINGS_FORMAT_VERSION = 1
EmbedModality = Literal["joint", "video", "audio"]
META_FIELDS = ("key", "source", "source_name", "start_s", "end_s", "fps", "frame_indices", "frame_labels", "label")


def load_encoder(checkpoint: str | os.PathLike) -> tuple[AVEncoder, PretrainConfig, dict[str, Any]]:
    """Rebuild the online encoder of a checkpoint from its stored config and weights; return it with both."""
    method, config, payload = load_method(checkpoint)
    return method.encoder, config, payload


def load_method(checkpoint: str | os.PathLike) -> tuple[nn.Module, PretrainConfig, dict[str, Any]]:
    """Rebuild a checkpoint's whole method (encoder and heads) from its stored config and weights."""
    payload = load_checkpoint(checkpoint)
    method_name = payload["method"]
    if method_name not in METHODS:
        raise CheckpointError(
            f"checkpoint {checkpoint} was written by method {method_name!r}, which this version does not know; "
            f"known methods: {', '.join(METHODS)}"
        )
    try:
        config = config_from_dict(PretrainConfig, payload["config"])
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {checkpoint} stores a config this version cannot read: {error}") from error

    method = METHODS[method_name].from_config(config)
    try:
        method.load_state_dict(payload["model"])
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {checkpoint} weights do not match its stored config: {reason}") from error
    return method, config, payload


def embed_shards(
    checkpoint: str | os.PathLike,
    shards_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    modality: EmbedModality = "joint",
    batch_size: int = 16,
    dtype: Literal["float32", "float16"] = "float32",
    device: str | torch.device | None = None,
) -> Path:
    """Embed every clip of `shards_dir` with the checkpoint's encoder and write the embeddings folder `out_dir`."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise PretrainError(f"output folder {out_dir} already exists; remove it or choose another --out")
    if batch_size < 1:
        raise PretrainError(f"--batch-size must be at least 1, got {batch_size}")
    index = read_index(shards_dir)

    method, config, payload = load_method(checkpoint)
    encoder = method.encoder
    if modality not in encoder.dims:
        raise PretrainError(
            f"checkpoint {checkpoint} has no {modality} embedding: its model was trained on "
            f"{config.data.modality!r} and exports {', '.join(sorted(encoder.dims))}"
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    method = method.to(device).eval()
    energy_head = energy_head_of(method, modality)
    embedder = ClipEmbedder(encoder, config, modality, device, energy_head=energy_head)

    rows: list[np.ndarray] = []
    energy_rows: list[np.ndarray] = []
    meta_lines: list[str] = []
    pending: list[Any] = []
    skipped = 0
    progress = tqdm(total=int(index["num_clips"]), desc="embed", unit="clip", dynamic_ncols=True)
    for clip in iter_clips(shards_dir):
        progress.update(1)
        if embedder.needs_audio and clip.audio is None:
            skipped += 1
            logger.warning("skipped clip %s: the %s embedding needs audio and the clip has none", clip.key, modality)
            continue
        # Clips of one batch must share their input shape; sources with other frame sizes start a new batch.
        batch_full = len(pending) == batch_size
        if pending and (batch_full or embedder.input_shape(clip) != embedder.input_shape(pending[0])):
            embed_batch(embedder, pending, rows, energy_rows)
            pending = []
        pending.append(clip)
        meta_lines.append(json.dumps({field: clip_meta_value(clip, field) for field in META_FIELDS}))
    if pending:
        embed_batch(embedder, pending, rows, energy_rows)
    progress.close()

    if not rows:
        raise PretrainError(f"no clip of {shards_dir} could be embedded ({skipped} skipped for missing audio)")
    if skipped:
        logger.warning("skipped %d of %d clips without audio", skipped, index["num_clips"])
    embeddings = np.concatenate(rows).astype(dtype)  # (N, D)
    header = {
        "format_version": EMBEDDINGS_FORMAT_VERSION,
        "encoder": encoder_name(payload, config),
        "checkpoint": str(Path(checkpoint).resolve()),
        "modality": modality,
        "seed": config.run.seed,  # the pretraining run's seed, so evaluations over seeds can be labelled
        "dimension": int(embeddings.shape[1]),
        "count": int(embeddings.shape[0]),
        "dtype": dtype,
    }
    energy = np.concatenate(energy_rows).astype(np.float32) if energy_rows else None  # (N,)
    write_embeddings_folder(out_dir, embeddings, meta_lines, header, energy=energy)
    logger.info("wrote %d x %d %s embeddings to %s", embeddings.shape[0], embeddings.shape[1], modality, out_dir)
    return out_dir


def energy_head_of(method: nn.Module, modality: EmbedModality) -> nn.Module | None:
    """Return the audio-shift model's energy layer when `energy.npy` can be written, else None.

    The energy needs the joint embedding of a clip with its own audio, so it comes with `--modality joint`.
    """
    if getattr(method, "name", None) != "audio_shift":
        return None
    if modality != "joint":
        logger.info("energy.npy is written with --modality joint only, so this %s export has none", modality)
        return None
    return method.online["energy_head"]


def embed_batch(
    embedder: ClipEmbedder, clips: list[Any], rows: list[np.ndarray], energy_rows: list[np.ndarray]
) -> None:
    """Embed one batch and append its embeddings (and energies, for an audio-shift model) to the lists."""
    embeddings, energy = embedder.embed_with_energy(clips)
    rows.append(embeddings)
    if energy is not None:
        energy_rows.append(energy)


class ClipEmbedder:
    """Turn decoded clips into encoder inputs and run one frozen forward pass per batch."""

    def __init__(
        self,
        encoder: AVEncoder,
        config: PretrainConfig,
        modality: EmbedModality,
        device: torch.device,
        *,
        energy_head: nn.Module | None = None,
    ) -> None:
        self.encoder = encoder
        # The audio-shift model's last layer: joint embedding -> energy, low when the audio is in sync.
        self.energy_head = energy_head
        self.config = config
        self.modality = modality
        self.device = device
        # The joint embedding needs every branch of the model; a branch embedding needs only itself.
        self.needs_video = modality == "video" or (modality == "joint" and encoder.video is not None)
        self.needs_audio = modality == "audio" or (modality == "joint" and encoder.audio is not None)
        self.logmel = LogMel(n_mels=config.data.n_mels) if self.needs_audio else None

    def video_input(self, clip: Any) -> torch.Tensor:
        data = self.config.data
        return video_eval_tensor(clip.frames, num_frames=data.num_frames, short_side=data.crop_size)

    def input_shape(self, clip: Any) -> tuple:
        """Shape key of a clip's inputs, without decoding more than the frame array's shape."""
        return (clip.frames.shape[1:3] if self.needs_video else None, len(clip.audio) if self.needs_audio else None)

    def embed(self, clips: list[Any]) -> np.ndarray:
        """Return the (B, D) float32 embeddings of clips that share an input shape."""
        return self.embed_with_energy(clips)[0]

    @torch.no_grad()
    def embed_with_energy(self, clips: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the (B, D) float32 embeddings and, with an energy head, the (B,) float32 energies."""
        video = audio = None
        if self.needs_video:
            video = torch.stack([self.video_input(clip) for clip in clips]).to(self.device)  # (B, 3, T, H, W)
        if self.needs_audio:
            waves = torch.stack([torch.from_numpy(np.ascontiguousarray(clip.audio)) for clip in clips])  # (B, S)
            audio = self.logmel(waves).to(self.device)  # (B, 1, M, F)

        if self.modality == "video":
            output = self.encoder.video(video)  # (B, Dv)
        elif self.modality == "audio":
            output = self.encoder.audio(audio)  # (B, Da)
        else:
            output = self.encoder(video=video, audio=audio)["joint"]  # (B, joint_dim)

        energy = None
        if self.energy_head is not None:
            energy = self.energy_head(output).squeeze(-1).float().cpu().numpy()  # (B,)
        return output.float().cpu().numpy(), energy


def clip_meta_value(clip: Any, field: str) -> Any:
    """Return a meta.jsonl field of a clip; the key comes from the clip itself."""
    if field == "key":
        return clip.key
    return clip.meta.get(field)


def encoder_name(payload: dict[str, Any], config: PretrainConfig) -> str:
    """Name the encoder for the header, e.g. 'byol narrow video (step 1500)'."""
    arch = config.model.video_arch if config.data.uses_video else "audio-cnn"
    return f"{payload['method']} {arch} {config.data.modality} (step {payload['step']})"


def write_embeddings_folder(
    out_dir: Path, embeddings: np.ndarray, meta_lines: list[str], header: dict, *, energy: np.ndarray | None = None
) -> None:
    """Write the files into a temporary folder beside `out_dir`, then rename it to `out_dir`.

    `energy` (N,) float32, when given, becomes energy.npy with row i belonging to line i of meta.jsonl.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        np.save(temporary / "embeddings.npy", embeddings, allow_pickle=False)
        if energy is not None:
            np.save(temporary / "energy.npy", energy, allow_pickle=False)
        (temporary / "meta.jsonl").write_text("".join(line + "\n" for line in meta_lines), encoding="utf-8")
        (temporary / "header.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, out_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
