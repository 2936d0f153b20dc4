"""Find clips by key in WebDataset shard tar files, read their frames and audio, and draw thumbnail strips.

A shard sample's members share the clip key as prefix: `KEY.json`, `KEY.000.jpg`, `KEY.001.jpg`, ...,
`KEY.wav`. The index reads only tar headers while scanning; member data is read when a report needs it.
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
    """Location of one clip in a shard set: its tar file, its JSON, frame and WAV members."""

    tar_path: Path
    json_member: tarfile.TarInfo | None = None
    frame_members: list[tuple[int, tarfile.TarInfo]] = field(default_factory=list)
    wav_member: tarfile.TarInfo | None = None


class ClipReadError(Exception):
    """A clip that cannot be shown: not in the shards, without frames, or with a member that fails to decode.

    The message is the reason, written for the report's reader; the report shows it in place of the media.
    """


class ShardClipIndex:
    """Index of the clips in every `*.tar` file of the given shard folders, by clip key.

    Unreadable tar files are logged and listed in `unreadable_tars` with the reason, and the scan goes on.
    A folder that does not exist or contains no tar file (moved or deleted since the clips were scored) is
    logged and listed in `missing_folders`, so a report still renders and names it; its clips are then
    "not found". A key found in two tar files keeps its first occurrence and is counted in `duplicate_keys`.
    Use it as a context manager so the tar files are closed.
    """

    def __init__(self, folders: list[Path]) -> None:
        self.clips: dict[str, ClipMembers] = {}
        self.unreadable_tars: list[tuple[Path, str]] = []
        self.missing_folders: list[tuple[Path, str]] = []
        self.duplicate_keys = 0
        self._open_tars: dict[Path, tarfile.TarFile] = {}

        tar_paths = []
        for folder in folders:
            if folder.exists() and not folder.is_dir():
                raise DetectInputError(f"shard folder {folder} is a file, not a folder of .tar shards")
            if not folder.is_dir():
                reason = "folder not found; it may have been moved or deleted since the clips were scored"
            elif not any(folder.glob("*.tar")):
                reason = "folder contains no .tar shard files"
            else:
                tar_paths.extend(sorted(folder.glob("*.tar")))
                continue
            logger.warning("shard folder %s: %s", folder, reason)
            self.missing_folders.append((folder, reason))
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
            if suffix == "wav":
                clip.wav_member = member
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

    def read_frames(self, key: str, *, max_frames: int | None = None) -> list[Image.Image]:
        """Decode a clip's frames in order as RGB images; `max_frames` picks that many, evenly spaced.

        Raises ClipReadError with the reason when the clip is not in the shards, has no frames, or a frame
        fails to decode, so the caller can show the reason in place of the images.
        """
        clip = self._clip(key)
        if not clip.frame_members:
            raise ClipReadError(f"clip has no frame images in {clip.tar_path.name}")

        members = [member for _, member in clip.frame_members]
        if max_frames is not None and len(members) > max_frames:
            picks = np.unique(np.linspace(0, len(members) - 1, num=max_frames).round().astype(int))
            members = [members[int(pick)] for pick in picks]
        images = []
        for member in members:
            try:
                with Image.open(io.BytesIO(self._read(clip, member))) as image:
                    images.append(image.convert("RGB"))
            except (UnidentifiedImageError, OSError, ValueError, tarfile.TarError) as error:
                # PIL's message for unknown data names an in-memory buffer, which means nothing to a reader.
                if isinstance(error, UnidentifiedImageError):
                    detail = "not a JPEG or PNG image"
                else:
                    detail = str(error)
                logger.warning("frame %s in %s failed to decode: %s", member.name, clip.tar_path, detail)
                raise ClipReadError(f"frame {member.name} failed to decode: {detail}") from None
        return images

    def read_wav(self, key: str) -> bytes | None:
        """Return the clip's WAV member as bytes, or None when the clip has no audio.

        Raises ClipReadError when the clip is not in the shards or its WAV member cannot be read.
        """
        clip = self._clip(key)
        if clip.wav_member is None:
            return None
        try:
            return self._read(clip, clip.wav_member)
        except (tarfile.TarError, OSError) as error:
            raise ClipReadError(f"{clip.wav_member.name} cannot be read: {error}") from None

    def write_thumbnail_strip(
        self, key: str, path: Path, *, frame_count: int = 4, height: int = 64
    ) -> str | None:
        """Write a JPEG strip of up to `frame_count` evenly spaced frames of a clip to `path`.

        Returns None on success, or the reason no strip could be drawn (clip not found, no frames, a frame
        that fails to decode), so the caller can show the reason in place of the image.
        """
        try:
            frames = self.read_frames(key, max_frames=frame_count)
        except ClipReadError as error:
            return str(error)

        thumbnails = []
        for frame in frames:
            width = max(1, round(frame.width * height / frame.height))
            thumbnails.append(frame.resize((width, height), Image.Resampling.BILINEAR))
        gap = 2
        width = sum(thumbnail.width for thumbnail in thumbnails) + gap * (len(thumbnails) - 1)
        strip = Image.new("RGB", (width, height), "white")
        left = 0
        for thumbnail in thumbnails:
            strip.paste(thumbnail, (left, 0))
            left += thumbnail.width + gap
        strip.save(path, format="JPEG", quality=80)
        return None

    def _clip(self, key: str) -> ClipMembers:
        clip = self.clips.get(key)
        if clip is None:
            raise ClipReadError("clip not found in the given shard folders")
        return clip

    def _read(self, clip: ClipMembers, member: tarfile.TarInfo) -> bytes:
        extracted = self._open_tars[clip.tar_path].extractfile(member)
        if extracted is None:
            raise OSError(f"{member.name} is not a regular file")
        return extracted.read()
