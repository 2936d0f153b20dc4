"""The training loader: stream clips from a shard set and turn each into two augmented views.

Pipeline: `shards.stream.stream_clips` (resampled, so the stream never ends and every worker of every
process reads all shards in its own random order) -> two views per clip (video through `VideoViewAugment`,
audio through `LogMel` then `AudioViewAugment` when the modality uses audio) -> batches with both views
stacked first: video (2, B, 3, T, S, S), audio (2, B, 1, n_mels, frames).

Each worker draws its augmentations from its own `torch.Generator`, seeded from the run seed, the process
rank, the worker id and the step the run starts at. Runs are therefore reproducible for a fixed number of
workers, and a resumed run does not replay the augmentations of its first steps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pretrain.config import DataConfig
from pretrain.errors import PretrainError
from shards.audio import AudioViewAugment, LogMel
from shards.augment import VideoViewAugment
from shards.read import list_shards, read_index
from shards.stream import stream_clips

logger = logging.getLogger(__name__)

# Log the first few clips skipped for missing audio one by one, then one summary line per this many.
SKIP_LOG_FIRST = 5
SKIP_LOG_EVERY = 100


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed, so that (seed, rank, worker, step) tuples never share a stream."""
    sequence = np.random.SeedSequence([int(part) % 2**63 for part in parts])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


class TwoViewClips(IterableDataset):
    """An endless stream of samples `{"key", "video": (2, 3, T, S, S), "audio": (2, 1, M, F)}` per clip.

    A clip without audio in an audio modality is skipped, counted and logged with its key, because an
    encoder that expects audio cannot use it.
    """

    def __init__(
        self,
        urls: list[str],
        data: DataConfig,
        *,
        seed: int,
        rank: int = 0,
        start_step: int = 0,
    ) -> None:
        super().__init__()
        self.urls = urls
        self.data = data
        self.seed = seed
        self.rank = rank
        self.start_step = start_step
        self.video_augment = (
            VideoViewAugment(
                size=data.crop_size,
                scale=tuple(data.crop_scale),
                flip=data.flip,
                color_jitter=data.color_jitter,
                num_frames=data.num_frames,
            )
            if data.uses_video
            else None
        )
        self.logmel = LogMel(n_mels=data.n_mels) if data.uses_audio else None
        self.audio_augment = AudioViewAugment() if data.uses_audio else None
        self.skipped_without_audio = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        stream_seed = derive_seed(self.seed, self.rank, worker_id, self.start_step)
        generator = torch.Generator().manual_seed(stream_seed)

        clips = stream_clips(self.urls, seed=stream_seed, shuffle_buffer=self.data.shuffle_buffer, resampled=True)
        for clip in clips:
            if self.data.uses_audio and clip.audio is None:
                self._log_skip(clip.key, clip.meta.get("audio_missing_reason"))
                continue
            yield self.make_views(clip, generator)

    def make_views(self, clip: Any, generator: torch.Generator) -> dict[str, Any]:
        """Return two independently augmented views of one clip, stacked along a new first axis."""
        sample: dict[str, Any] = {"key": clip.key}
        if self.video_augment is not None:
            views = [self.video_augment(clip.frames, generator) for _ in range(2)]
            sample["video"] = torch.stack(views)  # (2, 3, T, S, S)
        if self.logmel is not None:
            logmel = self.logmel(torch.from_numpy(np.ascontiguousarray(clip.audio)))  # (1, M, F)
            views = [self.audio_augment(logmel, generator) for _ in range(2)]
            sample["audio"] = torch.stack(views)  # (2, 1, M, F)
        return sample

    def _log_skip(self, key: str, reason: str | None) -> None:
        self.skipped_without_audio += 1
        count = self.skipped_without_audio
        if count <= SKIP_LOG_FIRST or count % SKIP_LOG_EVERY == 0:
            logger.warning(
                "skipped clip %s: data.modality %r needs audio and it has none (%s); %d skipped so far by this worker",
                key,
                self.data.modality,
                reason or "no reason recorded",
                count,
            )


def stack_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples into a batch with the two views first: video (2, B, 3, T, S, S), audio (2, B, 1, M, F)."""
    batch: dict[str, Any] = {"key": [sample["key"] for sample in samples]}
    for modality in ("video", "audio"):
        if modality in samples[0]:
            batch[modality] = torch.stack([sample[modality] for sample in samples], dim=1)
    return batch


def count_clips_with_audio(shards_dir: str) -> tuple[int, int]:
    """Return (clips with audio, all clips) of a shard set from its index, reading no tar file."""
    index = read_index(shards_dir)
    total = int(index["num_clips"])
    with_audio = 0
    for source in index.get("sources", []):
        if source.get("has_audio"):
            with_audio += int(source.get("num_clips", 0))
    return with_audio, total


def check_shards(data: DataConfig) -> list[str]:
    """Check the shard set can feed this modality and return its shard paths; raise `PretrainError` if not."""
    urls = list_shards(data.shards)
    if not urls:
        raise PretrainError(f"shard set {data.shards} contains no shard files")
    if data.uses_audio:
        with_audio, total = count_clips_with_audio(data.shards)
        if with_audio == 0:
            raise PretrainError(
                f"data.modality {data.modality!r} needs audio, but none of the {total} clips in {data.shards} "
                "has audio; use data.modality=video for silent footage"
            )
        if with_audio < total:
            logger.warning(
                "%d of %d clips in %s have no audio and will be skipped for data.modality %r",
                total - with_audio,
                total,
                data.shards,
                data.modality,
            )
    return urls


def build_train_loader(
    urls: list[str], data: DataConfig, *, batch_size: int, seed: int, rank: int, start_step: int, pin_memory: bool
) -> DataLoader:
    """Build the endless DataLoader of two-view batches for one training process."""
    dataset = TwoViewClips(urls, data, seed=seed, rank=rank, start_step=start_step)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=data.num_workers,
        collate_fn=stack_views,
        pin_memory=pin_memory,
        persistent_workers=data.num_workers > 0,
        drop_last=True,
    )
