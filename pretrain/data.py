"""The training loader: stream clips from a shard set and turn each into two augmented views.

Pipeline: `pretrain.clip_stream.numbered_clips` (resampled, so the stream never ends, and each worker of
each process reads its own share of the shards in its own seeded order) -> two views per clip (video through `VideoViewAugment`,
audio through `LogMel` then `AudioViewAugment` when the modality uses audio) -> batches with both views
stacked first: video (2, B, 3, T, S, S), audio (2, B, 1, n_mels, frames). With `data.local_views` N > 0
(DINO multi-crop) each clip also gives N smaller views: video_local (N, B, 3, T, s, s) and audio_local
(N, B, 1, n_mels, frames / 2).

The audio-shift model reads the shards through `ShiftedAudioClips` instead. Each clip gives one video
view and two audio views: its own audio and a time-shifted stretch of the same source. Batches are video
(1, B, 3, T, S, S) and audio (2, B, 1, n_mels, frames).

Every DataLoader worker of every process reads its own stream (see `pretrain.clip_stream`): its own share
of the shards, in an order seeded from the run seed, the rank and the worker id. The augmentations of
each clip come from a generator seeded from the stream and the clip's position in it. Each sample carries
`worker` and `position`, and a run resumed with the positions its checkpoint stores gets the very batches
an uninterrupted run would have got. Runs are reproducible for a fixed number of processes and workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pretrain.clip_stream import (
    NumberFrom,
    assign_shards,
    derive_seed,
    numbered_clips,
    raw_clip_stages,
    sample_generator,
    shards_are_shared,
    shuffle_stage,
)
from pretrain.config import DataConfig, MethodConfig
from pretrain.errors import PretrainError
from pretrain.shifted_audio import ShiftedAudioPairer, ShiftedPair
from shards.audio import AudioViewAugment, LogMel
from shards.augment import VideoViewAugment
from shards.read import SampleError, list_shards, read_index
from shards.sample_errors import SampleErrorLog

logger = logging.getLogger(__name__)

# Log the first few clips skipped for missing audio one by one, then one summary line per this many.
SKIP_LOG_FIRST = 5
SKIP_LOG_EVERY = 100

# A local audio view is a random stretch of this fraction of the clip's log-mel frames.
LOCAL_AUDIO_FRACTION = 0.5


__all__ = ["ShiftedAudioClips", "TwoViewClips", "build_train_loader", "check_shards", "derive_seed", "stack_views"]


class WorkerStream:
    """The stream of one DataLoader worker: its id, shards, seed and first position."""

    def __init__(self, dataset: TwoViewClips | ShiftedAudioClips) -> None:
        worker = get_worker_info()
        self.worker = worker.id if worker is not None else 0
        num_workers = worker.num_workers if worker is not None else 1
        self.urls = assign_shards(
            dataset.urls, rank=dataset.rank, world_size=dataset.world_size, worker=self.worker, num_workers=num_workers
        )
        self.seed = derive_seed(dataset.seed, dataset.rank, self.worker)
        self.start = int(dataset.start_positions.get(self.worker, 0))
        logger.info(
            "rank %d worker %d reads %d shard(s) from position %d: %s",
            dataset.rank, self.worker, len(self.urls), self.start, ", ".join(url.rsplit("/", 1)[-1] for url in self.urls),
        )


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
        world_size: int = 1,
        start_positions: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.urls = urls
        self.data = data
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        # Position of the first clip each worker yields, by worker id. A resumed run passes its checkpoint's.
        self.start_positions = dict(start_positions or {})
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
        self.local_video_augment = (
            VideoViewAugment(
                size=data.local_crop_size,
                scale=tuple(data.local_crop_scale),
                flip=data.flip,
                color_jitter=data.color_jitter,
                num_frames=data.num_frames,
            )
            if data.uses_video and data.local_views > 0
            else None
        )
        self.logmel = LogMel(n_mels=data.n_mels) if data.uses_audio else None
        self.audio_augment = AudioViewAugment() if data.uses_audio else None
        self.skipped_without_audio = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = WorkerStream(self)
        errors = SampleErrorLog()
        clips = numbered_clips(
            stream.urls, stream_seed=stream.seed, shuffle_buffer=self.data.shuffle_buffer, start=stream.start,
            errors=errors,
        )
        for position, clip in clips:
            if self.data.uses_audio and clip.audio is None:
                self._log_skip(clip.key, clip.meta.get("audio_missing_reason"))
                continue
            try:
                sample = self.make_views(clip, sample_generator(stream.seed, position))
            except SampleError as error:
                errors(error)  # a frame that fails to decode: counted and logged, and the stream goes on
                continue
            yield {**sample, "worker": stream.worker, "position": position}

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

        # Multi-crop: small views that only the student of DINO sees.
        local_views = self.data.local_views
        if local_views > 0 and self.local_video_augment is not None:
            views = [self.local_video_augment(clip.frames, generator) for _ in range(local_views)]
            sample["video_local"] = torch.stack(views)  # (N, 3, T, s, s)
        if local_views > 0 and self.logmel is not None:
            views = [self.audio_augment(local_audio_crop(logmel, generator), generator) for _ in range(local_views)]
            sample["audio_local"] = torch.stack(views)  # (N, 1, M, F')
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


def local_audio_crop(logmel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return a random stretch of `LOCAL_AUDIO_FRACTION` of the frames of a (1, M, F) log-mel spectrogram."""
    frames = logmel.shape[-1]
    length = max(1, round(frames * LOCAL_AUDIO_FRACTION))
    start = int(torch.randint(frames - length + 1, (), generator=generator))
    return logmel[..., start : start + length].clone()  # (1, M, length)


def stack_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples into a batch with the views first, e.g. video (2, B, 3, T, S, S), audio (2, B, 1, M, F).

    Stream positions stay plain ints (a list, and the worker id of the whole batch), so the trainer does
    not pass them to the model.
    """
    batch: dict[str, Any] = {"key": [sample["key"] for sample in samples]}
    if "position" in samples[0]:
        batch["position"] = [int(sample["position"]) for sample in samples]
        batch["worker"] = int(samples[0]["worker"])
    for name, value in samples[0].items():
        if isinstance(value, torch.Tensor):
            batch[name] = torch.stack([sample[name] for sample in samples], dim=1)
    return batch


class ShiftedAudioClips(IterableDataset):
    """An endless stream of `{"key", "video": (1, 3, T, S, S), "audio": (2, 1, M, F)}` for the audio-shift model.

    audio[0] is the clip's own audio and audio[1] audio of the same source shifted by `ShiftedAudioPairer`.
    Both audio views get independent gain and masking, so loudness cannot tell them apart. Clips are
    shuffled only after pairing, because pairing needs them in shard order. Clips without audio are
    skipped, counted and logged by the pairer.
    """

    def __init__(
        self,
        urls: list[str],
        data: DataConfig,
        method: MethodConfig,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_positions: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        if data.modality != "audio_video":
            raise ValueError(f"the audio-shift model needs data.modality 'audio_video', got {data.modality!r}")
        self.urls = urls
        self.data = data
        self.method = method
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_positions = dict(start_positions or {})
        self.video_augment = VideoViewAugment(
            size=data.crop_size,
            scale=tuple(data.crop_scale),
            flip=data.flip,
            color_jitter=data.color_jitter,
            num_frames=data.num_frames,
        )
        self.logmel = LogMel(n_mels=data.n_mels)
        self.audio_augment = AudioViewAugment()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = WorkerStream(self)
        # The pairer has a generator of its own, so the shifts it draws while a resumed run skips clips are
        # the ones an uninterrupted run drew.
        pairer_generator = torch.Generator().manual_seed(derive_seed(stream.seed, -1))
        pairer = ShiftedAudioPairer(self.method.shift_min_seconds, self.method.shift_max_seconds, pairer_generator)

        errors = SampleErrorLog()
        stages = [
            *raw_clip_stages(stream.urls, stream.seed, errors),
            pairer,
            *shuffle_stage(self.data.shuffle_buffer, stream.seed),
            NumberFrom(stream.start),
        ]
        for position, pair in wds.DataPipeline(*stages):
            try:
                sample = self.make_views(pair, sample_generator(stream.seed, position))
            except SampleError as error:
                errors(error)
                continue
            yield {**sample, "worker": stream.worker, "position": position}

    def make_views(self, pair: ShiftedPair, generator: torch.Generator) -> dict[str, Any]:
        """Return one video view and the augmented log-mels of the clip's own and its shifted audio."""
        video = self.video_augment(pair.clip.frames, generator)  # (3, T, S, S)
        audio = torch.from_numpy(np.stack([pair.clip.audio, pair.shifted_audio]))  # (2, S)
        logmels = self.logmel(audio)  # (2, 1, M, F)
        return {
            "key": pair.clip.key,
            "video": video.unsqueeze(0),  # (1, 3, T, S, S)
            "audio": torch.stack([self.audio_augment(logmel, generator) for logmel in logmels]),  # (2, 1, M, F)
        }


def count_clips_with_audio(shards_dir: str) -> tuple[int, int]:
    """Return (clips with audio, all clips) of a shard set from its index, reading no tar file."""
    index = read_index(shards_dir)
    total = int(index["num_clips"])
    with_audio = 0
    for source in index.get("sources", []):
        if source.get("has_audio"):
            with_audio += int(source.get("num_clips", 0))
    return with_audio, total


def check_shards(data: DataConfig, method: MethodConfig | None = None) -> list[str]:
    """Check the shard set can feed this modality and method; return its shard paths or raise `PretrainError`."""
    urls = list_shards(data.shards)
    if not urls:
        raise PretrainError(f"shard set {data.shards} contains no shard files")
    if method is not None and method.name == "audio_shift":
        check_shift_reach(data.shards, method)
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


def check_shift_reach(shards_dir: str, method: MethodConfig) -> None:
    """Raise `PretrainError` when no shard contains enough consecutive clips for any audio shift in range.

    Shifted audio is assembled from neighbouring clips inside one shard. With k clips per shard every
    `stride` seconds, the reachable shifts are at most (k - 1) x stride, and with gaps between clips only
    whole strides fit. Without this check the stream would skip every clip and training would wait forever.
    """
    index = read_index(shards_dir)
    stride = float(index.get("stride_seconds") or index.get("clip_seconds") or 0.0)
    most_clips = max((int(shard.get("num_clips", 0)) for shard in index["shards"]), default=0)
    reach = (most_clips - 1) * stride
    if most_clips < 2 or stride > method.shift_max_seconds or reach < method.shift_min_seconds:
        raise PretrainError(
            f"shard set {shards_dir} cannot give audio shifts of {method.shift_min_seconds}-"
            f"{method.shift_max_seconds} s: shifted audio comes from neighbouring clips in a shard, and its shards "
            f"contain at most {most_clips} clip(s) {stride} s apart; rebuild it with more --clips-per-shard and a "
            "--stride-seconds below method.shift_max_seconds"
        )


def build_train_loader(
    urls: list[str],
    data: DataConfig,
    *,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int = 1,
    start_positions: dict[int, int] | None = None,
    pin_memory: bool,
    method: MethodConfig | None = None,
) -> DataLoader:
    """Build the endless DataLoader of view batches for one training process.

    The audio-shift method gets pairs of in-sync and shifted audio; every other method gets two views per
    clip, plus local views when `data.local_views` > 0. `start_positions` (worker id -> stream position)
    continues each worker's stream where a checkpoint left it.
    """
    workers = max(data.num_workers, 1)
    if rank == 0 and shards_are_shared(urls, world_size=world_size, num_workers=workers):
        logger.warning(
            "%d shard(s) for %d process(es) x %d worker(s): every stream draws from all shards, so processes "
            "may read the same clips in one step; build at least %d shards to give each its own",
            len(urls), world_size, workers, world_size * workers,
        )
    dataset: IterableDataset
    common = {"seed": seed, "rank": rank, "world_size": world_size, "start_positions": start_positions}
    if method is not None and method.name == "audio_shift":
        dataset = ShiftedAudioClips(urls, data, method, **common)
    else:
        dataset = TwoViewClips(urls, data, **common)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=data.num_workers,
        collate_fn=stack_views,
        pin_memory=pin_memory,
        persistent_workers=data.num_workers > 0,
        drop_last=True,
        # A generator of its own, so that starting the workers draws nothing from the global generator that
        # checkpoints restore.
        generator=torch.Generator().manual_seed(seed),
    )
