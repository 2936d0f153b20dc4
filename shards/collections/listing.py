"""What every collection reader returns, what it is asked for, and the checks all listings share.

Readers build a `Listing` of `SourceItem`s plus the entries they could not find; `finish_listing` sorts the
items by stem and rejects two items with the same stem, because clip keys (`<stem>-<start ms>`) must be
unique in a shard set.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

# Names collections use for their splits, mapped to the three SourceItem splits.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
    "eval": "test",
}

_STEM_UNSAFE = re.compile(r"[^\w-]")


@dataclass(frozen=True)
class Listing:
    """The items a collection gives, and the entries of its annotations that had no usable local file."""

    items: list[SourceItem]
    """Sorted by stem; stems are unique."""
    missing: list[dict] = field(default_factory=list)
    """One `{"entry": ..., "reason": ...}` per annotation row or expected path without a usable file."""


@dataclass(frozen=True)
class CollectionRequest:
    """The options of one `read_collection` call, passed unchanged to the layout's reader."""

    annotations: Path | None = None
    """Annotation file of the layout (a CSV or a frame-range list), for the layouts that read one."""
    split: str | None = None
    """Keep only items of this split ('train', 'val' or 'test'); None keeps all."""
    class_index: Path | None = None
    """AudioSet's `class_labels_indices.csv`, for label names."""
    train_minutes: float | None = None
    """Subway only: minutes at the start of the recording that form the training part."""

    def wants(self, split: str | None) -> bool:
        """Return whether an item of `split` belongs in the listing."""
        return self.split is None or split == self.split


def normalise_split(name: str | None) -> str | None:
    """Map a collection's split name ('training', 'validate', 'eval', ...) to 'train', 'val' or 'test'."""
    if name is None:
        return None
    return SPLIT_ALIASES.get(name.strip().lower())


def safe_stem(*parts: str) -> str:
    """Join `parts` with '_' and, as clip keys require, keep Unicode letters, digits, '_' and '-' (in NFC form)
    and replace every other character with '_'."""
    return _STEM_UNSAFE.sub("_", unicodedata.normalize("NFC", "_".join(parts)))


def finish_listing(items: list[SourceItem], missing: list[dict]) -> Listing:
    """Sort `items` by stem and check that stems are unique.

    The same file listed twice under one stem (a duplicated annotation row) is kept once and logged. Two
    different files or spans with one stem raise `ShardsInputError`, because their clip keys would collide.
    """
    by_stem: dict[str, SourceItem] = {}
    for item in items:
        earlier = by_stem.get(item.stem)
        if earlier is None:
            by_stem[item.stem] = item
            continue
        same_source = (
            earlier.path == item.path and earlier.start_s == item.start_s and earlier.end_s == item.end_s
        )
        if same_source:
            logger.warning("%s is listed twice under the stem %r; kept once", item.path, item.stem)
            continue
        raise ShardsInputError(
            f"{earlier.path} and {item.path} give the same clip keys ('{item.stem}-...'); "
            "rename one of them or build them into separate shard sets"
        )

    ordered = [by_stem[stem] for stem in sorted(by_stem)]
    return Listing(items=ordered, missing=list(missing))
