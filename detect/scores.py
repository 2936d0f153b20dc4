"""Read and write the scores folder: `scores.jsonl` (a row per clip, embeddings order) and `header.json`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.atomic import atomic_folder
from detect.errors import DetectInputError
from detect.json_files import (
    check_format_version,
    finite_float,
    read_json_object,
    read_jsonl_objects,
    write_json_object,
    write_jsonl_objects,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class Scores:
    """One scores folder: `rows[i]` has `key`, `score`, `neighbours` and the clip's metadata fields.

    `neighbours` is absent from scores that involve no normal clips, such as the audio-shift energy.
    """

    rows: list[dict[str, Any]]
    header: dict[str, Any]

    def __len__(self) -> int:
        return len(self.rows)


def write_scores(directory: str | os.PathLike, rows: list[dict[str, Any]], header: dict[str, Any]) -> Path:
    """Write a scores folder atomically; `header` gets `format_version` and `count` set here."""
    for index, row in enumerate(rows):
        _validate_row(row, index=index, source="scores")
    full_header = {**header, "format_version": FORMAT_VERSION, "count": len(rows)}
    with atomic_folder(directory, marker="scores.jsonl") as temporary:
        write_jsonl_objects(temporary / "scores.jsonl", rows)
        write_json_object(temporary / "header.json", full_header)
    logger.info("wrote %d scores to %s", len(rows), directory)
    return Path(directory)


def read_scores(directory: str | os.PathLike) -> Scores:
    """Read and validate a scores folder: version, and per clip a key, a finite score and valid neighbours."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DetectInputError(f"scores folder not found: {directory}")
    header = read_json_object(directory / "header.json", role="scores header")
    check_format_version(header, expected=FORMAT_VERSION, path=directory / "header.json")

    source = str(directory / "scores.jsonl")
    rows = read_jsonl_objects(directory / "scores.jsonl", role="scores file")
    if not rows:
        raise DetectInputError(f"{source} has no rows")
    for index, row in enumerate(rows):
        _validate_row(row, index=index, source=source)
    return Scores(rows=rows, header=header)


def _validate_row(row: dict[str, Any], *, index: int, source: str) -> None:
    if not isinstance(row.get("key"), str):
        raise DetectInputError(f"{source} row {index} has no string 'key'")
    if finite_float(row.get("score")) is None:
        raise DetectInputError(f"{source} row {index} ({row['key']}) has no finite 'score'")
    neighbours = row.get("neighbours", [])
    valid = isinstance(neighbours, list) and all(
        isinstance(item, dict)
        and isinstance(item.get("key"), str)
        and finite_float(item.get("distance")) is not None
        for item in neighbours
    )
    if not valid:
        raise DetectInputError(
            f"{source} row {index} ({row['key']}) has invalid 'neighbours'; expected a list of "
            '{"key", "distance"} objects'
        )
