"""Map clip scores onto source-video frames, and smooth frame scores over time.

Rule: a clip covers exactly the source frames listed in its `frame_indices`, and each frame takes the
maximum score of the clips covering it, so an alarm in any overlapping clip reaches the frame. Frames that
no clip covers have no score and are not evaluated. A frame's label is its `frame_labels` entry; when
overlapping clips disagree, the frame counts as anomalous and the conflict is counted.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

UNKNOWN_LABEL = -1

FRAME_RULE = (
    "each frame takes the maximum score of the clips whose frame_indices contain it; "
    "frames no clip covers are not evaluated"
)
CENTRE_FRAME_RULE = (
    "each clip is labelled by its centre stored frame (frame_indices[len // 2]) and evaluated per clip"
)


@dataclass
class VideoFrames:
    """Frame scores and labels of one source video, sorted by frame index."""

    video: str  # the source path, or the file name when the path is missing
    source_name: str
    fps: float | None
    frame_indices: np.ndarray  # (F,) int64, sorted, unique
    scores: np.ndarray  # (F,) float64
    labels: np.ndarray  # (F,) int64: 0 normal, 1 anomalous, -1 unknown
    label_conflicts: int = 0

    @property
    def times_s(self) -> np.ndarray | None:
        """Frame times in seconds, or None when the frame rate is unknown."""
        return self.frame_indices / self.fps if self.fps else None


def video_id(row: dict[str, Any]) -> str:
    """Return the identifier that groups clips by source video: the source path, else the file name."""
    return str(row.get("source") or row.get("source_name") or "unknown source")


def group_by_video(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group scores rows by source video, keeping the input order of videos and of clips."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[video_id(row)].append(row)
    return dict(groups)


def frames_of_videos(rows: list[dict[str, Any]]) -> tuple[list[VideoFrames], int]:
    """Map clip scores to frames for every video; also return the number of clips without `frame_indices`."""
    videos = []
    clips_without_frames = 0
    for video, clips in group_by_video(rows).items():
        frames, missing = _frames_of_video(video, clips)
        clips_without_frames += missing
        if frames is not None:
            videos.append(frames)
    if clips_without_frames:
        logger.warning(
            "%d clips have no frame_indices and were left out of frame-level results", clips_without_frames
        )
    return videos, clips_without_frames


def _frames_of_video(video: str, clips: list[dict[str, Any]]) -> tuple[VideoFrames | None, int]:
    score_by_frame: dict[int, float] = {}
    label_by_frame: dict[int, int] = {}
    conflicts = 0
    missing = 0
    for clip in clips:
        indices = clip.get("frame_indices")
        if not isinstance(indices, list) or not indices:
            missing += 1
            continue
        labels = clip.get("frame_labels")
        if not isinstance(labels, list) or len(labels) != len(indices):
            labels = [None] * len(indices)

        for frame, label in zip(indices, labels):
            frame = int(frame)
            score_by_frame[frame] = max(score_by_frame.get(frame, -math.inf), float(clip["score"]))
            label = UNKNOWN_LABEL if label is None else int(bool(label))
            previous = label_by_frame.get(frame, UNKNOWN_LABEL)
            if previous != UNKNOWN_LABEL and label != UNKNOWN_LABEL and previous != label:
                conflicts += 1
            label_by_frame[frame] = max(previous, label)

    if not score_by_frame:
        return None, missing
    if conflicts:
        logger.warning(
            "%s: %d frames have conflicting labels in overlapping clips; counted as anomalous",
            video,
            conflicts,
        )

    frame_indices = np.array(sorted(score_by_frame), dtype=np.int64)
    first = clips[0]
    fps = first.get("fps")
    return (
        VideoFrames(
            video=video,
            source_name=str(first.get("source_name") or video),
            fps=float(fps) if isinstance(fps, (int, float)) and fps > 0 else None,
            frame_indices=frame_indices,
            scores=np.array([score_by_frame[int(f)] for f in frame_indices], dtype=np.float64),
            labels=np.array([label_by_frame[int(f)] for f in frame_indices], dtype=np.int64),
            label_conflicts=conflicts,
        ),
        missing,
    )


def smooth_frame_scores(frames: VideoFrames, sigma: float) -> VideoFrames:
    """Return a copy with scores smoothed by a Gaussian of standard deviation `sigma` frames.

    The kernel runs along the frame-index axis and is truncated at 4 sigma. Frames without a score (gaps
    between clips, the ends of the video) get zero weight and the kernel is renormalised over the frames
    that have one, so gaps and edges do not pull scores towards zero.
    """
    if sigma <= 0:
        return frames
    offset = frames.frame_indices[0]
    length = int(frames.frame_indices[-1] - offset + 1)
    values = np.zeros(length)
    weights = np.zeros(length)
    values[frames.frame_indices - offset] = frames.scores
    weights[frames.frame_indices - offset] = 1.0

    radius = int(math.ceil(4 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)  # (2 radius + 1,)
    # Full convolution and a slice, because mode="same" misaligns when the kernel is longer than the video.
    numerator = np.convolve(values, kernel, mode="full")[radius : radius + length]
    denominator = np.convolve(weights, kernel, mode="full")[radius : radius + length]
    smoothed = numerator / np.maximum(denominator, np.finfo(np.float64).tiny)
    return replace(frames, scores=smoothed[frames.frame_indices - offset])


def centre_frame_items(clips: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, scores) of the clips with frame labels, each labelled by its centre stored frame."""
    labels, scores = [], []
    for clip in clips:
        indices, frame_labels = clip.get("frame_indices"), clip.get("frame_labels")
        if not isinstance(indices, list) or not isinstance(frame_labels, list) or not frame_labels:
            continue
        if len(frame_labels) != len(indices):
            continue
        centre_label = frame_labels[len(frame_labels) // 2]
        if centre_label is None:
            continue
        labels.append(int(bool(centre_label)))
        scores.append(float(clip["score"]))
    return np.array(labels, dtype=np.int64), np.array(scores, dtype=np.float64)
