"""Video views for self-supervised training and the evaluation tensor, deterministic given a generator.

Every spatial and colour parameter is drawn once per clip and applied to all its frames, so a view
changes appearance but never adds flicker or motion that the clip does not have.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)

# Random resized crops keep the aspect ratio within [3/4, 4/3], as torchvision's RandomResizedCrop does.
_LOG_RATIO_RANGE = (math.log(3 / 4), math.log(4 / 3))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def sample_frame_indices(
    num_available: int, num_frames: int, *, generator: torch.Generator | None
) -> list[int]:
    """Pick `num_frames` increasing indices into a clip of `num_available` frames.

    Without a generator the indices are spread evenly over the whole clip (segment centres). With one,
    the view covers a random stretch of at least half the clip: the stride is drawn between half and
    all of the largest stride that fits, then the start offset is drawn among those that fit. A clip with
    fewer frames than requested gives all of its frames followed by repeats of the last one.
    """
    if num_available < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_available}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if num_available < num_frames:
        return list(range(num_available)) + [num_available - 1] * (num_frames - num_available)

    if generator is None:
        return [math.floor((i + 0.5) * num_available / num_frames) for i in range(num_frames)]

    if num_frames == 1:
        return [int(torch.randint(num_available, (), generator=generator))]
    max_stride = (num_available - 1) / (num_frames - 1)
    stride = _uniform(max(1.0, max_stride / 2), max_stride, generator)
    start = _uniform(0.0, num_available - 1 - stride * (num_frames - 1), generator)
    return [min(num_available - 1, round(start + i * stride)) for i in range(num_frames)]


def _to_float_clip(frames: np.ndarray, indices: list[int]) -> torch.Tensor:
    """Select frames and convert `(F, H, W, 3)` uint8 to `(3, T, H, W)` float in [0, 1]."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"expected frames of shape (F, H, W, 3) and dtype uint8, got {frames.shape} {frames.dtype}"
        )
    clip = torch.from_numpy(np.ascontiguousarray(frames[indices]))  # (T, H, W, 3)
    return clip.permute(3, 0, 1, 2).float().div_(255.0)  # (3, T, H, W)


def _normalise(clip: torch.Tensor) -> torch.Tensor:
    return (clip - IMAGENET_MEAN) / IMAGENET_STD  # (3, T, H, W)


def _resize(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize every frame of a `(3, T, H, W)` clip with antialiased bilinear interpolation."""
    frames = clip.permute(1, 0, 2, 3)  # (T, 3, H, W)
    resized = F.interpolate(
        frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.permute(1, 0, 2, 3)  # (3, T, height, width)


def _grayscale(clip: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of a `(3, T, H, W)` clip, kept as `(1, T, H, W)`."""
    return (0.299 * clip[0] + 0.587 * clip[1] + 0.114 * clip[2]).unsqueeze(0)


class VideoViewAugment:
    """One random view of a clip: temporal jitter, random resized crop, horizontal flip and colour jitter.

    `scale` bounds the crop's area as a fraction of the frame, and `flip` is the flip probability.
    `color_jitter` is the largest relative change of brightness, contrast and saturation: 0.4 draws each
    factor from [0.6, 1.4]. Output is `(3, num_frames, size, size)` float32, ImageNet-normalised.
    """

    def __init__(
        self,
        size: int = 112,
        scale: tuple[float, float] = (0.3, 1.0),
        flip: float = 0.5,
        color_jitter: float = 0.4,
        num_frames: int = 8,
    ):
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if not 0 <= flip <= 1:
            raise ValueError(f"flip is a probability, got {flip}")
        if not 0 <= color_jitter < 1:
            raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
        self.size = size
        self.scale = tuple(scale)
        self.flip = flip
        self.color_jitter = color_jitter
        self.num_frames = num_frames

    def __call__(self, frames: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return one augmented view `(3, T, size, size)` of `frames` `(F, H, W, 3)` uint8."""
        indices = sample_frame_indices(len(frames), self.num_frames, generator=generator)
        clip = _to_float_clip(frames, indices)  # (3, T, H, W)

        top, left, height, width = self._crop_box(clip.shape[2], clip.shape[3], generator)
        clip = _resize(clip[:, :, top : top + height, left : left + width], self.size, self.size)

        if torch.rand((), generator=generator).item() < self.flip:
            clip = clip.flip(-1)

        clip = self._jitter_colour(clip, generator)
        return _normalise(clip).contiguous()  # (3, T, size, size)

    def _crop_box(
        self, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """Draw a crop `(top, left, height, width)` with area fraction in `scale`, as torchvision does."""
        area = height * width
        for _ in range(10):
            target_area = area * _uniform(self.scale[0], self.scale[1], generator)
            ratio = math.exp(_uniform(*_LOG_RATIO_RANGE, generator))
            crop_width = round(math.sqrt(target_area * ratio))
            crop_height = round(math.sqrt(target_area / ratio))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                top = int(torch.randint(height - crop_height + 1, (), generator=generator))
                left = int(torch.randint(width - crop_width + 1, (), generator=generator))
                return top, left, crop_height, crop_width

        # Ten misses happen only for extreme frame shapes: fall back to the largest centred square.
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def _jitter_colour(self, clip: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Scale brightness, contrast and saturation by one random factor each for the whole clip."""
        if self.color_jitter == 0:
            return clip
        low, high = 1 - self.color_jitter, 1 + self.color_jitter
        brightness = _uniform(low, high, generator)
        contrast = _uniform(low, high, generator)
        saturation = _uniform(low, high, generator)

        clip = (clip * brightness).clamp_(0, 1)
        # The clip's mean grey level (not each frame's) keeps the contrast change identical over time.
        mean_grey = _grayscale(clip).mean()
        clip = (mean_grey + contrast * (clip - mean_grey)).clamp_(0, 1)
        grey = _grayscale(clip)  # (1, T, H, W)
        return (grey + saturation * (clip - grey)).clamp_(0, 1)


def video_eval_tensor(frames: np.ndarray, *, num_frames: int = 8, short_side: int = 112) -> torch.Tensor:
    """Return the deterministic evaluation input `(3, T, H', W')` of a clip, ImageNet-normalised.

    Frames are spread evenly over the clip, and the whole frame is resized so its shorter side is
    `short_side`, without cropping, because an anomaly at the border of the scene must stay visible.
    """
    indices = sample_frame_indices(len(frames), num_frames, generator=None)
    clip = _to_float_clip(frames, indices)  # (3, T, H, W)
    height, width = clip.shape[2], clip.shape[3]
    scale = short_side / min(height, width)
    clip = _resize(clip, max(1, round(height * scale)), max(1, round(width * scale)))
    return _normalise(clip).contiguous()  # (3, T, H', W')
