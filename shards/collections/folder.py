"""The `folder` layout: videos under a root, scanned recursively, labelled by their class folder.

    ROOT/abseiling/xyz_000010_000020.mp4     label 'abseiling'
    ROOT/train/abseiling/...                 split 'train', label 'abseiling'
    ROOT/walkway.mp4 (+ walkway.labels.json) no label; frame labels from the sidecar

A first-level folder named like a split (train, training, val, validation, test, testing) sets the
item's split, and the next folder is the class. Otherwise the first-level folder is the class.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shards.collections.listing import CollectionRequest, normalise_split, safe_stem
from shards.collections.video_files import count_frames, scan_videos
from shards.errors import ShardsInputError
from shards.labels import read_frame_labels, sidecar_path
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)


def read_folder(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """List every video under `root` with its class folder, split folder and sidecar frame labels."""
    items: list[SourceItem] = []
    missing: list[dict] = []
    videos = [root] if root.is_file() else scan_videos(root)
    if not videos:
        logger.warning("%s: no video files found", root)

    for video in videos:
        folders = video.relative_to(root).parts[:-1] if video != root else ()
        split = normalise_split(folders[0]) if folders else None
        class_folders = folders[1:] if split is not None else folders
        label = class_folders[0] if class_folders else None
        if not request.wants(split):
            continue

        frame_labels = None
        if sidecar_path(video).exists():
            # Only labelled videos are opened here: the sidecar must match the frame count the builder sees.
            try:
                num_frames, _ = count_frames(video)
            except ShardsInputError as error:
                missing.append({"entry": str(video), "reason": str(error)})
                continue
            frame_labels = read_frame_labels(video, num_frames).astype("int8")

        items.append(
            SourceItem(
                path=video,
                stem=safe_stem(video.stem),
                label=label,
                split=split,
                frame_labels=frame_labels,
                collection="folder",
            )
        )
    return items, missing
