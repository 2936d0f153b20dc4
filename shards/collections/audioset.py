"""The `audioset` layout: an AudioSet segment CSV matched to downloaded clips, labels named by the ontology.

Segment CSVs (`balanced_train_segments.csv`, `unbalanced_train_segments.csv`, `eval_segments.csv`) start
with three comment lines, the last naming the columns, then one quoted label list per segment:

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

`class_labels_indices.csv` (`index,mid,display_name`) turns the label ids into names; an item's label is
the names joined by ';' (names contain commas). Local files are found under ROOT recursively and named
`<YTID>_<start>_<end>.<ext>`, with start and end in integer milliseconds (`--PJHxphWEs_30000_40000`, as
audiosetdl writes them) or in seconds (`--PJHxphWEs_30.000_40.000` or `--PJHxphWEs_30_40`), or `<YTID>.<ext>`.
The split comes from the CSV's name: `eval` gives 'test', `train` gives 'train', any other name None.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from shards.collections.csv_file import read_csv_rows
from shards.collections.listing import CollectionRequest, safe_stem
from shards.collections.video_files import scan_videos
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

CLASS_INDEX_NAME = "class_labels_indices.csv"

# YouTube ids are 11 characters of [A-Za-z0-9_-]; fixing the length lets an id contain '_' safely.
_SEGMENT_NAME = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_(?P<start>\d+(?:\.\d*)?)_(?P<end>\d+(?:\.\d*)?)$")
_YTID_NAME = re.compile(r"^[A-Za-z0-9_-]{11}$")

# Two spans within this many milliseconds are the same segment (the CSV prints times to 1 ms).
_MATCH_TOLERANCE_MS = 1.0


def read_audioset(root: Path, request: CollectionRequest) -> tuple[list[SourceItem], list[dict]]:
    """Match every segment of the CSV to its local file and name its labels."""
    if request.annotations is None:
        raise ShardsInputError(
            "the audioset layout needs its segment CSV (such as balanced_train_segments.csv)"
        )
    segments = read_segments(request.annotations)
    names = read_class_names(_class_index_path(request))
    split = _split_of(request.annotations)
    if not request.wants(split):
        return [], []

    local = _index_local_files(root)
    items: list[SourceItem] = []
    missing: list[dict] = []
    for segment in segments:
        ytid, start_s, end_s, mids, entry = segment
        video = _find_segment(local.get(ytid, []), start_s, end_s)
        if video is None:
            reason = f"no local file {ytid}_<start>_<end>.* or {ytid}.* under {root}"
            missing.append({"entry": entry, "reason": reason})
            continue
        unnamed = [mid for mid in mids if mid not in names]
        if names and unnamed:
            logger.warning(
                "%s: label id(s) %s are not in the class index; kept as ids", ytid, ", ".join(unnamed)
            )
        label = ";".join(names.get(mid, mid) for mid in mids) or None
        items.append(
            SourceItem(
                path=video,
                stem=safe_stem(video.stem),
                label=label,
                split=split,
                collection="audioset",
            )
        )

    if missing:
        logger.warning(
            "%s: %d of its segments have no local file under %s", request.annotations, len(missing), root
        )
    return items, missing


def read_segments(path: Path) -> list[tuple[str, float, float, list[str], str]]:
    """Return `(ytid, start_s, end_s, label ids, line)` for every segment line of an AudioSet CSV."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ShardsInputError(f"{path}: cannot read annotation file ({error})") from error

    segments = []
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, fields in zip(lines, csv.reader(lines, skipinitialspace=True)):
        if len(fields) != 4:
            raise ShardsInputError(
                f"{path}: invalid segment line {line!r}; expected YTID, start_seconds, end_seconds, "
                '"label ids" as in the AudioSet segment CSVs'
            )
        ytid, start, end, labels = (field.strip() for field in fields)
        try:
            start_s, end_s = float(start), float(end)
        except ValueError as error:
            raise ShardsInputError(f"{path}: invalid segment times in {line!r}") from error
        mids = [mid.strip() for mid in labels.split(",") if mid.strip()]
        segments.append((ytid, start_s, end_s, mids, line.strip()))
    return segments


def read_class_names(path: Path | None) -> dict[str, str]:
    """Return label id to display name from `class_labels_indices.csv`; empty when `path` is None."""
    if path is None:
        return {}
    rows = read_csv_rows(path, ("mid", "display_name"))
    return {row["mid"]: row["display_name"] for row in rows}


def _class_index_path(request: CollectionRequest) -> Path | None:
    """Return the class index to use: the one given, else one next to the segment CSV, else None."""
    if request.class_index is not None:
        return request.class_index
    beside = request.annotations.parent / CLASS_INDEX_NAME
    if beside.is_file():
        return beside
    logger.warning("no %s given or next to %s; labels are kept as ids", CLASS_INDEX_NAME, request.annotations)
    return None


def _split_of(annotations: Path) -> str | None:
    name = annotations.name.lower()
    if "eval" in name:
        return "test"
    if "train" in name:
        return "train"
    return None


def _index_local_files(root: Path) -> dict[str, list[tuple[Path, tuple[str, str] | None]]]:
    """Group local files by YouTube id, with the name's `(start, end)` fields or None for a bare id."""
    local: dict[str, list[tuple[Path, tuple[str, str] | None]]] = {}
    for video in scan_videos(root):
        match = _SEGMENT_NAME.match(video.stem)
        if match:
            local.setdefault(match["ytid"], []).append((video, (match["start"], match["end"])))
        elif _YTID_NAME.match(video.stem):
            local.setdefault(video.stem, []).append((video, None))
    return local


def _find_segment(
    candidates: list[tuple[Path, tuple[str, str] | None]], start_s: float, end_s: float
) -> Path | None:
    """Return the file among `candidates` whose name gives the segment's span, else a bare `<YTID>` file."""
    bare = None
    for video, span in candidates:
        if span is None:
            bare = bare or video
        elif any(_same_span(reading, start_s, end_s) for reading in _span_readings(*span)):
            return video
    return bare


def _span_readings(start: str, end: str) -> list[tuple[float, float]]:
    """Return the spans in milliseconds a file name's start and end fields can mean.

    Decimals are seconds. Integers are milliseconds (audiosetdl) or whole seconds (other downloaders), so
    both readings are tried. They cannot both match one segment, because the two readings of a span
    differ in length by a factor of 1000.
    """
    if "." in start or "." in end:
        return [(float(start) * 1000.0, float(end) * 1000.0)]
    return [(float(start), float(end)), (float(start) * 1000.0, float(end) * 1000.0)]


def _same_span(reading_ms: tuple[float, float], start_s: float, end_s: float) -> bool:
    return (
        abs(reading_ms[0] - start_s * 1000.0) <= _MATCH_TOLERANCE_MS
        and abs(reading_ms[1] - end_s * 1000.0) <= _MATCH_TOLERANCE_MS
    )
