"""Find video files under a collection's root, and count the frames of one when its labels need it.

The extensions are the ones `latentwatch shards build` scans directories for. Counting frames opens the
video with `VideoFile`, the class the builder cuts it with, so a label array always has the length the
builder sees.
"""

from __future__ import annotations

from pathlib import Path

from shards.decode import VideoFile

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp"}
)


def scan_videos(root: Path) -> list[Path]:
    """Return the video files under `root`, scanned recursively, in sorted order; hidden files are skipped."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")
    )


def count_frames(video: Path) -> tuple[int, float]:
    """Return the frame count and frame rate of `video`; raises `ShardsInputError` if it is not a video."""
    opened = VideoFile(video)
    return opened.num_frames, opened.fps
