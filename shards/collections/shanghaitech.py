"""The `shanghaitech` layout: ShanghaiTech Campus, training videos and test frame folders.

    ROOT/training/videos/01_001.avi ...              normal training videos (13 scenes)
    ROOT/testing/frames/01_0014/000.jpg ...          test clips as JPEG frames
    ROOT/testing/test_frame_mask/01_0014.npy         0/1 label per frame of that clip

This is the layout of the authors' `shanghaitech.tar.gz`. The test frames carry no frame rate, so they are
read at 24 fps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from shards.collections.listing import CollectionRequest, safe_stem
from shards.collections.video_files import scan_videos
from shards.errors import ShardsInputError
from shards.frame_folder import list_frame_images
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

SHANGHAITECH_FPS = 24.0


def read_shanghaitech(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """List training videos and test frame folders, with frame labels from `test_frame_mask`."""
    training, frames = root / "training" / "videos", root / "testing" / "frames"
    if not training.is_dir() and not frames.is_dir():
        raise ShardsInputError(
            f"{root}: no training/videos/ or testing/frames/ folder; is this the ShanghaiTech Campus dataset?"
        )

    items: list[SourceItem] = []
    missing: list[dict] = []
    if request.wants("train") and training.is_dir():
        for video in scan_videos(training):
            stem = safe_stem(video.stem)
            items.append(SourceItem(path=video, stem=stem, split="train", collection="shanghaitech"))

    if request.wants("test") and frames.is_dir():
        mask_folder = root / "testing" / "test_frame_mask"
        clips = sorted(
            child for child in frames.iterdir() if child.is_dir() and not child.name.startswith(".")
        )
        for clip in clips:
            num_frames = len(list_frame_images(clip))
            if num_frames == 0:
                missing.append({"entry": str(clip), "reason": "no frame images"})
                continue
            mask = mask_folder / f"{clip.name}.npy"
            labels = None
            if mask.is_file():
                labels = read_frame_mask(mask, num_frames)
            else:
                reason = f"no frame mask for {clip.name}; kept without frame labels"
                missing.append({"entry": str(mask), "reason": reason})
            items.append(
                SourceItem(
                    path=clip,
                    stem=safe_stem(clip.name),
                    split="test",
                    frame_labels=labels,
                    fps=SHANGHAITECH_FPS,
                    collection="shanghaitech",
                )
            )
    return items, missing


def read_frame_mask(path: Path, num_frames: int) -> np.ndarray:
    """Return the 0/1 frame labels in `path` as int8 `(num_frames,)`; raise if they are not one per frame."""
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ShardsInputError(f"{path}: cannot read frame mask ({error})") from error

    mask = np.asarray(mask).reshape(-1)
    if len(mask) != num_frames:
        raise ShardsInputError(
            f"{path}: {len(mask)} labels for {num_frames} frames in {path.stem}; check the frame folder"
        )
    if not np.isin(mask, (0, 1)).all():
        raise ShardsInputError(f"{path}: frame labels must be 0 or 1")
    return mask.astype(np.int8)
