"""The `kinetics` layout: an annotation CSV of Kinetics-400/600/700 matched to downloaded clips.

The CSV (`train.csv`, `validate.csv`, `test.csv` from the Kinetics release) has the header
`label,youtube_id,time_start,time_end,split` (Kinetics-400 adds `is_cc`; test CSVs may lack `label`).
A row's clip is the local file `<youtube_id>_<time_start:06d>_<time_end:06d>.<video extension>`, the name
the ActivityNet downloader and the CVDF archives use, anywhere under ROOT (flat or in class folders).
Rows without a local file are listed in `missing`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shards.collections.csv_file import read_csv_rows, row_text
from shards.collections.listing import CollectionRequest, normalise_split, safe_stem
from shards.collections.video_files import scan_videos
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")


def kinetics_file_stem(youtube_id: str, time_start: str, time_end: str) -> str:
    """Return the downloaded clip's file name without extension, such as `-0Ir5X5YD8A_000020_000030`."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def read_kinetics(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """Match every CSV row of the requested split to its local clip file."""
    if request.annotations is None:
        raise ShardsInputError(
            "the kinetics layout needs its annotation CSV (train.csv, validate.csv or test.csv)"
        )
    rows = read_csv_rows(request.annotations, REQUIRED_COLUMNS)

    # Indexed by file stem: the CSV fixes the name, not the folder or the extension.
    local: dict[str, Path] = {}
    for video in scan_videos(root):
        local.setdefault(video.stem, video)

    items: list[SourceItem] = []
    missing: list[dict] = []
    for row in rows:
        split = normalise_split(row.get("split")) if row.get("split") else None
        if not request.wants(split):
            continue
        try:
            file_stem = kinetics_file_stem(row["youtube_id"], row["time_start"], row["time_end"])
        except ValueError:
            missing.append({"entry": row_text(row), "reason": "time_start or time_end is not a number"})
            continue

        video = local.get(file_stem)
        if video is None:
            missing.append({"entry": row_text(row), "reason": f"no local file {file_stem}.* under {root}"})
            continue
        items.append(
            SourceItem(
                path=video,
                stem=safe_stem(file_stem),
                label=row.get("label") or None,
                split=split,
                collection="kinetics",
            )
        )

    if missing:
        logger.warning(
            "%s: %d of its rows have no local file under %s", request.annotations, len(missing), root
        )
    return items, missing
