"""Open a folder of frame images as if it were a video, for benchmarks distributed as frames.

UCSD Ped1/Ped2 ship TIFF frames and ShanghaiTech ships its test set as JPEG frames, with no container to
carry a frame rate or timestamps. `FrameFolder` has the same public interface as `shards.decode.VideoFile`,
so the builder cuts both the same way: frame `i` starts at `i / fps` seconds and frames are resized by the
same rule (longer side at most `max_side`, never scaled up) with the same interpolation.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, UnidentifiedImageError

from shards.decode import _fit_within, check_frame_size, resize_rgb
from shards.errors import ShardsInputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(name: str) -> list:
    """Sort key that compares runs of digits as numbers, so `2.jpg` comes before `10.jpg`.

    For zero-padded names (`001.tif`, `0042.jpg`), the form every benchmark uses, this is the plain name
    order.
    """
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(name)]


def list_frame_images(folder: Path) -> list[Path]:
    """Return the image files directly inside `folder`, in natural name order.

    Hidden files are skipped: archives packed on macOS carry `._001.tif` resource forks next to each frame.
    """
    images = [
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(images, key=lambda path: natural_sort_key(path.name))


class FrameFolder:
    """A folder of frame images opened for clip cutting: frame count, rate, frame times, and decoding."""

    def __init__(self, path: str | Path, *, fps: float, max_side: int | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ShardsInputError(f"{self.path}: not a folder of frame images")
        if not fps > 0:
            raise ShardsInputError(f"{self.path}: a frame folder's frame rate must be positive, got {fps}")

        self._images = list_frame_images(self.path)
        if not self._images:
            extensions = " ".join(sorted(IMAGE_EXTENSIONS))
            raise ShardsInputError(f"{self.path}: no frame images found (extensions: {extensions})")

        # The first frame fixes the folder's frame size, as a video stream's header does.
        try:
            with Image.open(self._images[0]) as first:
                self.source_width, self.source_height = first.size
        except (OSError, UnidentifiedImageError) as error:
            raise ShardsInputError(f"{self._images[0]}: not a readable image ({error})") from error
        check_frame_size(self.path, self.source_width, self.source_height)

        self.fps = float(fps)
        self.num_frames = len(self._images)
        self.width, self.height = _fit_within(self.source_width, self.source_height, max_side)
        self.frame_times = np.arange(self.num_frames, dtype=np.float64) / self.fps  # (N,)
        self.duration_s = self.num_frames / self.fps
        self.video_start_s = 0.0
        self.has_audio_stream = False
        self._reformatter = VideoReformatter()

    def read_frames(self, indices: list[int]) -> np.ndarray:
        """Read the frames at `indices`: `(F, H, W, 3)` uint8 RGB, longer side at most `max_side`.

        Raises `RuntimeError` when an image cannot be read or has another size than the first frame, the
        same exception `VideoFile.read_frames` raises for a frame that fails to decode, so the builder
        counts the clip as failed. Raises `IndexError` for an index outside the folder.
        """
        frames = []
        for index in indices:
            if not 0 <= index < self.num_frames:
                raise IndexError(f"{self.path}: frame index {index} outside 0..{self.num_frames - 1}")
            frames.append(self._read_one(self._images[index]))
        if not frames:
            return np.zeros((0, self.height, self.width, 3), dtype=np.uint8)
        return np.stack(frames)  # (F, H, W, 3)

    def close(self) -> None:
        """Do nothing, because each image is opened and closed as it is read; `VideoFile` needs closing."""

    def _read_one(self, image_path: Path) -> np.ndarray:
        try:
            with Image.open(image_path) as image:
                size = image.size
                # Grayscale TIFFs (UCSD), palettes and alpha all become three-channel RGB.
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise RuntimeError(f"{image_path}: cannot read frame image ({error})") from error

        if size != (self.source_width, self.source_height):
            raise RuntimeError(
                f"{image_path}: frame is {size[0]}x{size[1]} but the folder's first frame is "
                f"{self.source_width}x{self.source_height}"
            )
        pixels = np.asarray(rgb, dtype=np.uint8)  # (h, w, 3) at the source size
        return resize_rgb(pixels, self.width, self.height, self._reformatter)  # (H, W, 3)
