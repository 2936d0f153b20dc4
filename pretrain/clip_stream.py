"""The resumable training stream: each DataLoader worker reads its own shards and numbers the clips it yields.

A stream is a pure function of (run seed, process rank, worker id): the shards it draws, the order the
shuffle buffer gives, and, through `sample_generator`, every augmentation of the clip at a given position.
Each sample carries its position in that stream, so the trainer knows how far every worker has been read.
A resumed run rebuilds the same streams and skips the positions already trained on. Skipped clips are
read from their tar files and their audio is decoded, but their JPEG frames are not, which keeps the skip
cheap compared with training on them.

NOTE: the skip still reads every consumed clip's bytes once more, so resuming late in a very long run costs
I/O roughly proportional to the clips seen so far.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds

from shards.read import FORMAT_VERSION, SampleError, decode_sample, decode_sample_audio
from shards.sample_errors import SampleErrorLog

logger = logging.getLogger(__name__)


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed, so that (seed, rank, worker, position) tuples never share a stream."""
    sequence = np.random.SeedSequence([int(part) % 2**63 for part in parts])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_generator(stream_seed: int, position: int) -> torch.Generator:
    """Return the generator of the augmentations of the clip at `position`, independent of earlier clips."""
    return torch.Generator().manual_seed(derive_seed(stream_seed, position))


def assign_shards(urls: list[str], *, rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
    """Return the shards one worker of one process reads: a disjoint share when there are enough shards.

    Shards are dealt round-robin over the world_size x num_workers streams, so no two streams read the
    same shard. With fewer shards than streams, every stream draws from all shards in its own seeded
    order, and `shards_are_shared` returns True.
    """
    streams = world_size * num_workers
    if shards_are_shared(urls, world_size=world_size, num_workers=num_workers):
        return list(urls)
    return list(urls[rank * num_workers + worker :: streams])


def shards_are_shared(urls: list[str], *, world_size: int, num_workers: int) -> bool:
    """Tell whether there are too few shards for every stream to read its own."""
    return len(urls) < world_size * num_workers


class LazyClip:
    """A clip whose metadata and audio are decoded and whose JPEG frames are decoded on first use.

    It has the attributes of `shards.read.Clip`. Reading `frames` runs the full `decode_sample` check and
    raises `SampleError` for a bad sample, which the dataset counts and logs.
    """

    def __init__(self, key: str, meta: dict, audio: np.ndarray | None, raw: dict) -> None:
        self.key = key
        self.meta = meta
        self.audio = audio
        self._raw: dict | None = raw
        self._frames: np.ndarray | None = None

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            assert self._raw is not None
            self._frames = decode_sample(self._raw).frames  # (F, H, W, 3)
            self._raw = None  # the encoded members are no longer needed
        return self._frames


def decode_without_frames(sample: dict) -> LazyClip:
    """Decode a raw WebDataset sample's metadata and audio, leaving its frames encoded until used."""
    where = f"{sample.get('__url__', '?')} {sample.get('__key__', '?')}"
    try:
        meta = json.loads(sample["json"])
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SampleError(f"{where}: missing or invalid .json member ({error})") from error
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise SampleError(f"{where}: metadata format_version is not {FORMAT_VERSION}")

    audio = decode_sample_audio(sample, meta, where)
    return LazyClip(meta.get("key", sample.get("__key__", "?")), meta, audio, sample)


class NumberFrom:
    """A stream stage that pairs each item with its position and drops positions below `start`."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __call__(self, items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        for position, item in enumerate(items):
            if position >= self.start:
                yield position, item


def raw_clip_stages(urls: list[str], stream_seed: int, errors: SampleErrorLog) -> list:
    """Return the first stages of every training stream: seeded shard draws, tar reading, light decoding."""
    return [
        # worker_seed is fixed so the draw order depends only on stream_seed, which already mixes rank and worker.
        wds.ResampledShards(list(urls), seed=stream_seed, worker_seed=lambda: 0, deterministic=True),
        wds.tarfile_to_samples(handler=errors),
        wds.map(decode_without_frames, handler=errors),
    ]


def shuffle_stage(buffer: int, stream_seed: int) -> list:
    """Return a seeded shuffle stage, or none when `buffer` <= 1."""
    if buffer <= 1:
        return []
    return [wds.shuffle(buffer, initial=buffer, seed=stream_seed)]


def numbered_clips(
    urls: list[str], *, stream_seed: int, shuffle_buffer: int, start: int, errors: SampleErrorLog
) -> wds.DataPipeline:
    """Return the endless stream of (position, LazyClip) of one worker, starting at position `start`."""
    stages = raw_clip_stages(urls, stream_seed, errors) + shuffle_stage(shuffle_buffer, stream_seed)
    return wds.DataPipeline(*stages, NumberFrom(start))
