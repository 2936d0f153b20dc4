"""Frame-range annotations turned into per-frame 0/1 labels.

Ranges are half-open frame indices `[start, stop)` counted from 0, the convention of the
`VIDEO_STEM.labels.json` sidecar. Two text forms are read here: the manifest's `40-65;100-140` and the
Subway range file's one `start stop` pair per line.
"""

from __future__ import annotations

import numpy as np

from shards.errors import ShardsInputError


def labels_from_ranges(ranges: list[tuple[int, int]], num_frames: int, *, source: str) -> np.ndarray:
    """Return an int8 array of `num_frames` with 1 inside every range; `source` names the input in errors."""
    labels = np.zeros(num_frames, dtype=np.int8)  # (num_frames,)
    for start, stop in ranges:
        if not 0 <= start < stop <= num_frames:
            raise ShardsInputError(
                f"{source}: invalid frame range {start}-{stop}; expected 0 <= start < stop <= {num_frames} "
                "(half-open ranges of frame indices counted from 0)"
            )
        labels[start:stop] = 1
    return labels


def parse_dash_ranges(text: str, *, source: str) -> list[tuple[int, int]]:
    """Parse `40-65;100-140` into `[(40, 65), (100, 140)]`; an empty text gives no range."""
    ranges = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        start, dash, stop = part.partition("-")
        if not dash or not start.strip().isdigit() or not stop.strip().isdigit():
            raise ShardsInputError(
                f"{source}: invalid frame range {part!r}; expected START-STOP frame indices like 40-65, "
                "several separated by ';'"
            )
        ranges.append((int(start), int(stop)))
    return ranges


def parse_range_lines(text: str, *, source: str) -> list[tuple[int, int]]:
    """Parse one `start stop` pair per line; blank lines and text after '#' are ignored."""
    ranges = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        fields = content.replace(",", " ").split()
        if len(fields) != 2 or not all(value.isdigit() for value in fields):
            raise ShardsInputError(
                f"{source}, line {number}: invalid frame range {content!r}; expected two frame indices "
                "'START STOP' (half-open, counted from 0)"
            )
        ranges.append((int(fields[0]), int(fields[1])))
    return ranges
