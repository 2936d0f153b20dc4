"""Read and write the embeddings folder: `embeddings.npy` (N x D), `meta.jsonl` (row i) and `header.json`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.atomic import atomic_folder
from detect.errors import DetectInputError
from detect.json_files import (
    check_format_version,
    read_json_object,
    read_jsonl_objects,
    write_json_object,
    write_jsonl_objects,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ALLOWED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))

# Rows checked for NaN and infinity per step, so a memory-mapped file is never read into memory at once.
_FINITE_CHECK_ROWS = 65536


@dataclass
class Embeddings:
    """One embeddings folder: row i of `vectors` is described by `meta[i]`."""

    vectors: np.ndarray  # (N, D), float32 or float16, possibly memory-mapped
    meta: list[dict[str, Any]]
    header: dict[str, Any]

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def keys(self) -> list[str]:
        return [row["key"] for row in self.meta]

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def load_embeddings(directory: str | os.PathLike, *, mmap: bool = True) -> Embeddings:
    """Load and validate an embeddings folder.

    Checks, in order: the folder and its three files exist, `format_version`, the array's shape and dtype,
    the dimension and row count against the header, and one object with a unique `key` per row in
    `meta.jsonl`. Rows with NaN or infinity are an error that names the first such rows and their count,
    because scoring them would give meaningless neighbours. With `mmap` the array stays on disk.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DetectInputError(f"embeddings folder not found: {directory}")

    header = read_json_object(directory / "header.json", role="embeddings header")
    check_format_version(header, expected=FORMAT_VERSION, path=directory / "header.json")

    array_path = directory / "embeddings.npy"
    if not array_path.is_file():
        raise DetectInputError(f"embeddings array not found: {array_path}")
    try:
        vectors = np.load(array_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DetectInputError(f"cannot read {array_path} as a .npy array: {error}") from None
    validate_vectors(vectors, source=str(array_path))

    declared_dimension = header.get("dimension")
    if declared_dimension != vectors.shape[1]:
        raise DetectInputError(
            f"{array_path} has dimension {vectors.shape[1]} but header.json declares dimension "
            f"{declared_dimension!r}"
        )
    declared_count = header.get("count")
    if declared_count is not None and declared_count != vectors.shape[0]:
        raise DetectInputError(
            f"{array_path} has {vectors.shape[0]} rows but header.json declares count {declared_count!r}"
        )

    meta = read_jsonl_objects(directory / "meta.jsonl", role="embeddings metadata")
    validate_meta(meta, row_count=vectors.shape[0], source=str(directory / "meta.jsonl"))

    logger.debug(
        "loaded %d embeddings of dimension %d from %s", vectors.shape[0], vectors.shape[1], directory
    )
    return Embeddings(vectors=vectors, meta=meta, header=header)


def save_embeddings(
    directory: str | os.PathLike,
    vectors: np.ndarray,
    meta: list[dict[str, Any]],
    header: dict[str, Any],
) -> Path:
    """Write an embeddings folder atomically and return its path.

    `header` supplies the descriptive fields (`encoder`, `checkpoint`, `modality`); `format_version`,
    `dimension`, `count` and `dtype` are always taken from `vectors` so they cannot disagree with the array.
    The same checks as `load_embeddings` run first, so a folder this function writes always loads.
    """
    vectors = np.asarray(vectors)
    validate_vectors(vectors, source="vectors")
    validate_meta(meta, row_count=vectors.shape[0], source="meta")

    full_header = dict(header)
    full_header.update(
        format_version=FORMAT_VERSION,
        dimension=int(vectors.shape[1]),
        count=int(vectors.shape[0]),
        dtype=str(vectors.dtype),
    )
    with atomic_folder(directory, marker="embeddings.npy") as temporary:
        np.save(temporary / "embeddings.npy", np.ascontiguousarray(vectors), allow_pickle=False)
        write_jsonl_objects(temporary / "meta.jsonl", meta)
        write_json_object(temporary / "header.json", full_header)
    return Path(directory)


def validate_vectors(vectors: np.ndarray, *, source: str) -> None:
    """Raise DetectInputError unless `vectors` is a non-empty (N, D) float32 or float16 array, all finite."""
    if vectors.ndim != 2:
        raise DetectInputError(f"{source} must be a 2-D array (N, D), got shape {tuple(vectors.shape)}")
    if vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise DetectInputError(
            f"{source} is empty (shape {tuple(vectors.shape)}); at least one row is needed"
        )
    if vectors.dtype not in ALLOWED_DTYPES:
        raise DetectInputError(f"{source} has dtype {vectors.dtype}; expected float32 or float16")
    raise_on_non_finite_rows(vectors, source=source)


def raise_on_non_finite_rows(vectors: np.ndarray, *, source: str) -> None:
    """Raise DetectInputError naming the first rows (and the count) that contain NaN or infinity."""
    bad_rows: list[np.ndarray] = []
    for start in range(0, vectors.shape[0], _FINITE_CHECK_ROWS):
        chunk = np.asarray(vectors[start : start + _FINITE_CHECK_ROWS])  # (chunk, D)
        bad = np.flatnonzero(~np.isfinite(chunk).all(axis=1))
        if bad.size:
            bad_rows.append(bad + start)
    if not bad_rows:
        return

    bad_indices = np.concatenate(bad_rows)
    shown = ", ".join(str(int(index)) for index in bad_indices[:5])
    more = ", ..." if bad_indices.size > 5 else ""
    raise DetectInputError(
        f"{source} has {bad_indices.size} row(s) with NaN or infinity (rows {shown}{more}); "
        "re-export the embeddings or drop those rows"
    )


def validate_meta(meta: list[dict[str, Any]], *, row_count: int, source: str) -> None:
    """Raise DetectInputError unless `meta` has one object per row, each with a unique string `key`."""
    if len(meta) != row_count:
        raise DetectInputError(f"{source} has {len(meta)} rows but embeddings.npy has {row_count}")
    seen: dict[str, int] = {}
    for index, row in enumerate(meta):
        key = row.get("key") if isinstance(row, dict) else None
        if not isinstance(key, str) or not key:
            raise DetectInputError(f"{source} row {index} has no string 'key'")
        if key in seen:
            raise DetectInputError(f"{source} rows {seen[key]} and {index} have the same key {key!r}")
        seen[key] = index
