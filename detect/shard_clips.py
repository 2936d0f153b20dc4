"""Find clips by key in WebDataset shard tar files and render thumbnail strips of their frames.

A shard sample's members share the clip key as prefix: `KEY.json`, `KEY.000.jpg`, `KEY.001.jpg`, ...
The index reads only tar headers while scanning; frame data is read when a strip is drawn.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from detect.errors import DetectInputError

logger = logging.getLogger(__name__)

_FRAME_EXTENSIONS = {"jpg", "jpeg", "png"}


@dataclass
class ClipMembers:
    """Location of one clip in a shard set: its tar file, its JSON member and its frame members in order."""

    tar_path: Path
    json_member: tarfile.TarInfo | None = None
    frame_members: list[tuple[int, tarfile.TarInfo]] = field(default_factory=list)


class ShardClipIndex:
    """Index of the clips in every `*.tar` file of the given shard folders, by clip key.

    Unreadable tar files are logged and listed in `unreadable_tars` with the reason, and the scan goes on.
    A key found in two tar files keeps its first occurrence and is counted in `duplicate_keys`.
    Use it as a context manager so the tar files are closed.
    """

    def __init__(self, folders: list[Path]) -> None:
        self.clips: dict[str, ClipMembers] = {}
        self.unreadable_tars: list[tuple[Path, str]] = []
        self.duplicate_keys = 0
        self._open_tars: dict[Path, tarfile.TarFile] = {}

        tar_paths = []
        for folder in folders:
            if not folder.is_dir():
                raise DetectInputError(f"shard folder not found: {folder}")
            found = sorted(folder.glob("*.tar"))
            if not found:
                raise DetectInputError(f"shard folder {folder} contains no .tar files")
            tar_paths.extend(found)
        for tar_path in tqdm(tar_paths, desc="indexing shards", unit="tar", disable=len(tar_paths) < 4):
            self._scan(tar_path)
        logger.info("indexed %d clips in %d shard files", len(self.clips), len(tar_paths))

    def __enter__(self) -> ShardClipIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for archive in self._open_tars.values():
            archive.close()
        self._open_tars.clear()

    def _scan(self, tar_path: Path) -> None:
        try:
            archive = tarfile.open(tar_path, "r")
            members = archive.getmembers()
        except (tarfile.TarError, OSError) as error:
            logger.warning("skipped unreadable shard file %s: %s", tar_path, error)
            self.unreadable_tars.append((tar_path, str(error)))
            return
        self._open_tars[tar_path] = archive

        found: dict[str, ClipMembers] = {}
        for member in members:
            if not member.isfile():
                continue
            base_name = member.name.rsplit("/", 1)[-1]
            key, _, suffix = base_name.partition(".")
            clip = found.setdefault(key, ClipMembers(tar_path=tar_path))
            if suffix == "json":
                clip.json_member = member
                continue
            number, _, extension = suffix.partition(".")
            if number.isdigit() and extension.lower() in _FRAME_EXTENSIONS:
                clip.frame_members.append((int(number), member))

        for key, clip in found.items():
            if key in self.clips:
                self.duplicate_keys += 1
                logger.warning("clip %s appears in %s and again in %s; using the first", key,
                               self.clips[key].tar_path, tar_path)
                continue
            clip.frame_members.sort(key=lambda item: item[0])
            self.clips[key] = clip

    def metadata(self, key: str) -> dict[str, Any] | None:
        """Return the clip's `KEY.json` object, or None when the clip or its JSON is missing or invalid."""
        clip = self.clips.get(key)
        if clip is None or clip.json_member is None:
            return None
        try:
            value = json.loads(self._read(clip, clip.json_member))
        except (json.JSONDecodeError, UnicodeDecodeError, tarfile.TarError, OSError) as error:
            logger.warning("cannot read %s in %s: %s", clip.json_member.name, clip.tar_path, error)
            return None
        return value if isinstance(value, dict) else None

    def write_thumbnail_strip(
        self, key: str, path: Path, *, frame_count: int = 4, height: int = 64
    ) -> str | None:
        """Write a JPEG strip of up to `frame_count` evenly spaced frames of a clip to `path`.

        Returns None on success, or the reason no strip could be drawn (clip not found, no frames, a frame
        that fails to decode), so the caller can show the reason in place of the image.
        """
        clip = self.clips.get(key)
        if clip is None:
            return "clip not found in the given shard folders"
        if not clip.frame_members:
            return f"clip has no frame images in {clip.tar_path.name}"

        picks = np.unique(np.linspace(0, len(clip.frame_members) - 1, num=frame_count).round().astype(int))
        thumbnails = []
        for pick in picks:
            member = clip.frame_members[int(pick)][1]
            try:
                with Image.open(io.BytesIO(self._read(clip, member))) as image:
                    image = image.convert("RGB")
                    width = max(1, round(image.width * height / image.height))
                    thumbnails.append(image.resize((width, height), Image.Resampling.BILINEAR))
            except (UnidentifiedImageError, OSError, ValueError, tarfile.TarError) as error:
                # PIL's message for unknown data names an in-memory buffer, which means nothing to a reader.
                if isinstance(error, UnidentifiedImageError):
                    detail = "not a JPEG or PNG image"
                else:
                    detail = str(error)
                logger.warning("frame %s in %s failed to decode: %s", member.name, clip.tar_path, detail)
                return f"frame {member.name} failed to decode: {detail}"

        gap = 2
        width = sum(thumbnail.width for thumbnail in thumbnails) + gap * (len(thumbnails) - 1)
        strip = Image.new("RGB", (width, height), "white")
        left = 0
        for thumbnail in thumbnails:
            strip.paste(thumbnail, (left, 0))
            left += thumbnail.width + gap
        strip.save(path, format="JPEG", quality=80)
        return None

    def _read(self, clip: ClipMembers, member: tarfile.TarInfo) -> bytes:
        extracted = self._open_tars[clip.tar_path].extractfile(member)
        if extracted is None:
            raise OSError(f"{member.name} is not a regular file")
        return extracted.read()
