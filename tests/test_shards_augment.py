"""Video views: temporal sampling, consistency over time, determinism, and the evaluation tensor."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from shards.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoViewAugment,
    sample_frame_indices,
    video_eval_tensor,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_clip(num_frames: int = 12, height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def test_indices_even_without_generator():
    assert sample_frame_indices(16, 8, generator=None) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_frame_indices(8, 8, generator=None) == list(range(8))


def test_indices_repeat_last_when_short():
    assert sample_frame_indices(3, 6, generator=None) == [0, 1, 2, 2, 2, 2]
    assert sample_frame_indices(1, 4, generator=seeded(0)) == [0, 0, 0, 0]


def test_indices_jitter_varies_with_seed():
    draws = {tuple(sample_frame_indices(50, 8, generator=seeded(seed))) for seed in range(20)}
    assert len(draws) > 10
    first = sample_frame_indices(50, 8, generator=seeded(7))
    assert first == sample_frame_indices(50, 8, generator=seeded(7))


@given(
    available=st.integers(min_value=1, max_value=300),
    wanted=st.integers(min_value=1, max_value=32),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_indices_property(available, wanted, seed):
    indices = sample_frame_indices(available, wanted, generator=seeded(seed))
    assert len(indices) == wanted
    assert all(0 <= i < available for i in indices)
    assert indices == sorted(indices)
    if available >= wanted:
        # Distinct frames, covering at least about half the clip.
        assert len(set(indices)) == wanted
        if wanted > 1:
            assert indices[-1] - indices[0] >= min(wanted - 1, (available - 1) / 2) - 1


def test_indices_invalid_counts_raise():
    with pytest.raises(ValueError):
        sample_frame_indices(0, 8, generator=None)
    with pytest.raises(ValueError):
        sample_frame_indices(8, 0, generator=None)


def test_view_shape_and_dtype():
    view = VideoViewAugment(size=32, num_frames=4)(random_clip(), seeded(0))
    assert view.shape == (3, 4, 32, 32)
    assert view.dtype == torch.float32


def test_view_identical_across_equal_frames():
    frame = np.random.default_rng(1).integers(0, 256, (1, 60, 80, 3), dtype=np.uint8)
    clip = np.repeat(frame, 10, axis=0)
    augment = VideoViewAugment(size=32, num_frames=6, color_jitter=0.4, flip=0.5)
    for seed in range(5):
        view = augment(clip, seeded(seed))
        for t in range(1, 6):
            assert torch.equal(view[:, t], view[:, 0])


def test_view_deterministic_for_seed():
    augment = VideoViewAugment(size=32, num_frames=4)
    clip = random_clip()
    assert torch.equal(augment(clip, seeded(5)), augment(clip, seeded(5)))
    assert not torch.equal(augment(clip, seeded(5)), augment(clip, seeded(6)))


def test_view_without_jitter_is_resized_crop():
    # With the whole frame kept, no flip and no colour change, the view is the normalised resized clip.
    clip = np.full((4, 40, 40, 3), 128, dtype=np.uint8)
    augment = VideoViewAugment(size=16, scale=(1.0, 1.0), flip=0.0, color_jitter=0.0, num_frames=4)
    view = augment(clip, seeded(0))
    expected = (torch.full((3, 1, 1, 1), 128 / 255) - IMAGENET_MEAN) / IMAGENET_STD
    assert torch.allclose(view, expected.expand(3, 4, 16, 16), atol=1e-5)


def test_view_flip_mirrors():
    clip = np.zeros((2, 20, 20, 3), dtype=np.uint8)
    clip[:, :, :10] = 255  # left half white
    kwargs = dict(size=20, scale=(1.0, 1.0), color_jitter=0.0, num_frames=2)
    kept = VideoViewAugment(flip=0.0, **kwargs)(clip, seeded(0))
    flipped = VideoViewAugment(flip=1.0, **kwargs)(clip, seeded(0))
    assert kept[0, 0, 10, 2] > kept[0, 0, 10, 17]
    assert torch.allclose(flipped, kept.flip(-1), atol=1e-5)


def test_eval_tensor_keeps_whole_frame():
    clip = random_clip(num_frames=10, height=68, width=160)
    tensor = video_eval_tensor(clip, num_frames=4, short_side=34)
    assert tensor.shape == (3, 4, 34, 80)
    assert torch.equal(tensor, video_eval_tensor(clip, num_frames=4, short_side=34))


def test_eval_tensor_normalised():
    clip = np.full((3, 20, 30, 3), 255, dtype=np.uint8)
    tensor = video_eval_tensor(clip, num_frames=2, short_side=10)
    expected = (1.0 - IMAGENET_MEAN.flatten()) / IMAGENET_STD.flatten()
    assert torch.allclose(tensor[:, 0, 5, 5], expected, atol=1e-5)


def test_view_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="uint8"):
        VideoViewAugment()(random_clip().astype(np.float32), seeded(0))
