"""The training loader: stream clips from a shard set and turn each into two augmented views.

Pipeline: `shards.stream.stream_clips` (resampled, so the stream never ends and every worker of every
process reads all shards in its own random order) -> two views per clip (video through `VideoViewAugment`,
audio through `LogMel` then `AudioViewAugment` when the modality uses audio) -> batches with both views
stacked first: video (2, B, 3, T, S, S), audio (2, B, 1, n_mels, frames). With `data.local_views` N > 0
(DINO multi-crop) each clip also gives N smaller views: video_local (N, B, 3, T, s, s) and audio_local
(N, B, 1, n_mels, frames / 2).

The audio-shift model reads the shards through `ShiftedAudioClips` instead. Each clip gives one video
view and two audio views: its own audio and a time-shifted stretch of the same source. Batches are video
(1, B, 3, T, S, S) and audio (2, B, 1, n_mels, frames).

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
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pretrain.config import DataConfig, MethodConfig
from pretrain.errors import PretrainError
from pretrain.shifted_audio import ShiftedAudioPairer, ShiftedPair
from shards.audio import AudioViewAugment, LogMel
from shards.augment import VideoViewAugment
from shards.read import decode_sample, list_shards, read_index
from shards.sample_errors import SampleErrorLog
from shards.stream import stream_clips

logger = logging.getLogger(__name__)

# Log the first few clips skipped for missing audio one by one, then one summary line per this many.
SKIP_LOG_FIRST = 5
SKIP_LOG_EVERY = 100

# A local audio view is a random stretch of this fraction of the clip's log-mel frames.
LOCAL_AUDIO_FRACTION = 0.5


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
    """Collate samples into a batch with the views first, e.g. video (2, B, 3, T, S, S), audio (2, B, 1, M, F)."""
    batch: dict[str, Any] = {"key": [sample["key"] for sample in samples]}
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
        start_step: int = 0,
    ) -> None:
        super().__init__()
        if data.modality != "audio_video":
            raise ValueError(f"the audio-shift model needs data.modality 'audio_video', got {data.modality!r}")
        self.urls = urls
        self.data = data
        self.method = method
        self.seed = seed
        self.rank = rank
        self.start_step = start_step
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
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        stream_seed = derive_seed(self.seed, self.rank, worker_id, self.start_step)
        generator = torch.Generator().manual_seed(stream_seed)
        pairer = ShiftedAudioPairer(self.method.shift_min_seconds, self.method.shift_max_seconds, generator)

        errors = SampleErrorLog()
        stages = [
            wds.ResampledShards(list(self.urls), seed=stream_seed, deterministic=True),
            wds.tarfile_to_samples(handler=errors),
            wds.map(decode_sample, handler=errors),
            pairer,
        ]
        if self.data.shuffle_buffer > 1:
            stages.append(wds.shuffle(self.data.shuffle_buffer, initial=self.data.shuffle_buffer, seed=stream_seed))
        for pair in wds.DataPipeline(*stages):
            yield self.make_views(pair, generator)

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
    start_step: int,
    pin_memory: bool,
    method: MethodConfig | None = None,
) -> DataLoader:
    """Build the endless DataLoader of view batches for one training process.

    The audio-shift method gets pairs of in-sync and shifted audio; every other method gets two views per
    clip, plus local views when `data.local_views` > 0.
    """
    dataset: IterableDataset
    if method is not None and method.name == "audio_shift":
        dataset = ShiftedAudioClips(urls, data, method, seed=seed, rank=rank, start_step=start_step)
    else:
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
