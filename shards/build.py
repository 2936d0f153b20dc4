"""Build a shard set: cut every input video into clips of frames plus aligned audio and write them.

The output folder is built under a temporary name next to the destination and renamed when complete,
so a shard set that exists is whole. Inputs that give no clip are logged and listed in `index.json`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import decord
import numpy as np
from tqdm import tqdm

from shards.clips import audio_sample_range, clip_key, clip_spans, frames_in_span
from shards.decode import SAMPLE_RATE, AudioTrack, VideoFile, audio_slice, decode_audio
from shards.errors import ShardsInputError
from shards.labels import read_frame_labels
from shards.sample_codec import encode_jpeg, encode_wav
from shards.write import ShardSetWriter

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

# Directories are scanned for these extensions; a file named on the command line is used whatever its name.
VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp"}
)


@dataclass(frozen=True)
class BuildOptions:
    """Settings of `latentwatch shards build`."""

    clip_seconds: float = 1.0
    """Clip length in seconds. Every clip contains all frames and the audio of this span."""
    stride_seconds: float | None = None
    """Seconds between clip starts; None means `clip_seconds` (no overlap, no gap)."""
    max_side: int = 160
    """Frames are resized so their longer side is at most this many pixels."""
    clips_per_shard: int = 64
    """Clips per tar shard."""
    jpeg_quality: int = 90
    """JPEG quality of the stored frames, 1 to 100."""
    overwrite: bool = False
    """Replace an existing shard set at the output path."""

    def validate(self) -> None:
        """Raise `ShardsInputError` naming the first invalid setting."""
        if not self.clip_seconds > 0:
            raise ShardsInputError(f"--clip-seconds must be positive, got {self.clip_seconds}")
        if self.stride_seconds is not None and not self.stride_seconds > 0:
            raise ShardsInputError(f"--stride-seconds must be positive, got {self.stride_seconds}")
        if self.max_side < 16:
            raise ShardsInputError(f"--max-side must be at least 16 pixels, got {self.max_side}")
        if self.clips_per_shard < 1:
            raise ShardsInputError(f"--clips-per-shard must be at least 1, got {self.clips_per_shard}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ShardsInputError(f"--jpeg-quality must be between 1 and 100, got {self.jpeg_quality}")


@dataclass
class BuildSummary:
    """Counts of a finished build, for the closing message and for tests."""

    out: Path
    num_clips: int = 0
    total_seconds: float = 0.0
    num_shards: int = 0
    skipped: list[dict] = field(default_factory=list)
    failed_clips: int = 0


def find_videos(inputs: list[str | Path]) -> list[Path]:
    """Expand files and directories (scanned recursively, sorted) into a list of video paths.

    Raises `ShardsInputError` for a path that does not exist, and for two inputs whose clip keys would
    collide (the same sanitised file stem), because keys must be unique in a shard set.
    """
    videos: list[Path] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise ShardsInputError(f"{path}: no such file or directory")
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not found:
                extensions = " ".join(sorted(VIDEO_EXTENSIONS))
                logger.warning("%s: no video files found (extensions: %s)", path, extensions)
            videos.extend(found)
        else:
            videos.append(path)

    unique: dict[Path, Path] = {}
    for video in videos:
        unique.setdefault(video.resolve(), video)

    by_stem: dict[str, Path] = {}
    for resolved in unique:
        stem = clip_key(resolved, 0.0).rsplit("-", 1)[0]
        if stem in by_stem:
            raise ShardsInputError(
                f"{by_stem[stem]} and {resolved} give the same clip keys ('{stem}-...'); "
                "rename one of them or build them into separate shard sets"
            )
        by_stem[stem] = resolved
    return list(unique)


def build_shards(
    inputs: list[str | Path], out: str | Path, options: BuildOptions | None = None
) -> BuildSummary:
    """Cut `inputs` (videos or directories of videos) into clips and write a shard set at `out`."""
    options = options if options is not None else BuildOptions()
    options.validate()
    out = Path(out).absolute()
    _check_destination(out, options.overwrite)
    videos = find_videos(inputs)
    if not videos:
        raise ShardsInputError("no video files among the inputs")

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        summary = _write_shard_set(videos, partial, options)
        summary.out = out
        _replace(partial, out)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return summary


def _check_destination(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise ShardsInputError(f"{out} already exists; pass --overwrite to replace it")
    is_shard_set = out.is_dir() and (out / "index.json").is_file()
    is_empty_dir = out.is_dir() and not any(out.iterdir())
    if not (is_shard_set or is_empty_dir):
        raise ShardsInputError(
            f"{out} is not a shard set (no index.json), and --overwrite replaces only shard sets"
        )


def _replace(partial: Path, out: Path) -> None:
    """Move the finished folder to `out`, moving an old shard set aside first and deleting it after."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    partial.rename(out)
    if old.exists():
        shutil.rmtree(old)


def _write_shard_set(videos: list[Path], folder: Path, options: BuildOptions) -> BuildSummary:
    stride = options.stride_seconds if options.stride_seconds is not None else options.clip_seconds
    writer = ShardSetWriter(folder, options.clips_per_shard)
    summary = BuildSummary(out=folder)
    sources: list[dict] = []

    progress = tqdm(videos, desc="videos", unit="video")
    for video in progress:
        try:
            source = VideoFile(video, max_side=options.max_side)
        except ShardsInputError as error:
            logger.warning("skipped %s", error)
            summary.skipped.append({"path": str(video.absolute()), "reason": str(error)})
            continue

        spans = clip_spans(source.duration_s, options.clip_seconds, stride)
        if not spans:
            reason = f"shorter than one clip ({source.duration_s:.3f} s < {options.clip_seconds} s)"
            logger.warning("skipped %s: %s", video, reason)
            summary.skipped.append({"path": str(video.absolute()), "reason": reason})
            continue

        labels = read_frame_labels(video, source.num_frames)
        audio = decode_audio(video, video_start_s=source.video_start_s)
        written, failed = _write_clips(writer, source, audio, labels, spans, options)
        summary.num_clips += written
        summary.failed_clips += failed
        progress.set_postfix(clips=summary.num_clips)
        if written == 0:
            reason = f"none of its {len(spans)} clips could be decoded"
            logger.warning("skipped %s: %s", video, reason)
            summary.skipped.append({"path": str(video.absolute()), "reason": reason})
            continue

        sources.append(
            {
                "path": str(video.absolute()),
                "duration_s": source.duration_s,
                "fps": source.fps,
                "num_clips": written,
                "failed_clips": failed,
                "has_audio": audio.samples is not None,
                "audio_missing_reason": audio.missing_reason,
                "skipped_audio_packets": audio.skipped_packets,
                "has_frame_labels": labels is not None,
            }
        )
    progress.close()

    shards = writer.close()
    if summary.num_clips == 0:
        reasons = "; ".join(skipped["reason"] for skipped in summary.skipped[:3])
        raise ShardsInputError(f"no input gave a clip ({reasons})")

    summary.total_seconds = round(summary.num_clips * options.clip_seconds, 6)
    summary.num_shards = len(shards)
    index = {
        "format_version": FORMAT_VERSION,
        "num_clips": summary.num_clips,
        "total_seconds": summary.total_seconds,
        "clip_seconds": options.clip_seconds,
        "stride_seconds": stride,
        "sample_rate": SAMPLE_RATE,
        "max_side": options.max_side,
        "jpeg_quality": options.jpeg_quality,
        "shards": shards,
        "sources": sources,
        "skipped": summary.skipped,
    }
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return summary


def _write_clips(
    writer: ShardSetWriter,
    source: VideoFile,
    audio: AudioTrack,
    labels: np.ndarray | None,
    spans: list[tuple[float, float]],
    options: BuildOptions,
) -> tuple[int, int]:
    """Write every clip of one video; return how many were written and how many failed."""
    written = failed = 0
    for start_s, end_s in tqdm(spans, desc=source.path.name, unit="clip", leave=False):
        key = clip_key(source.path, start_s)
        indices = frames_in_span(source.frame_times, start_s, end_s)
        if len(indices) == 0:
            logger.warning(
                "%s: clip %s has no frame in [%.3f, %.3f) s; skipped", source.path, key, start_s, end_s
            )
            failed += 1
            continue

        try:
            frames = source.read_frames(indices.tolist())  # (F, H, W, 3)
        except (RuntimeError, IndexError, decord.DECORDError) as error:
            logger.warning("%s: clip %s frames failed to decode (%s); skipped", source.path, key, error)
            failed += 1
            continue

        first, stop = audio_sample_range(start_s, options.clip_seconds, SAMPLE_RATE)
        samples = audio_slice(audio, first, stop)  # (S,) or None
        meta = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "source": str(source.path.absolute()),
            "source_name": source.path.name,
            "start_s": start_s,
            "end_s": end_s,
            "fps": source.fps,
            "frame_indices": indices.tolist(),
            "frame_labels": labels[indices].tolist() if labels is not None else None,
            "label": None,
            "has_audio": samples is not None,
            "audio_missing_reason": audio.missing_reason,
            "sample_rate": SAMPLE_RATE,
        }
        jpegs = [encode_jpeg(frame, options.jpeg_quality) for frame in frames]
        wav = encode_wav(samples, SAMPLE_RATE) if samples is not None else None
        writer.write(key, meta, jpegs, wav)
        written += 1
    return written, failed
