"""The `ucsd` layout: UCSD Anomaly Detection Dataset, Ped1 and Ped2, as distributed (TIFF frame folders).

    ROOT = UCSD_Anomaly_Dataset.v1p2/ (both sets) or UCSDped1/ or UCSDped2/ (one set)
    UCSDped1/Train/Train001/001.tif ...        normal training clips
    UCSDped1/Test/Test001/001.tif ...          test clips
    UCSDped1/Test/Test003_gt/001.bmp ...       pixel masks of some test clips (Ped1: 10 of 36; Ped2: all)
    UCSDped1/Test/UCSDped1.m                   frame-level ground truth, one line per test clip:
        TestVideoFile{end+1}.gt_frame = [60:152];

The `.m` file lists the anomalous frames of the Nth test clip on its Nth `TestVideoFile{end+1}` line, as
1-based inclusive MATLAB ranges (`[5:90, 140:200]` for two ranges). It is the frame-level ground truth the
dataset ships, so it wins. A pixel-mask folder gives the labels of a clip the `.m` file does not
cover (a frame is anomalous when its mask has a positive pixel), and a disagreement is logged.
Frames are read at 10 fps: TIFF frames carry no rate of their own.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shards.collections.listing import CollectionRequest, safe_stem
from shards.errors import ShardsInputError
from shards.frame_folder import list_frame_images
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

UCSD_FPS = 10.0

_GT_LINE = re.compile(r"TestVideoFile\s*\{\s*end\s*\+\s*1\s*\}\s*\.\s*gt_frame\s*=\s*\[(?P<ranges>[^\]]*)\]")
_CLIP_FOLDER = re.compile(r"^(Train|Test)\d+$")


def read_ucsd(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """List the Train and Test clips of every UCSD set under `root`, with frame labels for the test clips."""
    sets = [root] if (root / "Train").is_dir() or (root / "Test").is_dir() else _find_sets(root)
    if not sets:
        raise ShardsInputError(
            f"{root}: no UCSD set found; expected Train/ and Test/ folders here or in UCSDped1/ and UCSDped2/"
        )

    items: list[SourceItem] = []
    missing: list[dict] = []
    for set_root in sets:
        set_items, set_missing = _read_set(set_root, request)
        items.extend(set_items)
        missing.extend(set_missing)
    return items, missing


def _find_sets(root: Path) -> list[Path]:
    return sorted(
        child
        for child in root.iterdir()
        if child.is_dir() and ((child / "Train").is_dir() or (child / "Test").is_dir())
    )


def _read_set(set_root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    items: list[SourceItem] = []
    missing: list[dict] = []
    if request.wants("train"):
        for clip in _clip_folders(set_root / "Train"):
            items.append(_item(set_root.name, clip, "train", None))
    if request.wants("test"):
        items_test, missing = _read_test_clips(set_root)
        items.extend(items_test)
    return items, missing


def _read_test_clips(set_root: Path) -> tuple[list[SourceItem], list[dict]]:
    """List the test clips of one set with labels from its `.m` file, else from its pixel masks."""
    set_name, test_root = set_root.name, set_root / "Test"
    clips = _clip_folders(test_root)
    matlab = _find_matlab_file(test_root, set_name)
    gt_ranges = parse_gt_file(matlab) if matlab is not None else []
    if matlab is None and clips:
        logger.warning("%s: no %s.m ground-truth file; using pixel masks where present", test_root, set_name)
    elif len(gt_ranges) != len(clips):
        logger.warning("%s lists %d test clips but %s has %d", matlab, len(gt_ranges), test_root, len(clips))

    items: list[SourceItem] = []
    missing: list[dict] = []
    for clip in clips:
        num_frames = len(list_frame_images(clip))
        # TestNNN is described by the NNNth gt_frame line, whatever other clip folders exist.
        position = int(clip.name.removeprefix("Test")) - 1
        from_matlab = None
        if matlab is not None and 0 <= position < len(gt_ranges):
            from_matlab = _labels_from_matlab(gt_ranges[position], num_frames, matlab, clip.name)
        from_masks = _labels_from_masks(test_root / f"{clip.name}_gt", num_frames)

        if from_matlab is not None and from_masks is not None:
            differ = int(np.count_nonzero(from_matlab != from_masks))
            if differ:
                logger.warning(
                    "%s: the pixel masks disagree with %s on %d frame(s); kept %s",
                    clip, matlab.name, differ, matlab.name,
                )
        labels = from_matlab if from_matlab is not None else from_masks
        if labels is None:
            reason = "no ground truth (no line in the .m file, no pixel masks); kept without frame labels"
            missing.append({"entry": str(clip), "reason": reason})
        items.append(_item(set_name, clip, "test", labels))
    return items, missing


def _item(set_name: str, clip: Path, split: str, labels: np.ndarray | None) -> SourceItem:
    return SourceItem(
        path=clip,
        stem=safe_stem(set_name, clip.name),
        split=split,
        frame_labels=labels,
        fps=UCSD_FPS,
        collection="ucsd",
    )


def _clip_folders(folder: Path) -> list[Path]:
    """Return the `TrainNNN` or `TestNNN` folders (not `TestNNN_gt`) that contain frames, in order."""
    if not folder.is_dir():
        return []
    clips = sorted(child for child in folder.iterdir() if child.is_dir() and _CLIP_FOLDER.match(child.name))
    return [clip for clip in clips if list_frame_images(clip)]


def _find_matlab_file(test_root: Path, set_name: str) -> Path | None:
    named = test_root / f"{set_name}.m"
    if named.is_file():
        return named
    others = sorted(path for path in test_root.glob("*.m") if not path.name.startswith("."))
    return others[0] if len(others) == 1 else None


def parse_gt_file(path: Path) -> list[list[tuple[int, int]]]:
    """Return, per `TestVideoFile{end+1}.gt_frame = [...]` line, its ranges as 1-based inclusive pairs."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise ShardsInputError(f"{path}: cannot read ground-truth file ({error})") from error

    clips = []
    for line in text.splitlines():
        code = line.split("%", 1)[0]
        match = _GT_LINE.search(code)
        if match:
            clips.append(_parse_matlab_ranges(match["ranges"], path))
    if not clips:
        raise ShardsInputError(f"{path}: no 'TestVideoFile{{end+1}}.gt_frame = [...]' line found")
    return clips


def _parse_matlab_ranges(text: str, path: Path) -> list[tuple[int, int]]:
    """Parse `60:152, 170:180` (or single frame numbers) into inclusive `(first, last)` pairs."""
    ranges = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        first, colon, last = part.partition(":")
        if not first.isdigit() or (colon and not last.isdigit()):
            raise ShardsInputError(f"{path}: invalid frame range {part!r}; expected FIRST:LAST frame numbers")
        ranges.append((int(first), int(last) if colon else int(first)))
    return ranges


def _labels_from_matlab(ranges: list[tuple[int, int]], num_frames: int, path: Path, clip: str) -> np.ndarray:
    labels = np.zeros(num_frames, dtype=np.int8)  # (num_frames,)
    for first, last in ranges:
        if not 1 <= first <= last <= num_frames:
            raise ShardsInputError(
                f"{path}: range {first}:{last} of {clip} is outside its frames 1..{num_frames}"
            )
        labels[first - 1 : last] = 1
    return labels


def _labels_from_masks(mask_folder: Path, num_frames: int) -> np.ndarray | None:
    """Return 1 for every frame whose mask has a positive pixel, or None without a complete mask folder."""
    if not mask_folder.is_dir():
        return None
    masks = list_frame_images(mask_folder)
    if len(masks) != num_frames:
        logger.warning("%s has %d masks for %d frames; masks not used", mask_folder, len(masks), num_frames)
        return None

    labels = np.zeros(num_frames, dtype=np.int8)  # (num_frames,)
    for index, mask_path in enumerate(masks):
        try:
            with Image.open(mask_path) as mask:
                labels[index] = int(np.asarray(mask).any())
        except (OSError, UnidentifiedImageError) as error:
            raise ShardsInputError(f"{mask_path}: not a readable mask image ({error})") from error
    return labels
