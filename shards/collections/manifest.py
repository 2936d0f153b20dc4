"""The `manifest` layout: a CSV that lists any videos with their split and anomalous frame ranges.

    path,split,anomalous_frames,label
    normal/cam1_day1.mp4,train,,
    test/cam1_day2.mp4,test,40-65;100-140,
    test/speaker_03.mp4,test,,interview

`path` is relative to the manifest's folder (or absolute). `anomalous_frames` holds half-open frame-index
ranges separated by ';'. An empty field means no anomalous frame: a 'val' or 'test' row then gets all-zero
frame labels, because it is evaluated, and a 'train' row gets none. `label` is optional.
ROOT is the manifest file, or a folder containing `manifest.csv`; an annotations path overrides both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shards.collections.csv_file import read_csv_rows, row_text
from shards.collections.frame_ranges import labels_from_ranges, parse_dash_ranges
from shards.collections.listing import CollectionRequest, normalise_split, safe_stem
from shards.collections.video_files import count_frames
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("path", "split", "anomalous_frames")


def read_manifest(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """List every row of the manifest whose file exists, with its frame labels."""
    manifest = _manifest_path(root, request)
    rows = read_csv_rows(manifest, REQUIRED_COLUMNS)

    items: list[SourceItem] = []
    missing: list[dict] = []
    for number, row in enumerate(rows, start=2):
        source = f"{manifest}, line {number}"
        split = normalise_split(row["split"]) if row["split"] else None
        if row["split"] and split is None:
            raise ShardsInputError(f"{source}: invalid split {row['split']!r}; expected train, val or test")
        if not request.wants(split):
            continue

        video = Path(row["path"])
        video = video if video.is_absolute() else manifest.parent / video
        if not video.is_file():
            missing.append({"entry": row_text(row), "reason": f"no such file {video}"})
            continue

        ranges = parse_dash_ranges(row["anomalous_frames"], source=source)
        labels = None
        if ranges or split in ("val", "test"):
            try:
                num_frames, _ = count_frames(video)
            except ShardsInputError as error:
                missing.append({"entry": row_text(row), "reason": str(error)})
                continue
            labels = labels_from_ranges(ranges, num_frames, source=source)

        items.append(
            SourceItem(
                path=video,
                stem=safe_stem(video.stem),
                label=row.get("label") or None,
                split=split,
                frame_labels=labels,
                collection="manifest",
            )
        )
    return items, missing


def _manifest_path(root: Path, request: CollectionRequest) -> Path:
    if request.annotations is not None:
        return request.annotations
    if root.is_file():
        return root
    candidate = root / MANIFEST_NAME
    if not candidate.is_file():
        raise ShardsInputError(f"{root}: no {MANIFEST_NAME} here; give the manifest CSV itself")
    return candidate
