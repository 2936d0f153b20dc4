"""Group clip embeddings into sequences for sequence detectors, and score an embeddings folder with them.

Rule: clips of the same source video (the `source` path, else `source_name`) are ordered by `start_s`, and
every N consecutive clips form one window, with stride 1 clip. A video with c >= N clips gives c - N + 1
windows; a video with fewer than N clips gives none. A window takes the key and metadata of its centre clip
(index N // 2, the later of the two middle clips when N is even), so scores, evaluation and explanations
refer to real clips. The first N // 2 and the last (N - 1) // 2 clips of each video are the centre of no
window and get no score; they are counted and logged. Consecutive means consecutive among the clips
present: a gap in the timeline (a clip that failed to decode, or one dropped as anomalous before fitting)
is not detected, and the window spans it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.base import Detector
from detect.embeddings import Embeddings
from detect.errors import DetectInputError
from detect.frame_scores import video_id
from detect.scoring import check_dimension, score_rows, scores_header

logger = logging.getLogger(__name__)

WINDOW_RULE = (
    "clips of one source video ordered by start_s; windows of sequence_length consecutive clips, stride 1; "
    "a window takes the key of its centre clip (index sequence_length // 2)"
)


@dataclass
class Windows:
    """Sequences of clip embeddings and, per window, its clip rows and its centre clip's metadata."""

    sequences: np.ndarray  # (W, N, D)
    rows: np.ndarray  # (W, N) int64, row indices into the embeddings folder
    meta: list[dict[str, Any]]  # centre clip metadata, one per window
    unscored_clips: int  # clips that are the centre of no window
    short_videos: int  # videos with fewer than N clips


def build_windows(vectors: np.ndarray, meta: list[dict[str, Any]], length: int) -> Windows:
    """Build every window of `length` consecutive clips per source video (see the module docstring).

    Windows are ordered by the row of their centre clip. No window at all is an input error, because a
    detector cannot be fitted or a folder scored without one.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < Detector.min_sequence_length:
        raise DetectInputError(
            f"sequence length must be an integer >= {Detector.min_sequence_length}, got {length!r}"
        )
    by_video: dict[str, list[int]] = defaultdict(list)
    for row, clip in enumerate(meta):
        by_video[video_id(clip)].append(row)

    windows: list[list[int]] = []
    short_videos = 0
    for rows in by_video.values():
        ordered = sorted(rows, key=lambda row: _start_seconds(meta[row]))
        if len(ordered) < length:
            short_videos += 1
            continue
        windows.extend(ordered[start : start + length] for start in range(len(ordered) - length + 1))
    if not windows:
        raise DetectInputError(
            f"no source video has {length} clips or more, so no sequence of {length} clips can be built; "
            "lower --sequence-length or add longer videos"
        )

    centre = length // 2
    windows.sort(key=lambda window: window[centre])
    row_array = np.array(windows, dtype=np.int64)  # (W, N)
    unscored = len(meta) - len(windows)
    if short_videos:
        logger.warning("%d videos have fewer than %d clips and give no sequence", short_videos, length)
    if unscored:
        logger.info("%d clips at the ends of videos are the centre of no %d-clip sequence", unscored, length)
    return Windows(
        sequences=np.asarray(vectors)[row_array],  # (W, N, D)
        rows=row_array,
        meta=[meta[window[centre]] for window in windows],
        unscored_clips=unscored,
        short_videos=short_videos,
    )


def score_sequence_embeddings(
    detector: Detector, embeddings: Embeddings, *, model_path: Path, embeddings_path: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the scores rows and header of a sequence detector: one row per window, keyed by its centre clip.

    The rows and header have the fields `detect score` writes for every detector; the header adds
    `sequence_length`, `window_rule` and the count of `unscored_clips`.
    """
    check_dimension(detector, embeddings)
    windows = build_windows(embeddings.vectors, embeddings.meta, detector.sequence_length_)
    scores = detector.score(windows.sequences)  # (W,)

    rows = score_rows(windows.meta, scores, [[] for _ in windows.meta])
    header = scores_header(detector, embeddings, model_path=model_path, embeddings_path=embeddings_path)
    header.update(
        sequence_length=detector.sequence_length_,
        window_rule=WINDOW_RULE,
        unscored_clips=windows.unscored_clips,
    )
    return rows, header


def _start_seconds(clip: dict[str, Any]) -> float:
    start = clip.get("start_s")
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise DetectInputError(
            f"clip {clip.get('key')!r} has no numeric start_s, so its place in the video is unknown"
        )
    return float(start)
