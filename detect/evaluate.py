"""Evaluate a scores folder against its ground truth: frame level when frame labels exist, else clip level.

Frame level maps clip scores to frames (see `detect.frame_scores` for the rule), optionally smooths them
with a Gaussian, and reports micro metrics (all frames of all videos pooled) and macro metrics (the mean
over videos). A video whose frames are all one class has no ROC curve, so macro skips and counts it. The
centre-frame rule, which labels each clip by its centre frame and evaluates clips, is reported beside it.
Without frame labels, clips are evaluated by their `label`: a clip is normal when its label is one of the
normal class names and anomalous otherwise.

Per-video normalisation (off by default) z-scores each video's frame scores (and, for the clip-based rules,
its clip scores) with that video's own mean and standard deviation. It uses statistics of the test scores,
which a deployed detector would not have, so metrics.json and the printed table state when it is on. It leaves
macro metrics unchanged, because they are rank-based within each video.

Nothing here fits anything: thresholds come from the detector (normal training clips only), and labels are
read only to compute the metrics.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from detect.atomic import atomic_folder
from detect.errors import DetectInputError
from detect.frame_scores import (
    CENTRE_FRAME_RULE,
    FRAME_RULE,
    UNKNOWN_LABEL,
    VideoFrames,
    centre_frame_items,
    frames_of_videos,
    group_by_video,
    smooth_frame_scores,
)
from detect.json_files import write_json_object
from detect.metrics import METRIC_NAMES, compute_metrics
from detect.plots import plot_precision_recall, plot_roc, plot_timeline, timeline_file_name
from detect.scores import Scores

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MACRO_RULE = (
    "mean over videos that contain both normal and anomalous items; videos whose items are all normal or all "
    "anomalous have no ROC curve, so they are skipped and counted in videos_skipped_single_class"
)
NORMALISATION_RULE = (
    "per-video z-score: each video's scores minus that video's mean, divided by its standard deviation; "
    "uses test-time statistics of the evaluated scores"
)
CLIP_LABEL_RULE = "a clip is normal when its label is one of normal_labels (case-insensitive), else anomalous"

# More timelines than this make the output folder and the report unwieldy; the rest are counted.
MAX_TIMELINES = 50


@dataclass
class Evaluation:
    """The content of metrics.json, plus what the plots need."""

    metrics: dict[str, Any]
    curve_labels: np.ndarray  # (M,) labels of the pooled items behind the primary micro metrics
    curve_scores: np.ndarray  # (M,)
    videos: list[VideoFrames] = field(default_factory=list)


def evaluate_scores(
    scores: Scores,
    *,
    smooth_sigma: float = 0.0,
    normal_labels: tuple[str, ...] = ("normal",),
    normalise_per_video: bool = False,
) -> Evaluation:
    """Compute every metric for a scores folder; raise DetectInputError when no row carries any label."""
    if smooth_sigma < 0:
        raise DetectInputError(f"smoothing sigma must be >= 0 frames, got {smooth_sigma}")

    videos, clips_without_frames = frames_of_videos(scores.rows)
    if smooth_sigma > 0:
        videos = [smooth_frame_scores(video, smooth_sigma) for video in videos]
    constant_videos = 0
    if normalise_per_video:
        videos = [replace(video, scores=z_score(video.scores)) for video in videos]
        constant_videos = sum(1 for video in videos if not video.scores.any())

    metrics: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "detector": scores.header.get("detector"),
        "settings": scores.header.get("settings"),
        "clips": len(scores.rows),
        "positive_class": "anomalous (label 1); higher scores mean more anomalous",
        "smoothing": (
            {"kind": "gaussian", "sigma_frames": smooth_sigma, "truncated_at_sigmas": 4}
            if smooth_sigma > 0 else None
        ),
        "normalisation": (
            {"kind": "per_video_z_score", "rule": NORMALISATION_RULE, "uses_test_statistics": True,
             "videos_with_constant_frame_scores": constant_videos}
            if normalise_per_video else None
        ),
    }

    if any((video.labels != UNKNOWN_LABEL).any() for video in videos):
        return _evaluate_frames(scores, videos, clips_without_frames, metrics, normalise_per_video)
    if any(row.get("label") is not None for row in scores.rows):
        return _evaluate_clip_labels(scores, videos, normal_labels, metrics, normalise_per_video)
    raise DetectInputError(
        "the scores have no labels: no clip has frame_labels or a label, so there is nothing to evaluate "
        "against; score a labelled embeddings folder"
    )


def z_score(values: np.ndarray) -> np.ndarray:
    """Return `values` minus their mean, divided by their standard deviation; constant values become 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    spread = values.std()
    centred = values - values.mean()
    return centred / spread if spread > 0 else np.zeros_like(centred)


def _evaluate_frames(
    scores: Scores,
    videos: list[VideoFrames],
    clips_without_frames: int,
    metrics: dict[str, Any],
    normalise_per_video: bool,
) -> Evaluation:
    per_video = []
    for video in videos:
        known = video.labels != UNKNOWN_LABEL
        per_video.append((video.video, video.labels[known], video.scores[known]))
    pooled_labels = np.concatenate([labels for _, labels, _ in per_video])
    pooled_scores = np.concatenate([values for _, _, values in per_video])

    centre_per_video = []
    for video, clips in group_by_video(scores.rows).items():
        labels, values = centre_frame_items(clips)
        if normalise_per_video:
            values = z_score(values)
        centre_per_video.append((video, labels, values))
    centre_labels = np.concatenate([labels for _, labels, _ in centre_per_video])
    centre_scores = np.concatenate([values for _, _, values in centre_per_video])

    metrics["level"] = "frame"
    metrics["frame"] = {
        "rule": FRAME_RULE,
        "micro": _pooled_metrics(pooled_labels, pooled_scores, label_kind="frame labels"),
        "macro": _macro_metrics(per_video),
        "clips_without_frame_indices": clips_without_frames,
        "frames_with_conflicting_labels": sum(video.label_conflicts for video in videos),
    }
    metrics["centre_frame"] = {
        "rule": CENTRE_FRAME_RULE,
        "smoothing": "none: clip scores are used as they are",
        "micro": _secondary_pooled_metrics(centre_labels, centre_scores, label_kind="centre-frame labels"),
        "macro": _macro_metrics(centre_per_video),
    }
    return Evaluation(metrics=metrics, curve_labels=pooled_labels, curve_scores=pooled_scores, videos=videos)


def _evaluate_clip_labels(
    scores: Scores,
    videos: list[VideoFrames],
    normal_labels: tuple[str, ...],
    metrics: dict[str, Any],
    normalise_per_video: bool,
) -> Evaluation:
    normal_names = {name.lower() for name in normal_labels}
    per_video = []
    unlabelled = 0
    for video, clips in group_by_video(scores.rows).items():
        labels, values = [], []
        for clip in clips:
            label = clip.get("label")
            if label is None:
                unlabelled += 1
                continue
            labels.append(_clip_label_to_binary(label, normal_names))
            values.append(float(clip["score"]))
        values = np.array(values, dtype=np.float64)
        per_video.append((video, np.array(labels, dtype=np.int64), z_score(values) if normalise_per_video else values))
    pooled_labels = np.concatenate([labels for _, labels, _ in per_video])
    pooled_scores = np.concatenate([values for _, _, values in per_video])

    metrics["level"] = "clip"
    metrics["clip"] = {
        "rule": CLIP_LABEL_RULE,
        "normal_labels": sorted(normal_names),
        "micro": _pooled_metrics(pooled_labels, pooled_scores, label_kind="clip labels"),
        "macro": _macro_metrics(per_video),
        "clips_without_label": unlabelled,
    }
    return Evaluation(metrics=metrics, curve_labels=pooled_labels, curve_scores=pooled_scores, videos=videos)


def _clip_label_to_binary(label: Any, normal_names: set[str]) -> int:
    if isinstance(label, bool) or isinstance(label, int):
        return int(bool(label))
    return 0 if str(label).lower() in normal_names else 1


def _pooled_metrics(labels: np.ndarray, scores: np.ndarray, *, label_kind: str) -> dict[str, Any]:
    if labels.size == 0 or labels.min() == labels.max():
        if labels.size == 0:
            kind = "no items"
        else:
            kind = "only anomalous items" if labels[0] == 1 else "only normal items"
        raise DetectInputError(
            f"the {label_kind} contain {kind}; AUROC, EER and AP need both normal and anomalous items"
        )
    return compute_metrics(labels, scores)


def _secondary_pooled_metrics(labels: np.ndarray, scores: np.ndarray, *, label_kind: str) -> dict[str, Any]:
    # A secondary rule that cannot be computed is reported as unavailable instead of failing the evaluation.
    try:
        return _pooled_metrics(labels, scores, label_kind=label_kind)
    except DetectInputError as error:
        return {"unavailable": str(error), "items": int(labels.size), "anomalous": int(labels.sum())}


def _macro_metrics(per_video: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    results, skipped, empty = [], [], 0
    for video, labels, scores in per_video:
        if labels.size == 0:
            empty += 1
        elif labels.min() == labels.max():
            skipped.append(video)
        else:
            results.append(compute_metrics(labels, scores))

    macro: dict[str, Any] = {
        "rule": MACRO_RULE,
        "videos_evaluated": len(results),
        "videos_skipped_single_class": len(skipped),
        "skipped_videos": skipped,
        "videos_without_labels": empty,
    }
    for name in METRIC_NAMES:
        values = [result[name] for result in results]
        macro[name] = float(np.mean(values)) if values else None
        macro[f"{name}_std"] = float(np.std(values)) if values else None
    return macro


def write_evaluation(
    directory: str | os.PathLike, evaluation: Evaluation, *, threshold: float | None = None
) -> Path:
    """Write metrics.json, roc.png, pr.png and a timeline PNG per video (at most MAX_TIMELINES) atomically."""
    with atomic_folder(directory, marker="metrics.json") as temporary:
        write_evaluation_files(temporary, evaluation, threshold=threshold)
    return Path(directory)


def write_evaluation_files(folder: Path, evaluation: Evaluation, *, threshold: float | None = None) -> None:
    """Write the files of `write_evaluation` into an existing folder that the caller renames when complete."""
    metrics = dict(evaluation.metrics)
    level = metrics["level"]
    plot_roc(folder / "roc.png", evaluation.curve_labels, evaluation.curve_scores,
             title=f"ROC, {level} level, micro")
    plot_precision_recall(folder / "pr.png", evaluation.curve_labels, evaluation.curve_scores,
                          title=f"Precision-recall, {level} level, micro")

    (folder / "timelines").mkdir()
    timelines = []
    shown = evaluation.videos[:MAX_TIMELINES]
    for index, video in enumerate(tqdm(shown, desc="timelines", unit="video", disable=len(shown) < 10)):
        name = timeline_file_name(video.video, index)
        plot_timeline(folder / "timelines" / name, video, threshold=threshold)
        timelines.append({"video": video.video, "file": f"timelines/{name}"})
    metrics["plots"] = {
        "roc": "roc.png",
        "pr": "pr.png",
        "timelines": timelines,
        "timelines_omitted": max(0, len(evaluation.videos) - MAX_TIMELINES),
    }
    write_json_object(folder / "metrics.json", metrics)


def format_table(metrics: dict[str, Any]) -> str:
    """Format the micro and macro metrics of every rule as a compact text table."""
    lines = [f"{'rule':<13}{'scope':<7}{'AUROC':>7}{'EER':>7}{'AUPRC':>7}{'AP':>7}  count"]
    for section in ("frame", "centre_frame", "clip"):
        if section not in metrics:
            continue
        micro, macro = metrics[section]["micro"], metrics[section]["macro"]
        lines.append(
            f"{section:<13}{'micro':<7}{_row(micro)}  {micro['items']} items, {micro['anomalous']} anomalous"
        )
        skipped = macro["videos_skipped_single_class"]
        lines.append(
            f"{'':<13}{'macro':<7}{_row(macro)}  {macro['videos_evaluated']} videos, "
            f"{skipped} skipped (single class)"
        )
    lines.extend(table_notes(metrics))
    return "\n".join(lines)


def table_notes(metrics: dict[str, Any]) -> list[str]:
    """Return the lines under a metrics table: smoothing, normalisation and the macro rule."""
    smoothing = metrics.get("smoothing")
    normalisation = metrics.get("normalisation")
    return [
        f"smoothing: gaussian, sigma {smoothing['sigma_frames']:g} frames" if smoothing else "smoothing: none",
        "normalisation: per-video z-score of scores, using each test video's own mean and standard deviation"
        if normalisation else "normalisation: none",
        "macro: mean over videos with both normal and anomalous items; single-class videos are skipped",
    ]


def _row(values: dict[str, Any]) -> str:
    cells = []
    for name in METRIC_NAMES:
        value = values.get(name)
        cells.append(f"{value:>7.3f}" if value is not None else f"{'n/a':>7}")
    return "".join(cells)
