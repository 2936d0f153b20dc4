"""Static HTML report that explains the top alarms by their nearest normal clips.

The report is `index.html` plus `media/` (thumbnails, video excerpts, audio, spectrograms), `images/`
(plots) and `clips/` (every scored clip in paged tables), with relative links only, inline CSS and no
scripts, so it opens from disk without a network. For each top alarm it shows the clip beside its k
nearest normal clips with their distances, and marks alarms whose nearest normal clip is farther than the
reference distance stored at fit time ("nothing normal is near"). Clips that cannot be shown, and shard
folders that are missing, are marked with the reason; the page still renders.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from detect.atomic import atomic_folder
from detect.errors import DetectInputError
from detect.evaluate import Evaluation, evaluate_scores
from detect.frame_scores import frames_of_videos, video_id
from detect.json_files import finite_float, read_json_object, read_jsonl_objects
from detect.metrics import METRIC_NAMES
from detect.plots import plot_precision_recall, plot_roc
from detect.report_html import (
    as_text,
    audio_or_reason,
    escape,
    figure,
    ground_truth,
    image_or_reason,
    page,
    source_and_span,
    video_or_reason,
)
from detect.report_media import ClipMediaWriter
from detect.report_modalities import ModalityScores, build_modalities, modality_section
from detect.report_pages import pages_link_list, write_clip_pages
from detect.report_timeline import alarms_of_video, timeline_svg
from detect.scores import Scores
from detect.shard_clips import ShardClipIndex

logger = logging.getLogger(__name__)

# Timelines beyond this many videos are counted, not drawn; videos with top alarms come first.
MAX_TIMELINES = 20
DEFAULT_PAGE_SIZE = 100


def write_report(
    directory: str | os.PathLike,
    scores: Scores,
    shard_folders: list[Path],
    *,
    top: int = 12,
    metrics_path: Path | None = None,
    strip_frames: int = 4,
    modalities: list[tuple[str, Scores]] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Path:
    """Write the report folder atomically and return the path of its index.html.

    `modalities` adds (name, scores) pairs of the same clips scored on other embeddings, such as video
    and audio beside the joint ones. Each alarm then shows every modality's distances side by side.
    """
    if top < 1:
        raise DetectInputError(f"--top must be at least 1, got {top}")
    if page_size < 1:
        raise DetectInputError(f"--page-size must be at least 1, got {page_size}")
    compared = build_modalities(scores, modalities) if modalities else []
    metrics, metrics_note, evaluation = _load_or_compute_metrics(scores, metrics_path)
    ranked_all = sorted(scores.rows, key=lambda row: row["score"], reverse=True)
    ranked = ranked_all[:top]
    neighbour_meta = _NeighbourMetadata(scores)

    directory = Path(directory)
    with (
        ShardClipIndex(shard_folders) as shard_index,
        atomic_folder(directory, marker="index.html") as temporary,
    ):
        (temporary / "images").mkdir()
        (temporary / "media").mkdir()
        neighbour_meta.shard_index = shard_index
        media = ClipMediaWriter(shard_index, temporary / "media", "media", strip_frames=strip_frames)

        curves = _curve_images(metrics, metrics_path, evaluation, temporary / "images")
        timelines, omitted = _timelines(scores, ranked)
        alarm_sections = []
        for rank, row in enumerate(tqdm(ranked, desc="explaining alarms", unit="alarm"), start=1):
            alarm_sections.append(
                _alarm_section(rank, len(ranked_all), row, scores, media, neighbour_meta, compared)
            )
        threshold = finite_float(scores.header.get("threshold"))
        page_count = write_clip_pages(
            temporary, ranked_all, top=top, page_size=page_size, threshold=threshold
        )

        body = _summary(scores, shard_folders, compared, metrics, metrics_note, curves)
        body += _timeline_section(timelines, omitted)
        body += _shard_problems(shard_index)
        body.append(f"<h2>Top {len(ranked)} alarms</h2>")
        body.append(
            f"<p>All {len(ranked_all)} scored clips, highest score first, {page_size} per page:</p>"
            + pages_link_list(page_count, len(ranked_all), page_size)
        )
        body += alarm_sections
        (temporary / "index.html").write_text(page("latentwatch alarm report", body), encoding="utf-8")
    return directory / "index.html"


def _load_or_compute_metrics(
    scores: Scores, metrics_path: Path | None
) -> tuple[dict[str, Any] | None, str, Evaluation | None]:
    if metrics_path is not None:
        return read_json_object(metrics_path, role="metrics file"), f"from {metrics_path}", None
    try:
        evaluation = evaluate_scores(scores)
    except DetectInputError as error:
        return None, f"not computable: {error}", None
    return evaluation.metrics, "computed from the scores' labels, without smoothing", evaluation


def _curve_images(
    metrics: dict[str, Any] | None, metrics_path: Path | None, evaluation: Evaluation | None, images: Path
) -> list[tuple[str, str]]:
    """Copy the ROC and PR plots that `detect evaluate` wrote next to metrics.json, or draw them."""
    written = []
    if metrics_path is not None and metrics is not None:
        plots = metrics.get("plots") if isinstance(metrics.get("plots"), dict) else {}
        for name, title in (("roc", "ROC curve"), ("pr", "precision-recall curve")):
            file_name = plots.get(name)
            source = metrics_path.parent / file_name if isinstance(file_name, str) else None
            if source is not None and source.is_file():
                shutil.copyfile(source, images / f"{name}.png")
                written.append((title, f"images/{name}.png"))
            elif source is not None:
                logger.warning("the %s named in %s is missing: %s", title, metrics_path, source)
        return written
    if evaluation is None or len(set(evaluation.curve_labels.tolist())) < 2:
        return written
    plot_roc(
        images / "roc.png", evaluation.curve_labels, evaluation.curve_scores, title="ROC, frame level (micro)"
    )
    plot_precision_recall(
        images / "pr.png", evaluation.curve_labels, evaluation.curve_scores, title="PR, frame level (micro)"
    )
    return [("ROC curve", "images/roc.png"), ("precision-recall curve", "images/pr.png")]


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


def _timelines(scores: Scores, ranked: list[dict[str, Any]]) -> tuple[list[str], int]:
    """Return inline SVG timelines, videos with top alarms first, and the number of videos not drawn."""
    videos, _ = frames_of_videos(scores.rows)
    first_alarm: dict[str, int] = {}
    for position, row in enumerate(ranked):
        first_alarm.setdefault(video_id(row), position)
    # Sort is stable, so videos without top alarms keep their order.
    videos.sort(key=lambda video: first_alarm.get(video.video, len(ranked)))
    threshold = finite_float(scores.header.get("threshold"))

    drawn = []
    for index, video in enumerate(videos[:MAX_TIMELINES]):
        alarms = alarms_of_video(ranked, video.video, video_id)
        drawn.append(
            timeline_svg(video, alarms, threshold=threshold, anchor="#alarm-{rank}", salt=f"timeline-{index}")
        )
    return drawn, max(0, len(videos) - MAX_TIMELINES)


def _timeline_section(timelines: list[str], omitted: int) -> list[str]:
    body = [
        "<h2>Score timelines</h2>",
        "<p>Red shading: ground-truth anomalous frames. Dashed line: alarm threshold. "
        "Orange points: top alarms at their clip's centre frame; click one to open it.</p>",
    ]
    body += [f'<div class="timeline">{svg}</div>' for svg in timelines]
    if omitted:
        body.append(f"<p>{omitted} more videos are not drawn.</p>")
    return body


def _shard_problems(shard_index: ShardClipIndex) -> list[str]:
    body = []
    if shard_index.missing_folders:
        body.append("<h2>Shard folders not found</h2>")
        body.append("<p>Clips of these folders are shown without media.</p><ul>")
        for path, reason in shard_index.missing_folders:
            body.append(f"<li>{escape(str(path))}: {escape(reason)}</li>")
        body.append("</ul>")
    if shard_index.unreadable_tars:
        body.append("<h2>Unreadable shard files</h2><ul>")
        for path, reason in shard_index.unreadable_tars:
            body.append(f"<li>{escape(str(path))}: {escape(reason)}</li>")
        body.append("</ul>")
    return body


def _alarm_section(
    rank: int,
    total: int,
    row: dict[str, Any],
    scores: Scores,
    media: ClipMediaWriter,
    neighbour_meta: _NeighbourMetadata,
    modalities: list[ModalityScores],
) -> str:
    header = scores.header
    threshold = finite_float(header.get("threshold"))
    verdict = ""
    if threshold is not None:
        verdict = " (above the threshold)" if row["score"] > threshold else " (below the threshold)"
    parts = [
        f'<div class="alarm" id="alarm-{rank}"><h3>#{rank} of {total}: score {row["score"]:.4g}{verdict}, '
        f'<span class="key">{escape(row["key"])}</span></h3>',
        f"<p>{escape(source_and_span(row))}; ground truth: {escape(_ground_truth_verdict(row))}</p>",
        _clip_media(media, row["key"], row.get("fps"), label=f"alarm #{rank}"),
    ]

    neighbours = row.get("neighbours") or []
    parts.append(_far_note(neighbours, header))
    if modalities:
        parts.append(modality_section(row["key"], modalities))
    if not neighbours:
        parts.append(f"<p>No nearest normal clips: {escape(_no_neighbours_reason(row, scores))}</p>")
    else:
        parts.append(_neighbour_table(neighbours, media, neighbour_meta))
        nearest = neighbour_meta.get(neighbours[0]["key"]) or {}
        parts.append("<h4>Nearest normal clip, to compare with the alarm above</h4>")
        parts.append(
            _clip_media(media, neighbours[0]["key"], nearest.get("fps"), label="nearest normal clip")
        )
    parts.append("</div>")
    return "\n".join(part for part in parts if part)


def _clip_media(media: ClipMediaWriter, key: str, fps: Any, *, label: str) -> str:
    clip = media.excerpt(key, finite_float(fps))
    items = [
        figure(image_or_reason(clip.strip, alt=f"frames of {key}"), "frames"),
        figure(video_or_reason(clip.video, label=f"{label}: {key}"), "video excerpt (muted, loops)"),
    ]
    if clip.audio is not None:
        items.append(figure(audio_or_reason(clip.audio, label=f"{label}: audio of {key}"), "audio (WAV)"))
    if clip.spectrogram is not None:
        items.append(figure(image_or_reason(clip.spectrogram, alt=f"log-mel spectrogram of {key}",
                                            what="spectrogram"), "log-mel spectrogram"))
    return '<div class="media">' + "".join(items) + "</div>"


def _far_note(neighbours: list[dict[str, Any]], header: dict[str, Any]) -> str:
    reference = finite_float(header.get("nearest_distance_reference"))
    quantile = finite_float(header.get("reference_quantile"))
    if not neighbours or reference is None or neighbours[0]["distance"] <= reference:
        return ""
    quantile_text = f"the {quantile:g} quantile" if quantile is not None else "a high quantile"
    return (
        f'<p class="far">Nothing normal is near: the nearest normal clip is at distance '
        f'{neighbours[0]["distance"]:.4g}, above {reference:.4g}, '
        f"{quantile_text} of the distances from each normal clip to its nearest other normal clip.</p>"
    )


def _no_neighbours_reason(row: dict[str, Any], scores: Scores) -> str:
    detector = scores.header.get("detector") or "this"
    if "neighbours" not in row or not any(other.get("neighbours") for other in scores.rows):
        return (
            f"the {detector} detector's score is not a distance to normal clips, so its scores folder "
            "lists no neighbours to show"
        )
    return "the scores file lists no neighbours for this clip"


def _neighbour_table(
    neighbours: list[dict[str, Any]], media: ClipMediaWriter, neighbour_meta: _NeighbourMetadata
) -> str:
    parts = ["<table><tr><th>neighbour</th><th>distance</th><th>source and span</th><th>frames</th></tr>"]
    for position, neighbour in enumerate(neighbours, start=1):
        meta = neighbour_meta.get(neighbour["key"])
        span = source_and_span(meta) if meta else "metadata not found"
        strip = image_or_reason(media.strip(neighbour["key"]), alt="frames of " + neighbour["key"])
        parts.append(
            f'<tr><td>{position}. <span class="key">{escape(neighbour["key"])}</span></td>'
            f'<td>{neighbour["distance"]:.4g}</td><td>{escape(span)}</td><td>{strip}</td></tr>'
        )
    parts.append("</table>")
    return "\n".join(parts)


def _ground_truth_verdict(row: dict[str, Any]) -> str:
    truth = ground_truth(row)
    return f"{truth} (a false alarm)" if truth == "normal" else truth


def _summary(
    scores: Scores,
    shard_folders: list[Path],
    modalities: list[ModalityScores],
    metrics: dict[str, Any] | None,
    metrics_note: str,
    curves: list[tuple[str, str]],
) -> list[str]:
    header = scores.header
    embeddings_header = header.get("embeddings_header")
    if not isinstance(embeddings_header, dict):
        embeddings_header = {}
    threshold = finite_float(header.get("threshold"))
    above = sum(1 for row in scores.rows if threshold is not None and row["score"] > threshold)
    sources = sorted({str(row.get("source_name") or row.get("source") or "unknown") for row in scores.rows})
    summary_rows = [
        ("scored clips", f"{len(scores.rows)} from {len(sources)} videos: {', '.join(sources[:10])}"
                         + (" ..." if len(sources) > 10 else "")),
        ("shard sets", "; ".join(_shard_set_summary(folder) for folder in shard_folders)),
        ("detector", header.get("detector")),
        ("settings", header.get("settings")),
        ("normal clips fitted", header.get("normal_count")),
        ("encoder", embeddings_header.get("encoder")),
        ("encoder checkpoint", embeddings_header.get("checkpoint")),
        ("embedding", f"{embeddings_header.get('modality')}, dimension {header.get('dimension')}"),
        ("model folder", header.get("model")),
        ("embeddings folder", header.get("embeddings")),
        ("alarm threshold",
         f"{threshold:.4g} ({above} clips above it)" if threshold is not None else "not stored"),
        ("nearest-normal reference distance",
         f"{as_text(header.get('nearest_distance_reference'))} "
         f"(quantile {header.get('reference_quantile')})"),
    ]
    if modalities:
        summary_rows.append(("modalities compared", ", ".join(modality.name for modality in modalities)))
    body = ["<h1>latentwatch alarm report</h1>", "<h2>Summary</h2>", "<table>"]
    for name, value in summary_rows:
        body.append(f"<tr><th>{escape(name)}</th><td>{escape(as_text(value))}</td></tr>")
    body.append("</table>")

    body.append(f"<h2>Metrics</h2><p>{escape(metrics_note)}</p>")
    if metrics:
        body.append(_metrics_table(metrics))
    if curves:
        body.append('<div class="media curve">')
        body += [figure(f'<img src="{escape(path)}" alt="{escape(title)}">', title) for title, path in curves]
        body.append("</div>")
    return body


def _shard_set_summary(folder: Path) -> str:
    """Describe a shard set by its index.json (clip count, duration, clip length), or name why it cannot."""
    index_path = folder / "index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{folder} (index.json not readable: {error.__class__.__name__})"
    if not isinstance(index, dict):
        return f"{folder} (index.json is not an object)"
    return (
        f"{folder}: {index.get('num_clips')} clips, {as_text(index.get('total_seconds'))} s, "
        f"{as_text(index.get('clip_seconds'))} s clips every {as_text(index.get('stride_seconds'))} s"
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
    rows.append(f"<p>Smoothing: {escape(as_text(smoothing) if smoothing else 'none')}</p>")
    return "\n".join(rows)
