"""Collection readers: turn the layout a dataset is distributed in into `SourceItem`s for the builder.

`read_collection(layout, root, ...)` dispatches to one reader per layout (one file each in this package),
then sorts the items by stem and checks that stems are unique. Annotation rows without a local file are
returned in `Listing.missing` rather than raised, because partial downloads of Kinetics and AudioSet are
the norm. `docs/collections.md` shows the exact folder tree every reader expects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from shards.collections.audioset import read_audioset
from shards.collections.avenue import read_avenue
from shards.collections.folder import read_folder
from shards.collections.kinetics import read_kinetics
from shards.collections.listing import SPLITS, CollectionRequest, Listing, finish_listing
from shards.collections.manifest import read_manifest
from shards.collections.shanghaitech import read_shanghaitech
from shards.collections.subway import read_subway
from shards.collections.ucsd import read_ucsd
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

Reader = Callable[[Path, CollectionRequest], tuple[list[SourceItem], list[dict]]]

_READERS: dict[str, Reader] = {
    "folder": read_folder,
    "kinetics": read_kinetics,
    "audioset": read_audioset,
    "ucsd": read_ucsd,
    "avenue": read_avenue,
    "shanghaitech": read_shanghaitech,
    "subway": read_subway,
    "manifest": read_manifest,
}

LAYOUTS: tuple[str, ...] = tuple(_READERS)

# Layouts that read an annotation file, and the ones that cannot list anything without it.
_TAKES_ANNOTATIONS = frozenset({"kinetics", "audioset", "subway", "manifest"})
_NEEDS_ANNOTATIONS = frozenset({"kinetics", "audioset"})

__all__ = ["LAYOUTS", "Listing", "read_collection"]


def read_collection(
    layout: str,
    root: Path,
    *,
    annotations: Path | None = None,
    split: str | None = None,
    class_index: Path | None = None,
    train_minutes: float | None = None,
) -> Listing:
    """List the items of the collection at `root` in `layout`, keeping only `split` when given.

    `annotations` is the layout's annotation file (Kinetics or AudioSet CSV, Subway frame ranges, a
    manifest), `class_index` AudioSet's `class_labels_indices.csv`, and `train_minutes` the training part
    of a Subway recording. Raises `ShardsInputError` for an unknown layout, a missing root or annotation
    file, an option the layout does not take, and an unreadable or invalid annotation file.
    """
    root = Path(root)
    _check_request(layout, root, annotations, split, class_index, train_minutes)
    request = CollectionRequest(
        annotations=Path(annotations) if annotations is not None else None,
        split=split,
        class_index=Path(class_index) if class_index is not None else None,
        train_minutes=train_minutes,
    )

    items, missing = _READERS[layout](root, request)
    listing = finish_listing(items, missing)
    logger.info(
        "%s (%s layout): %d item(s), %d missing", root, layout, len(listing.items), len(listing.missing)
    )
    return listing


def _check_request(
    layout: str,
    root: Path,
    annotations: Path | None,
    split: str | None,
    class_index: Path | None,
    train_minutes: float | None,
) -> None:
    """Raise `ShardsInputError` for the first option that is invalid for `layout`."""
    if layout not in _READERS:
        raise ShardsInputError(f"unknown collection layout {layout!r}; expected one of: {', '.join(LAYOUTS)}")
    if not root.exists():
        raise ShardsInputError(f"{root}: no such file or directory")
    if split is not None and split not in SPLITS:
        raise ShardsInputError(f"invalid split {split!r}; expected one of: {', '.join(SPLITS)}")

    if annotations is not None and layout not in _TAKES_ANNOTATIONS:
        raise ShardsInputError(
            f"the {layout} layout reads no annotation file; its ground truth is found under the root"
        )
    if annotations is None and layout in _NEEDS_ANNOTATIONS:
        raise ShardsInputError(
            f"the {layout} layout needs its annotation CSV; pass it as the annotations file"
        )
    if annotations is not None and not Path(annotations).is_file():
        raise ShardsInputError(f"{annotations}: annotation file not found")

    if class_index is not None and layout != "audioset":
        raise ShardsInputError(f"a class index is read only by the audioset layout, not by {layout}")
    if class_index is not None and not Path(class_index).is_file():
        raise ShardsInputError(f"{class_index}: class index file not found")
    if train_minutes is not None and layout != "subway":
        raise ShardsInputError(f"training minutes apply only to the subway layout, not to {layout}")
