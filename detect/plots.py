"""PNG figures for evaluation and reports: ROC and PR curves, and per-video score timelines.

Figures are drawn with matplotlib's object API on the Agg canvas, so no display and no global backend
setting is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from detect.frame_scores import VideoFrames

_DPI = 100


def plot_roc(path: Path, labels: np.ndarray, scores: np.ndarray, *, title: str) -> Path:
    """Draw the ROC curve (false positive rate against true positive rate) with its AUROC in the legend."""
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores)
    area = float(auc(false_positive_rate, true_positive_rate))
    figure = Figure(figsize=(4.5, 4.5), dpi=_DPI)
    axes = figure.subplots()
    axes.plot(false_positive_rate, true_positive_rate, label=f"AUROC = {area:.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(
        xlabel="false positive rate (fraction of normal items)",
        ylabel="true positive rate (fraction of anomalous items)",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="lower right")
    figure.tight_layout()
    return _save(figure, path)


def plot_precision_recall(path: Path, labels: np.ndarray, scores: np.ndarray, *, title: str) -> Path:
    """Draw the precision-recall curve with the anomalous fraction (a random detector's precision) dashed."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    figure = Figure(figsize=(4.5, 4.5), dpi=_DPI)
    axes = figure.subplots()
    axes.plot(recall, precision, label="detector")
    axes.axhline(float(np.mean(labels)), linestyle="--", color="grey", label="chance (anomalous fraction)")
    axes.set(
        xlabel="recall (fraction of anomalous items found)",
        ylabel="precision (fraction of alarms correct)",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="lower left")
    figure.tight_layout()
    return _save(figure, path)


def plot_timeline(
    path: Path,
    frames: VideoFrames,
    *,
    threshold: float | None = None,
    marked_frames: list[int] | None = None,
    title: str | None = None,
) -> Path:
    """Draw one video's frame scores over time, with ground-truth anomalous frames shaded red.

    The x axis is in seconds when the frame rate is known, else in frames. `marked_frames` (frame indices,
    such as the centres of the top alarms) are drawn as vertical dotted lines.
    """
    times = frames.times_s
    unit_scale = frames.fps if times is not None else 1.0
    x = times if times is not None else frames.frame_indices.astype(np.float64)
    frame_span = 1.0 / unit_scale

    figure = Figure(figsize=(9, 3.4), dpi=_DPI)
    axes = figure.subplots()
    for start, stop in labelled_runs(frames.frame_indices, frames.labels == 1):
        axes.axvspan(start / unit_scale, stop / unit_scale, color="tab:red", alpha=0.2, linewidth=0)
    axes.plot(x, frames.scores, color="tab:blue", linewidth=1.2, label="anomaly score")
    if threshold is not None:
        axes.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label="alarm threshold")
    for frame in marked_frames or []:
        axes.axvline(frame / unit_scale, color="tab:orange", linestyle=":", linewidth=1)
    if (frames.labels == 1).any():
        axes.axvspan(0, 0, color="tab:red", alpha=0.2, label="ground-truth anomalous frames")

    axes.set(
        xlabel="time in the source video (s)" if times is not None else "frame index (frames)",
        ylabel="anomaly score\n(higher = more anomalous)",
        title=title or frames.source_name,
        xlim=(x[0], x[-1] + frame_span),
    )
    # Below the axes, so the legend never hides the scores.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, fontsize="small", frameon=False)
    figure.tight_layout()
    return _save(figure, path)


def timeline_file_name(video: str, index: int) -> str:
    """Return a safe, unique PNG file name for a video's timeline."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(video).stem)[:60] or "video"
    return f"timeline-{index:03d}-{stem}.png"


def labelled_runs(frame_indices: np.ndarray, flags: np.ndarray) -> list[tuple[int, int]]:
    """Return half-open [start, stop) frame ranges of consecutive frames whose flag is set."""
    runs: list[tuple[int, int]] = []
    start = previous = None
    for frame, flag in zip(frame_indices.tolist(), flags.tolist()):
        if flag and start is not None and frame == previous + 1:
            previous = frame
            continue
        if start is not None:
            runs.append((start, previous + 1))
            start = None
        if flag:
            start = previous = frame
    if start is not None:
        runs.append((start, previous + 1))
    return runs


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path
