"""Read a shard set in stored order: its index, its shard files, and each sample decoded into a `Clip`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds

from shards.errors import ShardsInputError
from shards.sample_codec import decode_jpeg, decode_wav
from shards.sample_errors import SampleErrorLog

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

_FRAME_MEMBER = re.compile(r"^(\d+)\.jpg$")


@dataclass
class Clip:
    """One decoded clip: its frames, its audio over the same span, and its `KEY.json` metadata."""

    key: str
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB
    audio: np.ndarray | None  # (S,) float32 in [-1, 1], mono at meta["sample_rate"]; None without audio
    meta: dict


class SampleError(ValueError):
    """A sample whose members are missing or inconsistent with its metadata."""


def read_index(shard_dir: str | Path) -> dict:
    """Load `index.json` of a shard set, checking that its `format_version` is one this code reads."""
    path = Path(shard_dir) / "index.json"
    if not path.is_file():
        raise ShardsInputError(
            f"{shard_dir}: not a shard set (no index.json); build one with `latentwatch shards build`"
        )
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardsInputError(f"{path}: invalid JSON ({error})") from error
    return read_index_data(index, str(path))


def read_index_data(index: object, where: str) -> dict:
    """Check the parsed `index.json` read from `where` (a path or URL) and return it."""
    version = index.get("format_version") if isinstance(index, dict) else None
    if version != FORMAT_VERSION:
        raise ShardsInputError(
            f"{where}: format_version is {version!r} but this version of latentwatch reads {FORMAT_VERSION}; "
            "rebuild the shard set"
        )
    return index


def list_shards(shard_dir: str | Path) -> list[str]:
    """Return the paths of the shard files of a shard set, in index order; raise if one is missing."""
    index = read_index(shard_dir)
    paths = [str(Path(shard_dir) / shard["name"]) for shard in index["shards"]]
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        raise ShardsInputError(
            f"{shard_dir}: {len(missing)} shard file(s) listed in index.json are missing, "
            f"the first is {missing[0]}; rebuild the shard set"
        )
    return paths


def decode_sample(sample: dict) -> Clip:
    """Decode a raw WebDataset sample (member suffix -> bytes, plus `__key__`, `__url__`) into a `Clip`.

    Raises `SampleError` naming the shard and key when a member is missing, undecodable, or disagrees
    with the metadata (frame count, audio presence, sample rate).
    """
    key = sample.get("__key__", "?")
    where = f"{sample.get('__url__', '?')} {key}"
    if "json" not in sample:
        raise SampleError(f"{where}: no .json member")
    try:
        meta = json.loads(sample["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SampleError(f"{where}: invalid .json member ({error})") from error
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise SampleError(f"{where}: metadata format_version is not {FORMAT_VERSION}")

    frame_members = sorted(
        (int(match.group(1)), name) for name in sample if (match := _FRAME_MEMBER.match(name))
    )
    expected_frames = len(meta.get("frame_indices", []))
    if len(frame_members) != expected_frames or expected_frames == 0:
        raise SampleError(
            f"{where}: {len(frame_members)} frame(s) stored but the metadata lists {expected_frames}"
        )
    try:
        frames = np.stack([decode_jpeg(sample[name]) for _, name in frame_members])  # (F, H, W, 3)
    except (OSError, ValueError) as error:
        raise SampleError(f"{where}: a frame failed to decode ({error})") from error

    audio = decode_sample_audio(sample, meta, where)

    return Clip(key=meta.get("key", key), frames=frames, audio=audio, meta=meta)


def decode_sample_audio(sample: dict, meta: dict, where: str) -> np.ndarray | None:
    """Return a sample's audio (S,) float32, or None when its metadata marks it as having none.

    Raises `SampleError` naming `where` (shard and key) when the WAV member is missing, undecodable, or
    at another sample rate than the metadata gives.
    """
    if not meta.get("has_audio"):
        return None
    if "wav" not in sample:
        raise SampleError(f"{where}: .wav member missing although the metadata has has_audio true")
    try:
        audio, rate = decode_wav(sample["wav"])  # (S,)
    except ValueError as error:
        raise SampleError(f"{where}: {error}") from error
    if rate != meta.get("sample_rate"):
        raise SampleError(f"{where}: WAV sample rate {rate} differs from metadata {meta.get('sample_rate')}")
    return audio


def iter_clips(shard_dir: str | Path, *, errors: SampleErrorLog | None = None) -> Iterator[Clip]:
    """Yield every clip of a shard set in stored order.

    A truncated shard or a bad sample is counted in `errors` and logged with its shard and key, and
    reading continues with the next sample or shard.
    """
    errors = errors if errors is not None else SampleErrorLog()
    index = read_index(shard_dir)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(list_shards(shard_dir)),
        wds.tarfile_to_samples(handler=errors),
        wds.map(decode_sample, handler=errors),
    )

    count = 0
    for clip in pipeline:
        count += 1
        yield clip

    if count != index["num_clips"] or errors.count:
        logger.warning(
            "%s: read %d of %d clips (%d error(s) logged above)",
            shard_dir,
            count,
            index["num_clips"],
            errors.count,
        )
