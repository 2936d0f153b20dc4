"""Readers and writers for the JSON and JSON Lines files of the folder formats, with one-line errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detect.errors import DetectInputError


def read_json_object(path: Path, *, role: str) -> dict[str, Any]:
    """Read a file that must contain one JSON object; `role` names the file's role in error messages."""
    if not path.is_file():
        raise DetectInputError(f"{role} not found: {path}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DetectInputError(f"{role} {path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise DetectInputError(f"{role} {path} must contain a JSON object, not {type(value).__name__}")
    return value


def read_jsonl_objects(path: Path, *, role: str) -> list[dict[str, Any]]:
    """Read a JSON Lines file whose every non-blank line is a JSON object."""
    if not path.is_file():
        raise DetectInputError(f"{role} not found: {path}")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DetectInputError(
                    f"{role} {path} line {line_number} is not valid JSON: {error}"
                ) from None
            if not isinstance(value, dict):
                raise DetectInputError(f"{role} {path} line {line_number} must be a JSON object")
            rows.append(value)
    return rows


def write_json_object(path: Path, value: dict[str, Any]) -> None:
    """Write one JSON object, indented for people; NaN and infinity are rejected because JSON has neither."""
    path.write_text(json.dumps(value, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_jsonl_objects(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one compact JSON object per line."""
    with path.open("w", encoding="utf-8") as output:
        for row in rows:
            output.write(json.dumps(row, allow_nan=False) + "\n")


def check_format_version(header: dict[str, Any], *, expected: int, path: Path) -> None:
    """Raise DetectInputError naming both versions unless `header["format_version"]` equals `expected`."""
    found = header.get("format_version")
    if found != expected:
        raise DetectInputError(
            f"{path} has format_version {found!r} but this version of latentwatch reads format_version "
            f"{expected}; rewrite the folder with a matching latentwatch version"
        )


def finite_float(value: Any) -> float | None:
    """Return `value` as a float when it is a finite real number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
