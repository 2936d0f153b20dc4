"""Audio features and audio views: log-mel spectrograms and their random gain and masking."""

from __future__ import annotations

import math

import torch
import torchaudio


class LogMel(torch.nn.Module):
    """Log-mel spectrogram: waveforms `(S,)` or `(B, S)` to `(1, n_mels, frames)` or `(B, 1, n_mels, frames)`.

    The power mel spectrogram gets a floor of `floor` before the natural log, so silence (and the zero
    padding of short audio) maps to a finite value, `log(floor)`. The default `n_fft=400` gives 201
    frequency bins, enough for 64 mels; 128 mels need `n_fft=1024`, or some mel filters stay empty.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 400,
        hop_length: int = 160,
        floor: float = 1e-6,
    ):
        super().__init__()
        self.floor = floor
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() not in (1, 2):
            raise ValueError(f"expected a waveform of shape (S,) or (B, S), got {tuple(waveform.shape)}")
        power = self.mel(waveform.float())  # (n_mels, frames) or (B, n_mels, frames)
        return torch.log(power.clamp_min(self.floor)).unsqueeze(-3)  # (1, n_mels, frames) or (B, 1, ...)


class AudioViewAugment:
    """One random view of a log-mel spectrogram: a gain change plus time and frequency masking.

    `gain_db` is the largest gain in decibels (drawn from [-gain_db, gain_db]); on a natural-log power
    spectrogram it is the shift `gain_db * ln(10) / 10`. `time_mask` and `freq_mask` are the widest masks
    in frames and mel bins (SpecAugment style, one mask each, widths drawn from 0 to the maximum); masked
    cells take the view's mean value, so a mask does not read as silence or as a loud band.
    """

    def __init__(self, gain_db: float = 6.0, time_mask: int = 20, freq_mask: int = 8):
        if gain_db < 0 or time_mask < 0 or freq_mask < 0:
            raise ValueError("gain_db, time_mask and freq_mask must not be negative")
        self.gain_db = gain_db
        self.time_mask = time_mask
        self.freq_mask = freq_mask

    def __call__(self, log_mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return an augmented copy of `(1, n_mels, frames)`, or of `(B, 1, n_mels, frames)` per clip."""
        if log_mel.dim() == 4:
            return torch.stack([self(one, generator) for one in log_mel])
        if log_mel.dim() != 3:
            raise ValueError(
                f"expected (1, n_mels, frames) or (B, 1, n_mels, frames), got {tuple(log_mel.shape)}"
            )

        gain = (2 * torch.rand((), generator=generator).item() - 1) * self.gain_db
        view = log_mel + gain * math.log(10) / 10  # (1, n_mels, frames)
        fill = view.mean()

        n_mels, frames = view.shape[-2], view.shape[-1]
        width = int(torch.randint(min(self.freq_mask, n_mels) + 1, (), generator=generator))
        start = int(torch.randint(n_mels - width + 1, (), generator=generator))
        view[..., start : start + width, :] = fill

        width = int(torch.randint(min(self.time_mask, frames) + 1, (), generator=generator))
        start = int(torch.randint(frames - width + 1, (), generator=generator))
        view[..., :, start : start + width] = fill
        return view
