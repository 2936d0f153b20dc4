"""The `avenue` layout: CUHK Avenue, its videos and the frame masks of its ground truth.

    ROOT/training_videos/01.avi ... 16.avi           normal training videos
    ROOT/testing_videos/01.avi ... 21.avi            test videos
    ROOT/.../testing_label_mask/1_label.mat ...      ground truth of test video N (from ground_truth_demo.zip)

The authors distribute `Avenue Dataset.zip` (the two video folders) and `ground_truth_demo.zip`, whose
`testing_label_mask/N_label.mat` holds `volLabel`, a cell array with one mask per frame. A frame is
anomalous when its mask has a positive pixel. `testing_label_mask` is searched for anywhere under ROOT,
so the ground-truth archive can be unpacked inside the dataset folder or next to the videos.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.io

from shards.collections.listing import CollectionRequest, safe_stem
from shards.collections.video_files import count_frames, scan_videos
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

MASK_FOLDER = "testing_label_mask"


def read_avenue(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """List the training and testing videos, with frame labels from the masks for the testing ones."""
    training, testing = root / "training_videos", root / "testing_videos"
    if not training.is_dir() and not testing.is_dir():
        raise ShardsInputError(f"{root}: no training_videos/ or testing_videos/ folder; is this CUHK Avenue?")

    items: list[SourceItem] = []
    missing: list[dict] = []
    if request.wants("train") and training.is_dir():
        for video in scan_videos(training):
            items.append(_item(video, "train", None))

    if request.wants("test") and testing.is_dir():
        mask_folder = _find_mask_folder(root)
        if mask_folder is None:
            logger.warning("%s: no %s/ folder found; test videos have no frame labels", root, MASK_FOLDER)
        for video in scan_videos(testing):
            labels = None
            if mask_folder is not None:
                mat = mask_folder / f"{_video_number(video)}_label.mat"
                if mat.is_file():
                    labels = read_label_mat(mat)
                    _check_length(labels, video, mat)
                else:
                    reason = f"no ground truth for {video.name}; kept without frame labels"
                    missing.append({"entry": str(mat), "reason": reason})
            items.append(_item(video, "test", labels))
    return items, missing


def _check_length(labels: np.ndarray, video: Path, mat: Path) -> None:
    """Raise when the masks do not give one label per video frame: a shifted label is worse than none."""
    num_frames, _ = count_frames(video)
    if len(labels) != num_frames:
        raise ShardsInputError(
            f"{mat}: volLabel has {len(labels)} masks but {video} has {num_frames} frames; "
            "check that the ground truth belongs to this video"
        )


def _item(video: Path, split: str, labels: np.ndarray | None) -> SourceItem:
    return SourceItem(
        path=video,
        stem=safe_stem("avenue", split, video.stem),
        split=split,
        frame_labels=labels,
        collection="avenue",
    )


def _video_number(video: Path) -> str:
    """Return `7` for `07.avi`: the mask files are numbered without the leading zero."""
    return str(int(video.stem)) if video.stem.isdigit() else video.stem


def _find_mask_folder(root: Path) -> Path | None:
    found = sorted(path for path in root.rglob(MASK_FOLDER) if path.is_dir())
    return found[0] if found else None


def read_label_mat(path: Path) -> np.ndarray:
    """Return 1 for every frame whose mask in `volLabel` has a positive pixel, as int8 `(num_frames,)`."""
    try:
        contents = scipy.io.loadmat(str(path))
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as error:
        # NotImplementedError: MATLAB v7.3 files are HDF5, which loadmat does not read.
        raise ShardsInputError(f"{path}: cannot read MATLAB file ({error})") from error
    if "volLabel" not in contents:
        raise ShardsInputError(f"{path}: no variable 'volLabel' (found: {', '.join(_variables(contents))})")

    masks = np.asarray(contents["volLabel"]).reshape(-1)  # (num_frames,) cell array of (H, W) masks
    if masks.dtype != object:
        raise ShardsInputError(f"{path}: 'volLabel' is not a cell array of per-frame masks")
    return np.array([int(np.asarray(mask).any()) for mask in masks], dtype=np.int8)


def _variables(contents: dict) -> list[str]:
    return [name for name in contents if not name.startswith("__")] or ["none"]
