"""Cut one source (a video file or a frame folder) into encoded clips, in a spool file of its own.

This is the unit of work of a shard build. It runs in a worker process and shares nothing with the other
sources, so sources can be cut in any order and by any number of processes. The parent then copies the
spooled clips into shards in input order (see `shards.build`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from shards.build_options import BuildOptions
from shards.clips import audio_sample_range, clip_spans, frames_in_span
from shards.decode import NO_AUDIO_STREAM, SAMPLE_RATE, AudioTrack, VideoFile, audio_slice, decode_audio
from shards.errors import ShardsInputError
from shards.labels import read_frame_labels
from shards.sample_codec import encode_jpeg, encode_wav
from shards.source_item import SourceItem
from shards.write import SampleTarWriter, sample_members

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

# Exceptions a frame decoder raises for a frame it cannot decode: PyAV for videos, PIL for image files.
FRAME_DECODE_ERRORS = (RuntimeError, IndexError, ValueError, OSError, av.FFmpegError)


def spool_path(work_dir: Path, position: int) -> Path:
    """Return the spool file of the source at `position` in the input list."""
    return work_dir / f"source-{position:07d}.tar"


def record_path(work_dir: Path, position: int) -> Path:
    """Return the journal record of the source at `position`; it exists only once the source is done."""
    return work_dir / f"source-{position:07d}.json"


def cut_source(position: int, item: SourceItem, options: BuildOptions, work_dir: Path) -> dict:
    """Cut `item` into clips, spool them to `work_dir`, and return the journal record of the source.

    The record is `{"position", "path", "status", ...}` with status `"ok"` (clips spooled, `source` is
    its index.json entry), `"skipped"` (no clip, `reason` says why) or `"error"` (an input error that
    stops the build, such as a labels file that disagrees with the video). Records of `ok` and `skipped`
    sources are written to disk after the spool, so a record on disk means the source is finished. An
    `error` record is not written, so a rerun tries the source again once the input is fixed.
    """
    path = str(item.path.absolute())
    record: dict = {"position": position, "path": path, "stem": item.stem}
    try:
        result = _cut(position, item, options, work_dir)
    except ShardsInputError as error:
        return {**record, "status": "error", "reason": str(error)}
    record.update(result)

    # The record is returned as it will be read back on resume (keys sorted), so the index.json of a
    # resumed build has the same bytes as that of an uninterrupted one.
    text = json.dumps(record, sort_keys=True)
    target = record_path(work_dir, position)
    temporary = target.with_name(f"{target.name}.partial-{os.getpid()}")
    temporary.write_text(text + "\n")
    os.replace(temporary, target)
    return json.loads(text)


def _open_source(item: SourceItem, options: BuildOptions) -> VideoFile:
    if item.is_frame_folder:
        from shards.frame_folder import FrameFolder

        return FrameFolder(item.path, fps=item.fps, max_side=options.max_side)
    return VideoFile(item.path, max_side=options.max_side)


def _frame_labels(item: SourceItem, num_frames: int) -> np.ndarray | None:
    """Return the item's own frame labels when it has them, else the sidecar's, checked against the video."""
    if item.frame_labels is None:
        return read_frame_labels(item.path, num_frames)
    labels = np.asarray(item.frame_labels)
    if labels.shape != (num_frames,):
        raise ShardsInputError(
            f"{item.path}: the collection gives {len(labels)} frame labels but the source has {num_frames} "
            "frames; fix the annotations"
        )
    return labels.astype(np.uint8)


def _cut(position: int, item: SourceItem, options: BuildOptions, work_dir: Path) -> dict:
    try:
        source = _open_source(item, options)
    except ShardsInputError as error:
        logger.warning("skipped %s", error)
        return {"status": "skipped", "reason": str(error)}

    try:
        return _cut_opened(position, item, source, options, work_dir)
    finally:
        source.close()


def _cut_opened(
    position: int, item: SourceItem, source: VideoFile, options: BuildOptions, work_dir: Path
) -> dict:
    range_start, range_end = _item_range(item, source.duration_s)
    spans = [
        (round(range_start + start_s, 6), round(range_start + end_s, 6))
        for start_s, end_s in clip_spans(range_end - range_start, options.clip_seconds, options.stride)
    ]
    if not spans:
        reason = f"shorter than one clip ({range_end - range_start:.3f} s < {options.clip_seconds} s)"
        logger.warning("skipped %s: %s", item.path, reason)
        return {"status": "skipped", "reason": reason}

    labels = _frame_labels(item, source.num_frames)
    if item.is_frame_folder:
        audio = AudioTrack(None, SAMPLE_RATE, NO_AUDIO_STREAM)
    else:
        audio = decode_audio(item.path, video_start_s=source.video_start_s)

    spool = SampleTarWriter(spool_path(work_dir, position))
    try:
        written, failed = _spool_clips(spool, item, source, audio, labels, spans, options)
    except BaseException:
        spool.discard()
        raise
    if written == 0:
        spool.discard()
        reason = f"none of its {len(spans)} clips could be decoded"
        logger.warning("skipped %s: %s", item.path, reason)
        return {"status": "skipped", "reason": reason}
    spool.close()

    # An item that covers part of a file is charged that part of the file's bytes.
    covered = (range_end - range_start) / source.duration_s
    return {
        "status": "ok",
        "num_clips": written,
        "failed_clips": failed,
        "source_bytes": round(_size_of(item.path) * covered),
        "source": {
            "path": str(item.path.absolute()),
            "stem": item.stem,
            "start_s": range_start,
            "end_s": range_end,
            "duration_s": range_end - range_start,
            "fps": source.fps,
            "num_clips": written,
            "failed_clips": failed,
            "has_audio": audio.samples is not None,
            "audio_missing_reason": audio.missing_reason,
            "skipped_audio_packets": audio.skipped_packets,
            "has_frame_labels": labels is not None,
        },
    }


def _item_range(item: SourceItem, duration_s: float) -> tuple[float, float]:
    """Return the part of the source that `item` covers, in seconds from the file's start.

    Raises `ShardsInputError` when the item's range lies outside the file or is empty.
    """
    start = item.start_s if item.start_s is not None else 0.0
    end = min(item.end_s, duration_s) if item.end_s is not None else duration_s
    if not 0 <= start < end:
        raise ShardsInputError(
            f"{item.path}: item {item.stem} covers [{item.start_s}, {item.end_s}) s, which is empty or outside "
            f"the file's {duration_s:.3f} s; fix the collection's annotations"
        )
    return start, end


def _size_of(path: Path) -> int:
    """Return the bytes of a video file, or of all files in a frame folder."""
    if path.is_dir():
        return sum(child.stat().st_size for child in path.iterdir() if child.is_file())
    return path.stat().st_size


def _spool_clips(
    spool: SampleTarWriter,
    item: SourceItem,
    source: VideoFile,
    audio: AudioTrack,
    labels: np.ndarray | None,
    spans: list[tuple[float, float]],
    options: BuildOptions,
) -> tuple[int, int]:
    """Encode every clip of one source into `spool`; return how many were written and how many failed."""
    written = failed = 0
    for start_s, end_s in tqdm(spans, desc=item.path.name, unit="clip", leave=False, disable=None):
        key = f"{item.stem}-{round(start_s * 1000):07d}"
        indices = frames_in_span(source.frame_times, start_s, end_s)
        if len(indices) == 0:
            logger.warning("%s: clip %s has no frame in [%.3f, %.3f) s; skipped", item.path, key, start_s, end_s)
            failed += 1
            continue

        try:
            frames = source.read_frames(indices.tolist())  # (F, H, W, 3)
        except FRAME_DECODE_ERRORS as error:
            logger.warning("%s: clip %s frames failed to decode (%s); skipped", item.path, key, error)
            failed += 1
            continue

        first, stop = audio_sample_range(start_s, options.clip_seconds, SAMPLE_RATE)
        samples = audio_slice(audio, first, stop)  # (S,) or None
        meta = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "source": str(item.path.absolute()),
            "source_name": item.path.name,
            "start_s": start_s,
            "end_s": end_s,
            "fps": source.fps,
            "frame_indices": indices.tolist(),
            "frame_labels": labels[indices].tolist() if labels is not None else None,
            "label": item.label,
            "split": item.split,
            "collection": item.collection,
            "has_audio": samples is not None,
            "audio_missing_reason": audio.missing_reason,
            "sample_rate": SAMPLE_RATE,
        }
        jpegs = [encode_jpeg(frame, options.jpeg_quality) for frame in frames]
        wav = encode_wav(samples, SAMPLE_RATE) if samples is not None else None
        spool.add_sample(sample_members(key, meta, jpegs, wav))
        written += 1
    return written, failed
