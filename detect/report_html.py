"""HTML pieces shared by the alarm report's pages: the page shell, style, media elements and clip facts.

Pages use relative links only, inline CSS and no scripts, so a report opens from disk without a network.
"""

from __future__ import annotations

import html
import json
from typing import Any

from detect.json_files import finite_float
from detect.report_media import MediaItem

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; font-size: 14px; }
.alarm { border: 1px solid #999; border-radius: 6px; padding: 0.8em; margin: 1.2em 0; }
.alarm:target { border: 2px solid #e67e22; }
.far { background: #fde2e1; border: 1px solid #c0392b; padding: 4px 8px; display: inline-block; }
.missing { color: #a00; font-style: italic; }
.media { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 0.5em 0; }
.media figure { margin: 0; }
.media figcaption { font-size: 12px; color: #555; }
.driver { font-weight: bold; }
.pager a, .pager span { margin-right: 0.6em; }
svg { max-width: 100%; height: auto; }
img { display: block; }
.curve img { width: 360px; }
.key { font-family: monospace; }
"""


def escape(text: str) -> str:
    """Escape text for HTML element content and quoted attribute values."""
    return html.escape(text, quote=True)


def page(title: str, body: list[str]) -> str:
    """Return a whole HTML document with the report's style."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def image_or_reason(item: MediaItem, *, alt: str, what: str = "thumbnails", prefix: str = "") -> str:
    """Return an `<img>` of the item, or the reason it is missing; `prefix` leads relative paths."""
    if item.path:
        return f'<img src="{escape(prefix + item.path)}" alt="{escape(alt)}">'
    return f'<p class="missing">No {escape(what)}: {escape(item.reason or "unknown reason")}</p>'


def video_or_reason(item: MediaItem | None, *, label: str) -> str:
    """Return a looping, muted `<video>` with controls, or the reason there is no excerpt."""
    if item is None:
        return ""
    if item.path:
        return (
            f'<video src="{escape(item.path)}" controls loop muted preload="auto" '
            f'title="{escape(label)}"></video>'
        )
    return f'<p class="missing">No video excerpt: {escape(item.reason or "unknown reason")}</p>'


def audio_or_reason(item: MediaItem | None, *, label: str) -> str:
    """Return an `<audio>` element of the clip's WAV, or the reason it is missing; empty without audio."""
    if item is None:
        return ""
    if item.path:
        return (
            f'<audio src="{escape(item.path)}" controls preload="metadata" title="{escape(label)}"></audio>'
        )
    return f'<p class="missing">No audio: {escape(item.reason or "unknown reason")}</p>'


def figure(content: str, caption: str) -> str:
    """Wrap media HTML in a captioned figure."""
    return f"<figure>{content}<figcaption>{escape(caption)}</figcaption></figure>" if content else ""


def source_and_span(meta: dict[str, Any]) -> str:
    """Describe where a clip comes from: its source video's name and its time span in seconds."""
    name = meta.get("source_name") or meta.get("source") or "unknown source"
    start, end = finite_float(meta.get("start_s")), finite_float(meta.get("end_s"))
    span = f"{start:.2f}-{end:.2f} s" if start is not None and end is not None else "span unknown"
    return f"{name}, {span}"


def ground_truth(row: dict[str, Any]) -> str:
    """Describe the clip's labelled anomalous frames, so a reader can tell true from false alarms."""
    labels = row.get("frame_labels")
    if not isinstance(labels, list) or not labels:
        return "no frame labels"
    anomalous = sum(1 for label in labels if label)
    if anomalous == 0:
        return "normal"
    return f"{anomalous} of its {len(labels)} frames anomalous"


def as_text(value: Any) -> str:
    """Format a header value for a table: floats to 4 significant digits, dicts as key=value."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}={as_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)
