"""Clip spans in seconds: which spans a video gives, which frames and audio samples fall in each, clip keys.

Boundaries are always seconds, never frame counts, because sources mix frame rates (10 to 30 fps and
non-integer NTSC rates) and audio sample rates. A clip of 1 s must cover the same time in every source.
"""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path

import numpy as np

# Frame timestamps from decoders are float32 and may sit a hair on either side of a span boundary
# (0.29999998 for 0.3). Shifting both boundaries down by this tolerance puts such a frame in the span that
# starts at the boundary, for every clip alike.
BOUNDARY_TOLERANCE_S = 1e-4

# On str patterns `\w` is every Unicode letter and digit plus '_', so names in any script keep their words.
_KEY_UNSAFE = re.compile(r"[^\w-]")


def clip_spans(duration_s: float, clip_seconds: float, stride_seconds: float) -> list[tuple[float, float]]:
    """Return the spans `[start, start + clip_seconds)`, `stride_seconds` apart, that fit in `duration_s`.

    Starts are computed as `k * stride_seconds` (never by repeated addition, so no drift) and rounded to
    microseconds. A source shorter than one clip gives no span.
    """
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
    if stride_seconds <= 0:
        raise ValueError(f"stride_seconds must be positive, got {stride_seconds}")
    if not math.isfinite(duration_s) or duration_s + BOUNDARY_TOLERANCE_S < clip_seconds:
        return []

    # The tolerance keeps the last clip of a source whose float32 timestamps put its end a hair short.
    count = math.floor((duration_s - clip_seconds + BOUNDARY_TOLERANCE_S) / stride_seconds) + 1
    spans = []
    for k in range(count):
        start = round(k * stride_seconds, 6)
        spans.append((start, round(start + clip_seconds, 6)))
    return spans


def frame_times(decoder_timestamps: np.ndarray | None, num_frames: int, fps: float) -> np.ndarray:
    """Return the start time in seconds of each of `num_frames` frames.

    Uses the decoder's timestamps when `timestamps_usable` accepts them. Otherwise (AVI files without
    presentation timestamps give decord huge negative values) falls back to `index / fps`.
    """
    if not timestamps_usable(decoder_timestamps, num_frames, fps):
        return np.arange(num_frames, dtype=np.float64) / fps
    return np.asarray(decoder_timestamps, dtype=np.float64)


def timestamps_usable(decoder_timestamps: np.ndarray | None, num_frames: int, fps: float) -> bool:
    """Return whether the decoder's frame timestamps can place frames in time.

    They can when there is one per frame and they are finite, start near zero, increase, and stay within
    one second of `index / fps`.
    """
    if decoder_timestamps is None or len(decoder_timestamps) != num_frames or num_frames == 0:
        return False

    times = np.asarray(decoder_timestamps, dtype=np.float64)
    fallback = np.arange(num_frames, dtype=np.float64) / fps
    return (
        bool(np.all(np.isfinite(times)))
        and bool(times[0] >= -BOUNDARY_TOLERANCE_S)
        and bool(np.all(np.diff(times) > 0))
        and bool(np.all(np.abs(times - fallback) < 1.0))
    )


def frames_in_span(times: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    """Return the indices of frames whose start time lies in `[start_s, end_s)`, in order."""
    times = np.asarray(times, dtype=np.float64)
    inside = (times >= start_s - BOUNDARY_TOLERANCE_S) & (times < end_s - BOUNDARY_TOLERANCE_S)
    return np.flatnonzero(inside)


def audio_sample_range(start_s: float, clip_seconds: float, sample_rate: int) -> tuple[int, int]:
    """Return `(first, stop)` sample indices of a clip starting at `start_s`.

    The length is `round(clip_seconds * sample_rate)` for every clip, whatever its start, so all clips of
    a shard set have equally long audio.
    """
    first = round(start_s * sample_rate)
    return first, first + round(clip_seconds * sample_rate)


def clip_key(source: str | Path, start_s: float) -> str:
    """Return the clip key: the sanitised source stem, a dash and the start in milliseconds (7 digits).

    The stem keeps Unicode letters and digits, '_' and '-' and replaces every other character with '_':
    `walkway test.avi` at 12.5 s gives `walkway_test-0012500`, `步行街.mp4` gives `步行街-0000000`. Dots are
    replaced too, because WebDataset splits a member name into key and extension at the first dot. The
    stem is put in NFC form first, so a name stored decomposed (as macOS stores `é`) keeps its letters.
    """
    stem = _KEY_UNSAFE.sub("_", unicodedata.normalize("NFC", Path(source).stem))
    return f"{stem}-{round(start_s * 1000):07d}"
