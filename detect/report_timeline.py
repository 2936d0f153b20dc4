"""Score timelines of the alarm report as inline SVG, where each top alarm's peak links to its section.

Matplotlib's SVG backend wraps every marker of a scatter plot that has `urls` in an `<a>` element, so the
links work without any script. The SVG text is inlined into the page, because links inside an SVG shown
through `<img>` are not clickable.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from detect.frame_scores import VideoFrames
from detect.plots import labelled_runs


@dataclass
class TimelineAlarm:
    """A top alarm drawn on a timeline: its rank, clip score and centre frame index."""

    rank: int
    score: float
    centre_frame: int


def timeline_svg(
    frames: VideoFrames,
    alarms: list[TimelineAlarm],
    *,
    threshold: float | None,
    anchor: str,
    salt: str,
) -> str:
    """Return an `<svg>` element of one video's frame scores with ground truth shaded and linked alarm peaks.

    `anchor` formats a rank into the fragment of the alarm's section, such as `"#alarm-{rank}"`. `salt`
    makes the SVG's internal ids unique when several timelines share one page.
    """
    times = frames.times_s
    unit_scale = frames.fps if times is not None else 1.0
    x = times if times is not None else frames.frame_indices.astype(np.float64)  # (F,)

    figure = Figure(figsize=(9, 3.2), dpi=100)
    axes = figure.subplots()
    for start, stop in labelled_runs(frames.frame_indices, frames.labels == 1):
        axes.axvspan(start / unit_scale, stop / unit_scale, color="tab:red", alpha=0.2, linewidth=0)
    axes.plot(x, frames.scores, color="tab:blue", linewidth=1.2, label="anomaly score")
    if threshold is not None:
        axes.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label="alarm threshold")
    if (frames.labels == 1).any():
        axes.axvspan(0, 0, color="tab:red", alpha=0.2, label="ground-truth anomalous frames")

    if alarms:
        alarm_x = np.array([alarm.centre_frame / unit_scale for alarm in alarms])
        alarm_y = np.array([alarm.score for alarm in alarms])
        axes.scatter(
            alarm_x, alarm_y, s=90, color="tab:orange", edgecolor="black", zorder=3,
            label="top alarm (click to open)", urls=[anchor.format(rank=alarm.rank) for alarm in alarms],
        )
        for alarm, alarm_time in zip(alarms, alarm_x):
            axes.annotate(f"#{alarm.rank}", (alarm_time, alarm.score), textcoords="offset points",
                          xytext=(0, 7), ha="center", fontsize=8)

    axes.set(
        xlabel="time in the source video (s)" if times is not None else "frame index (frames)",
        ylabel="anomaly score\n(higher = more anomalous)",
        title=frames.source_name,
        xlim=(x[0], x[-1] + 1.0 / unit_scale),
    )
    # Below the axes, so the legend never hides the scores.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize="small", frameon=False)
    figure.tight_layout()

    buffer = io.StringIO()
    # Text stays text (smaller, selectable); the salt keeps clip-path ids apart between timelines.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        FigureCanvasSVG(figure)
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def alarms_of_video(ranked: list[dict[str, Any]], video: str, video_of: Any) -> list[TimelineAlarm]:
    """Return the top alarms of one video, given the ranked rows and a function mapping a row to its video."""
    alarms = []
    for rank, row in enumerate(ranked, start=1):
        centre = centre_frame(row)
        if video_of(row) == video and centre is not None:
            alarms.append(TimelineAlarm(rank=rank, score=float(row["score"]), centre_frame=centre))
    return alarms


def centre_frame(row: dict[str, Any]) -> int | None:
    """Return the clip's centre stored frame index, or None when it has no frame indices."""
    indices = row.get("frame_indices")
    return int(indices[len(indices) // 2]) if isinstance(indices, list) and indices else None
