"""Log-mel features and audio views: shapes, the floor, the gain shift, masks and determinism."""

import math

import pytest
import torch

from shards.audio import AudioViewAugment, LogMel


def test_logmel_shapes():
    log_mel = LogMel()
    assert log_mel(torch.zeros(16000)).shape == (1, 64, 101)
    assert log_mel(torch.zeros(3, 16000)).shape == (3, 1, 64, 101)
    assert LogMel(n_mels=128, n_fft=1024)(torch.zeros(8000)).shape == (1, 128, 51)


def test_logmel_floor_on_silence():
    features = LogMel(floor=1e-6)(torch.zeros(16000))
    assert torch.all(torch.isfinite(features))
    assert torch.allclose(features, torch.full_like(features, math.log(1e-6)))


def test_logmel_tone_peaks_in_right_band():
    t = torch.arange(16000) / 16000
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    features = LogMel()(tone)  # (1, 64, frames)
    low = LogMel()(0.5 * torch.sin(2 * math.pi * 200 * t))
    assert features[0].mean(-1).argmax() > low[0].mean(-1).argmax()


def test_logmel_rejects_3d():
    with pytest.raises(ValueError, match="waveform"):
        LogMel()(torch.zeros(1, 1, 100))


def test_gain_only_shifts_by_gain():
    features = LogMel()(torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1)
    augment = AudioViewAugment(gain_db=6.0, time_mask=0, freq_mask=0)
    view = augment(features, torch.Generator().manual_seed(1))
    shift = (view - features).flatten()
    assert torch.allclose(shift, shift[0].expand_as(shift), atol=1e-5)
    assert 0 < abs(shift[0].item()) <= 6.0 * math.log(10) / 10 + 1e-6


def test_masks_fill_bands_with_mean():
    features = torch.arange(64 * 50, dtype=torch.float32).view(1, 64, 50)
    augment = AudioViewAugment(gain_db=0.0, time_mask=10, freq_mask=8)
    changed = 0
    for seed in range(10):
        view = augment(features, torch.Generator().manual_seed(seed))
        changed += int((view != features).any())
        assert torch.all((view == features) | (view == features.mean()))
    assert changed >= 8


def test_audio_view_deterministic_and_batched():
    features = LogMel()(torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)))
    augment = AudioViewAugment()
    one = augment(features, torch.Generator().manual_seed(3))
    two = augment(features, torch.Generator().manual_seed(3))
    assert one.shape == (2, 1, 64, 101)
    assert torch.equal(one, two)
    assert not torch.equal(one, augment(features, torch.Generator().manual_seed(4)))


def test_audio_view_leaves_input_untouched():
    features = LogMel()(torch.randn(16000) * 0.1)
    before = features.clone()
    AudioViewAugment()(features, torch.Generator().manual_seed(0))
    assert torch.equal(features, before)
