"""Open annotation CSV files with one clear error for a file that is missing, unreadable or lacks columns."""

from __future__ import annotations

import csv
from pathlib import Path

from shards.errors import ShardsInputError


def read_csv_rows(path: Path, required: tuple[str, ...], *, comment_prefix: str | None = None) -> list[dict]:
    """Return the rows of a CSV with a header line as dicts keyed by the stripped column names.

    Lines starting with `comment_prefix` are skipped. Raises `ShardsInputError` when the file cannot be read
    or its header lacks one of `required`.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ShardsInputError(f"{path}: cannot read annotation file ({error})") from error

    lines = [line for line in text.splitlines() if line.strip()]
    if comment_prefix is not None:
        lines = [line for line in lines if not line.lstrip().startswith(comment_prefix)]
    try:
        reader = csv.DictReader(lines, skipinitialspace=True)
        header = [name.strip() for name in (reader.fieldnames or [])]
        rows = [{(key or "").strip(): (value or "").strip() for key, value in row.items()} for row in reader]
    except csv.Error as error:
        raise ShardsInputError(f"{path}: invalid CSV ({error})") from error

    absent = [name for name in required if name not in header]
    if absent:
        raise ShardsInputError(
            f"{path}: the header line lacks the column(s) {', '.join(absent)}; "
            f"found {', '.join(header) or 'none'}"
        )
    return rows


def row_text(row: dict) -> str:
    """Return a row as the comma-separated text a person would find in the file, for the missing list."""
    return ",".join(row.get(key, "") or "" for key in row if key)
