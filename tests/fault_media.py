"""Media files that are broken or unusual in the ways real collections are, written with PyAV for the fault tests.

Every writer is seeded or fully determined by its arguments, so a failing case can be rebuilt and opened by
hand. Sizes are small (a few seconds of tiny frames) so the whole catalogue builds in seconds.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"


def moving_frame(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame with a bright square that moves one step per frame, so frames differ."""
    frame = np.full((height, width, 3), 40, np.uint8)
    side = max(1, min(width, height) // 4)
    left = (index * max(1, width // 16)) % max(1, width - side + 1)
    frame[:side, left:left + side] = 220
    return frame


def write_video(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "mpeg4",
    pix_fmt: str = "yuv420p",
    frame_pts: list[int] | None = None,
    time_base: fractions.Fraction | None = None,
    audio_rate: int | None = None,
    audio_layout: str = "stereo",
    audio_level: float = 0.5,
) -> Path:
    """Encode a test video; `frame_pts` in `time_base` units gives irregular timing (variable frame rate, jumps)."""
    width, height = size
    num_frames = len(frame_pts) if frame_pts is not None else round(seconds * fps)
    time_base = time_base or fractions.Fraction(1, fps)
    pts = frame_pts if frame_pts is not None else list(range(num_frames))

    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        audio = None
        if audio_rate:
            audio = container.add_stream("aac", rate=audio_rate)
            audio.layout = audio_layout

        for index, stamp in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(moving_frame(index, width, height), format="rgb24")
            frame.pts = stamp
            frame.time_base = time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)

        if audio is not None:
            channels = av.AudioLayout(audio_layout).nb_channels
            duration = float(pts[-1] * time_base) + 1.0 / fps
            t = np.arange(round(duration * audio_rate)) / audio_rate
            tone = (audio_level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.tile(tone, (channels, 1)), format="fltp", layout=audio_layout)
            frame.sample_rate = audio_rate
            frame.pts = 0
            for packet in audio.encode(frame):
                container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return path


def truncated_copy(source: Path, path: Path, fraction: float) -> Path:
    """Write the first `fraction` of `source`'s bytes to `path`, like a download cut off mid-way."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def random_bytes(path: Path, size: int = 50_000, seed: int = 0) -> Path:
    """Write `size` seeded random bytes to `path` (a file that only claims to be a video by its name)."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path
