"""Settings of a shard build, shared by the parent process and the workers that cut sources."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shards.errors import ShardsInputError


def default_workers() -> int:
    """Return min(4, usable CPUs): more processes than that mostly wait on the disk."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


@dataclass(frozen=True)
class BuildOptions:
    """Settings of `latentwatch shards build`."""

    clip_seconds: float = 1.0
    """Clip length in seconds. Every clip contains all frames and the audio of this span."""
    stride_seconds: float | None = None
    """Seconds between clip starts; None means `clip_seconds` (no overlap, no gap)."""
    max_side: int = 160
    """Frames are resized so their longer side is at most this many pixels."""
    clips_per_shard: int = 64
    """Clips per tar shard."""
    jpeg_quality: int = 90
    """JPEG quality of the stored frames, 1 to 100."""
    overwrite: bool = False
    """Replace an existing shard set at the output path."""
    workers: int | None = None
    """Processes that cut sources in parallel; None means `default_workers()`. Never changes the output."""
    restart: bool = False
    """Discard an unfinished build of the same output instead of resuming it."""

    @property
    def stride(self) -> float:
        """Seconds between clip starts, with the default applied."""
        return self.stride_seconds if self.stride_seconds is not None else self.clip_seconds

    def content_settings(self) -> dict:
        """Return the settings that change the shards' bytes; a resumed build must match them exactly."""
        return {
            "clip_seconds": self.clip_seconds,
            "stride_seconds": self.stride,
            "max_side": self.max_side,
            "clips_per_shard": self.clips_per_shard,
            "jpeg_quality": self.jpeg_quality,
        }

    def validate(self) -> None:
        """Raise `ShardsInputError` naming the first invalid setting."""
        if not self.clip_seconds > 0:
            raise ShardsInputError(f"--clip-seconds must be positive, got {self.clip_seconds}")
        if self.stride_seconds is not None and not self.stride_seconds > 0:
            raise ShardsInputError(f"--stride-seconds must be positive, got {self.stride_seconds}")
        if self.max_side < 16:
            raise ShardsInputError(f"--max-side must be at least 16 pixels, got {self.max_side}")
        if self.clips_per_shard < 1:
            raise ShardsInputError(f"--clips-per-shard must be at least 1, got {self.clips_per_shard}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ShardsInputError(f"--jpeg-quality must be between 1 and 100, got {self.jpeg_quality}")
        if self.workers is not None and self.workers < 1:
            raise ShardsInputError(f"--workers must be at least 1, got {self.workers}")
