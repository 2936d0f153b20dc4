"""Static HTML report that explains the top alarms by their nearest normal clips.

The report is `index.html` plus `images/`, with relative links only, inline CSS and no scripts, so it
opens from disk without a network. For each top alarm it shows the clip's frames and its k nearest normal
clips with their distances, and marks alarms whose nearest normal clip is farther than the reference
distance stored at fit time ("nothing normal is near").
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from detect.atomic import atomic_folder
from detect.errors import DetectInputError
from detect.evaluate import evaluate_scores
from detect.frame_scores import frames_of_videos, video_id
from detect.json_files import finite_float, read_json_object, read_jsonl_objects
from detect.metrics import METRIC_NAMES
from detect.plots import plot_timeline, timeline_file_name
from detect.scores import Scores
from detect.shard_clips import ShardClipIndex

logger = logging.getLogger(__name__)

# Timelines beyond this many videos are counted, not drawn; videos with top alarms come first.
MAX_TIMELINES = 20

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; font-size: 14px; }
.alarm { border: 1px solid #999; border-radius: 6px; padding: 0.8em; margin: 1.2em 0; }
.far { background: #fde2e1; border: 1px solid #c0392b; padding: 4px 8px; display: inline-block; }
.missing { color: #a00; font-style: italic; }
img { display: block; }
.key { font-family: monospace; }
"""


def write_report(
    directory: str | os.PathLike,
    scores: Scores,
    shard_folders: list[Path],
    *,
    top: int = 12,
    metrics_path: Path | None = None,
    strip_frames: int = 4,
) -> Path:
    """Write the report folder atomically and return the path of its index.html."""
    if top < 1:
        raise DetectInputError(f"--top must be at least 1, got {top}")
    metrics, metrics_note = _load_or_compute_metrics(scores, metrics_path)
    ranked = sorted(scores.rows, key=lambda row: row["score"], reverse=True)[:top]
    neighbour_meta = _NeighbourMetadata(scores)

    directory = Path(directory)
    with (
        ShardClipIndex(shard_folders) as shard_index,
        atomic_folder(directory, marker="index.html") as temporary,
    ):
        images = temporary / "images"
        images.mkdir()
        neighbour_meta.shard_index = shard_index
        strips = _StripWriter(shard_index, images, strip_frames)

        timelines, omitted = _write_timelines(scores, ranked, images)
        alarm_sections = []
        for rank, row in enumerate(tqdm(ranked, desc="explaining alarms", unit="alarm"), start=1):
            alarm_sections.append(_alarm_section(rank, row, scores.header, strips, neighbour_meta))

        page = _page(scores, metrics, metrics_note, timelines, omitted, alarm_sections, shard_index, top)
        (temporary / "index.html").write_text(page, encoding="utf-8")
    return directory / "index.html"


def _load_or_compute_metrics(scores: Scores, metrics_path: Path | None) -> tuple[dict[str, Any] | None, str]:
    if metrics_path is not None:
        return read_json_object(metrics_path, role="metrics file"), f"from {metrics_path}"
    try:
        return evaluate_scores(scores).metrics, "computed from the scores' labels, without smoothing"
    except DetectInputError as error:
        return None, f"not computable: {error}"


class _NeighbourMetadata:
    """Clip metadata by key: from the scored rows, else the shards' JSON, else the detector's meta.jsonl."""

    def __init__(self, scores: Scores) -> None:
        self.by_key = {row["key"]: row for row in scores.rows}
        self.shard_index: ShardClipIndex | None = None
        model = scores.header.get("model")
        self.detector_meta: dict[str, dict[str, Any]] = {}
        if isinstance(model, str) and (Path(model) / "meta.jsonl").is_file():
            try:
                rows = read_jsonl_objects(Path(model) / "meta.jsonl", role="detector metadata")
                self.detector_meta = {row.get("key"): row for row in rows}
            except DetectInputError as error:
                logger.warning("ignoring the detector's metadata: %s", error)

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.by_key:
            return self.by_key[key]
        shard_meta = self.shard_index.metadata(key) if self.shard_index else None
        return shard_meta if shard_meta is not None else self.detector_meta.get(key)


class _StripWriter:
    """Thumbnail strip writer that draws each clip once and returns its path, or the reason it is missing."""

    def __init__(self, shard_index: ShardClipIndex, images: Path, frame_count: int) -> None:
        self.shard_index = shard_index
        self.images = images
        self.frame_count = frame_count
        self.done: dict[str, tuple[str | None, str | None]] = {}

    def strip(self, key: str) -> tuple[str | None, str | None]:
        if key not in self.done:
            name = f"clip-{len(self.done):04d}-{re.sub(r'[^A-Za-z0-9_-]', '_', key)[:60]}.jpg"
            reason = self.shard_index.write_thumbnail_strip(
                key, self.images / name, frame_count=self.frame_count
            )
            self.done[key] = (None, reason) if reason else (f"images/{name}", None)
        return self.done[key]


def _write_timelines(
    scores: Scores, ranked: list[dict[str, Any]], images: Path
) -> tuple[list[tuple[str, str]], int]:
    videos, _ = frames_of_videos(scores.rows)
    alarm_videos = [video_id(row) for row in ranked]
    # Videos with top alarms come first, in alarm order; sort is stable, so the rest keep their order.
    first_alarm = {}
    for position, video in enumerate(alarm_videos):
        first_alarm.setdefault(video, position)
    videos.sort(key=lambda video: first_alarm.get(video.video, len(ranked)))
    threshold = finite_float(scores.header.get("threshold"))

    written = []
    for index, video in enumerate(videos[:MAX_TIMELINES]):
        marked = [_centre_frame(row) for row in ranked if video_id(row) == video.video]
        name = timeline_file_name(video.video, index)
        plot_timeline(
            images / name,
            video,
            threshold=threshold,
            marked_frames=[frame for frame in marked if frame is not None],
            title=f"{video.source_name}: frame scores (dotted: top alarms)",
        )
        written.append((video.source_name, f"images/{name}"))
    return written, max(0, len(videos) - MAX_TIMELINES)


def _centre_frame(row: dict[str, Any]) -> int | None:
    indices = row.get("frame_indices")
    return int(indices[len(indices) // 2]) if isinstance(indices, list) and indices else None


def _alarm_section(
    rank: int,
    row: dict[str, Any],
    header: dict[str, Any],
    strips: _StripWriter,
    neighbour_meta: _NeighbourMetadata,
) -> str:
    image, reason = strips.strip(row["key"])
    parts = [
        f'<div class="alarm"><h3>#{rank}: score {row["score"]:.4g}, '
        f'<span class="key">{_escape(row["key"])}</span></h3>',
        f"<p>{_escape(_source_and_span(row))}{_escape(_ground_truth(row))}</p>",
        _image_or_reason(image, reason, alt=f"frames of {row['key']}"),
    ]

    neighbours = row.get("neighbours") or []
    reference = finite_float(header.get("nearest_distance_reference"))
    quantile = finite_float(header.get("reference_quantile"))
    if neighbours and reference is not None and neighbours[0]["distance"] > reference:
        parts.append(
            f'<p class="far">Nothing normal is near: the nearest normal clip is at distance '
            f'{neighbours[0]["distance"]:.4g}, above {reference:.4g}, '
            f"the {quantile:g} quantile of the distances "
            f"from each normal clip to its nearest other normal clip.</p>"
        )
    if not neighbours:
        parts.append("<p>This detector lists no neighbours.</p>")
    else:
        parts.append(
            "<table><tr><th>neighbour</th><th>distance</th><th>source and span</th><th>frames</th></tr>"
        )
        for position, neighbour in enumerate(neighbours, start=1):
            meta = neighbour_meta.get(neighbour["key"])
            span = _source_and_span(meta) if meta else "metadata not found"
            n_image, n_reason = strips.strip(neighbour["key"])
            parts.append(
                f'<tr><td>{position}. <span class="key">{_escape(neighbour["key"])}</span></td>'
                f'<td>{neighbour["distance"]:.4g}</td><td>{_escape(span)}</td>'
                f'<td>{_image_or_reason(n_image, n_reason, alt="frames of " + neighbour["key"])}</td></tr>'
            )
        parts.append("</table>")
    parts.append("</div>")
    return "\n".join(parts)


def _ground_truth(row: dict[str, Any]) -> str:
    """Describe the clip's labelled anomalous frames, so a reader can tell true from false alarms."""
    labels = row.get("frame_labels")
    if not isinstance(labels, list) or not labels:
        return ""
    anomalous = sum(1 for label in labels if label)
    if anomalous == 0:
        return "; ground truth: normal (a false alarm)"
    return f"; ground truth: {anomalous} of its {len(labels)} frames anomalous"


def _source_and_span(meta: dict[str, Any]) -> str:
    name = meta.get("source_name") or meta.get("source") or "unknown source"
    start, end = finite_float(meta.get("start_s")), finite_float(meta.get("end_s"))
    span = f"{start:.2f}-{end:.2f} s" if start is not None and end is not None else "span unknown"
    return f"{name}, {span}"


def _image_or_reason(image: str | None, reason: str | None, *, alt: str) -> str:
    if image:
        return f'<img src="{_escape(image)}" alt="{_escape(alt)}">'
    return f'<p class="missing">No thumbnails: {_escape(reason or "unknown reason")}</p>'


def _page(
    scores: Scores,
    metrics: dict[str, Any] | None,
    metrics_note: str,
    timelines: list[tuple[str, str]],
    timelines_omitted: int,
    alarm_sections: list[str],
    shard_index: ShardClipIndex,
    top: int,
) -> str:
    header = scores.header
    threshold = finite_float(header.get("threshold"))
    above = sum(1 for row in scores.rows if threshold is not None and row["score"] > threshold)
    summary_rows = [
        ("detector", header.get("detector")),
        ("settings", header.get("settings")),
        ("model folder", header.get("model")),
        ("embeddings folder", header.get("embeddings")),
        ("embeddings header", header.get("embeddings_header")),
        ("clips scored", len(scores.rows)),
        (
            "alarm threshold",
            f"{threshold:.4g} ({above} clips above it)" if threshold is not None else "not stored",
        ),
        ("nearest-normal reference distance",
         f"{_as_text(header.get('nearest_distance_reference'))} (quantile {header.get('reference_quantile')})"),
    ]
    body = ["<h1>latentwatch alarm report</h1>", "<h2>Summary</h2>", "<table>"]
    for name, value in summary_rows:
        body.append(f"<tr><th>{_escape(name)}</th><td>{_escape(_as_text(value))}</td></tr>")
    body.append("</table>")

    body.append(f"<h2>Metrics</h2><p>{_escape(metrics_note)}</p>")
    if metrics:
        body.append(_metrics_table(metrics))

    body.append("<h2>Score timelines</h2>")
    body.append("<p>Red shading: ground-truth anomalous frames. Dashed line: alarm threshold.</p>")
    for name, path in timelines:
        body.append(f"<h3>{_escape(name)}</h3>")
        body.append(f'<img src="{_escape(path)}" alt="score timeline of {_escape(name)}">')
    if timelines_omitted:
        body.append(f"<p>{timelines_omitted} more videos are not drawn.</p>")

    if shard_index.unreadable_tars:
        body.append("<h2>Unreadable shard files</h2><ul>")
        for path, reason in shard_index.unreadable_tars:
            body.append(f"<li>{_escape(str(path))}: {_escape(reason)}</li>")
        body.append("</ul>")

    body.append(f"<h2>Top {min(top, len(scores.rows))} alarms</h2>")
    body += alarm_sections
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>latentwatch alarm report</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _metrics_table(metrics: dict[str, Any]) -> str:
    metric_headers = "".join(f"<th>{name.upper()}</th>" for name in METRIC_NAMES)
    rows = [f"<table><tr><th>rule</th><th>scope</th>{metric_headers}</tr>"]
    for section in ("frame", "centre_frame", "clip"):
        if not isinstance(metrics.get(section), dict):
            continue
        for scope in ("micro", "macro"):
            values = metrics[section].get(scope) or {}
            cells = "".join(
                f"<td>{values[n]:.3f}</td>" if isinstance(values.get(n), (int, float)) else "<td>n/a</td>"
                for n in METRIC_NAMES
            )
            rows.append(f"<tr><td>{section}</td><td>{scope}</td>{cells}</tr>")
    rows.append("</table>")
    smoothing = metrics.get("smoothing")
    rows.append(f"<p>Smoothing: {_escape(_as_text(smoothing) if smoothing else 'none')}</p>")
    return "\n".join(rows)


def _as_text(value: Any) -> str:
    """Format a header value for the summary table: floats to 4 significant digits, dicts as key=value."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_as_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
