"""The `subway` layout: one long Subway recording (entrance or exit) split into a training and a test part.

    ROOT = subway_entrance.avi (or a folder with exactly one video)
    annotations = a text file of anomalous frame ranges, one `START STOP` pair per line:
        # half-open frame indices counted from 0
        27420 27540
        39840 40020

The original ground truth of Adam et al. (2008) lists the frame numbers of each anomalous event; write
each event as its first index and one past its last (1-based frame numbers f..g become `f-1 g`).
The papers train on the first minutes of the recording and test on the rest: 15 minutes for the entrance
video and 5 minutes for the exit video. The minutes are chosen from the file name (containing `entrance`
or `exit`) unless given. The recording becomes two items over the same file: `<stem>_train` covers
`[0, minutes * 60)` seconds and `<stem>_test` the rest. Both carry the labels of every frame of the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from shards.collections.frame_ranges import labels_from_ranges, parse_range_lines
from shards.collections.listing import CollectionRequest, safe_stem
from shards.collections.video_files import count_frames, scan_videos
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_MINUTES = {"entrance": 15.0, "exit": 5.0}


def read_subway(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """Return the training and test parts of the Subway recording at `root`."""
    video = _find_video(root)
    minutes = _train_minutes(video, request.train_minutes)
    num_frames, fps = count_frames(video)
    boundary_s = minutes * 60.0
    duration_s = num_frames / fps
    if not boundary_s < duration_s:
        raise ShardsInputError(
            f"{video}: the training part ({minutes:g} min) is not shorter than the recording "
            f"({duration_s / 60:.2f} min), so no test part is left"
        )

    labels = None
    if request.annotations is not None:
        labels = _read_labels(request.annotations, num_frames)
        training_frames = labels[: int(round(boundary_s * fps))]
        if training_frames.any():
            logger.warning(
                "%s: %d anomalous frame(s) fall in the first %g min used for training",
                request.annotations, int(training_frames.sum()), minutes,
            )
    else:
        logger.warning("%s: no frame-range file given; the test part has no frame labels", video)

    items = []
    if request.wants("train"):
        items.append(_item(video, "train", labels, start_s=0.0, end_s=boundary_s))
    if request.wants("test"):
        items.append(_item(video, "test", labels, start_s=boundary_s, end_s=None))
    return items, []


def _find_video(root: Path) -> Path:
    if root.is_file():
        return root
    videos = scan_videos(root)
    if len(videos) != 1:
        raise ShardsInputError(
            f"{root}: found {len(videos)} videos; the subway layout takes one recording, "
            "so give the video file itself"
        )
    return videos[0]


def _train_minutes(video: Path, given: float | None) -> float:
    if given is not None:
        if not given > 0:
            raise ShardsInputError(f"the Subway training part must be positive, got {given} minutes")
        return float(given)
    name = video.name.lower()
    for part, minutes in DEFAULT_TRAIN_MINUTES.items():
        if part in name:
            return minutes
    raise ShardsInputError(
        f"{video}: cannot tell the entrance from the exit video by its name; give the training minutes "
        "(15 for the entrance, 5 for the exit)"
    )


def _read_labels(path: Path, num_frames: int) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ShardsInputError(f"{path}: cannot read frame-range file ({error})") from error
    ranges = parse_range_lines(text, source=str(path))
    return labels_from_ranges(ranges, num_frames, source=str(path))


def _item(
    video: Path, split: str, labels: np.ndarray | None, *, start_s: float, end_s: float | None
) -> SourceItem:
    return SourceItem(
        path=video,
        stem=safe_stem(video.stem, split),
        split=split,
        frame_labels=labels,
        collection="subway",
        start_s=start_s,
        end_s=end_s,
    )
