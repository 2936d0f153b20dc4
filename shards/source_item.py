"""One input of a shard build: where its pictures are, what it is called, and what is known about it.

Collection readers (a folder of videos, Kinetics and AudioSet CSVs, the anomaly benchmarks, a manifest) turn
their layouts into a list of `SourceItem`s. The builder then cuts each item into clips the same way, whatever
the collection. Keeping this the only thing they share lets a new layout be added without touching the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SourceItem:
    """A video file, or a folder of frame images, with its label and per-frame ground truth."""

    path: Path
    """A video file, or a folder of frame images (sorted by name) when `fps` is set."""
    stem: str
    """Unique within a build; clip keys are `<stem>-<start ms>`. Readers derive it from the path."""
    label: str | None = None
    """Class label of the whole item (Kinetics class, AudioSet label names joined by ';'), if known."""
    split: str | None = None
    """'train', 'val', 'test' or None, as the collection's layout defines it."""
    frame_labels: np.ndarray | None = None
    """0/1 anomaly label of every frame of the file, shape (num_frames,), int8; None when it has none."""
    fps: float | None = None
    """Frame rate of a frame-image folder (the benchmarks publish it); None for video files."""
    collection: str = "folder"
    """Name of the reader that produced the item ('folder', 'kinetics', 'audioset', 'ucsd', 'avenue', ...)."""
    start_s: float | None = None
    """Start of the part of `path` this item covers, in seconds from the file's start; None is the start.

    One long recording can give several items this way: the Subway benchmark trains on its first minutes
    and tests on the rest of the same file. `frame_labels` still index the frames of the whole file.
    """
    end_s: float | None = None
    """End (exclusive) of the part of `path` this item covers, in seconds; None is the end of the file."""

    @property
    def is_frame_folder(self) -> bool:
        """True when `path` is a folder of frame images rather than a video file."""
        return self.fps is not None
