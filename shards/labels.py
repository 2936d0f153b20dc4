"""Per-frame anomaly labels from the `VIDEO_STEM.labels.json` sidecar next to a video.

The sidecar is `{"num_frames": 188, "anomalous_frames": [[40, 65], [100, 140]]}`, with half-open
frame-index ranges. A sidecar that exists but is malformed, or that disagrees with the video's frame
count, is an input error: skipping it would quietly turn a labelled test video into an unlabelled one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shards.errors import ShardsInputError


def sidecar_path(video: str | Path) -> Path:
    """Return where the labels sidecar of `video` would be."""
    video = Path(video)
    return video.with_name(f"{video.stem}.labels.json")


def read_frame_labels(video: str | Path, num_frames: int) -> np.ndarray | None:
    """Return the 0/1 label of each of the video's `num_frames` frames, or None when it has no sidecar."""
    path = sidecar_path(video)
    if not path.exists():
        return None

    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardsInputError(f"{path}: invalid labels file ({error})") from error
    if not isinstance(sidecar, dict) or "num_frames" not in sidecar or "anomalous_frames" not in sidecar:
        raise ShardsInputError(f"{path}: a labels file needs the keys 'num_frames' and 'anomalous_frames'")

    declared = sidecar["num_frames"]
    if not isinstance(declared, int) or isinstance(declared, bool) or declared != num_frames:
        raise ShardsInputError(
            f"{path}: num_frames is {declared!r} but the video has {num_frames} frames; "
            "fix the labels file or the video"
        )

    labels = np.zeros(num_frames, dtype=np.uint8)
    ranges = sidecar["anomalous_frames"]
    if not isinstance(ranges, list):
        raise ShardsInputError(f"{path}: 'anomalous_frames' must be a list of [start, stop] frame ranges")
    for frame_range in ranges:
        valid = (
            isinstance(frame_range, list)
            and len(frame_range) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in frame_range)
            and 0 <= frame_range[0] < frame_range[1] <= num_frames
        )
        if not valid:
            raise ShardsInputError(
                f"{path}: invalid range {frame_range!r} in 'anomalous_frames'; expected [start, stop] "
                f"with 0 <= start < stop <= {num_frames}"
            )
        labels[frame_range[0] : frame_range[1]] = 1
    return labels
