"""Media files of the alarm report: thumbnail strips, short video excerpts, WAV copies and log-mel images.

Excerpts are VP9 in WebM (encoded with PyAV's libvpx-vp9), which Chromium and Firefox play without
proprietary codecs. Every file is written once per clip key. A clip that cannot be shown gets the reason
instead of a path, so the page still renders.
"""

from __future__ import annotations

import io
import logging
import re
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from detect.shard_clips import ClipReadError, ShardClipIndex

logger = logging.getLogger(__name__)

# Excerpts are for recognising a clip, not for watching it: small frames keep the report light.
EXCERPT_MAX_SIDE = 160
# Frames of excerpts whose frame rate is unknown are played at this rate (frames per second).
FALLBACK_FPS = 10.0
MEL_BANDS = 64
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010


@dataclass
class MediaItem:
    """A report-relative file path, or the reason the file could not be made (exactly one is set)."""

    path: str | None = None
    reason: str | None = None


@dataclass
class ClipMedia:
    """Everything the report shows of one clip; `audio` and `spectrogram` are empty when it has no audio."""

    strip: MediaItem
    video: MediaItem | None = None
    audio: MediaItem | None = None
    spectrogram: MediaItem | None = None


class ClipMediaWriter:
    """Write the media files of clips into `folder` (a report subfolder named `prefix`), once per key."""

    def __init__(
        self, shard_index: ShardClipIndex, folder: Path, prefix: str, *, strip_frames: int = 4
    ) -> None:
        self.shard_index = shard_index
        self.folder = folder
        self.prefix = prefix
        self.strip_frames = strip_frames
        self._strips: dict[str, MediaItem] = {}
        self._excerpts: dict[str, ClipMedia] = {}
        self._names: dict[str, str] = {}

    def strip(self, key: str) -> MediaItem:
        """Write (once) and return the clip's thumbnail strip, or the reason it is missing."""
        if key not in self._strips:
            name = f"{self._stem(key)}-strip.jpg"
            reason = self.shard_index.write_thumbnail_strip(
                key, self.folder / name, frame_count=self.strip_frames
            )
            if reason:
                self._strips[key] = MediaItem(reason=reason)
            else:
                self._strips[key] = MediaItem(path=f"{self.prefix}/{name}")
        return self._strips[key]

    def excerpt(self, key: str, fps: float | None) -> ClipMedia:
        """Write (once) the clip's strip, playable video, WAV and log-mel image; return paths or reasons."""
        if key in self._excerpts:
            return self._excerpts[key]

        media = ClipMedia(strip=self.strip(key))
        stem = self._stem(key)
        try:
            frames = self.shard_index.read_frames(key)
            write_video_excerpt(frames, fps or FALLBACK_FPS, self.folder / f"{stem}.webm")
            media.video = MediaItem(path=f"{self.prefix}/{stem}.webm")
        except (ClipReadError, av.FFmpegError, OSError, ValueError) as error:
            logger.warning("no video excerpt of %s: %s", key, error)
            media.video = MediaItem(reason=str(error))

        try:
            wav_bytes = self.shard_index.read_wav(key)
        except ClipReadError as error:
            wav_bytes = None
            media.audio = MediaItem(reason=str(error))
        if wav_bytes is not None:
            media.audio, media.spectrogram = self._write_audio(key, stem, wav_bytes)

        self._excerpts[key] = media
        return media

    def _write_audio(self, key: str, stem: str, wav_bytes: bytes) -> tuple[MediaItem, MediaItem]:
        try:
            samples, sample_rate = decode_wav(wav_bytes)
        except ValueError as error:
            logger.warning("audio of %s failed to decode: %s", key, error)
            reason = f"audio failed to decode: {error}"
            return MediaItem(reason=reason), MediaItem(reason=reason)
        (self.folder / f"{stem}.wav").write_bytes(wav_bytes)
        audio = MediaItem(path=f"{self.prefix}/{stem}.wav")
        if samples.size < round(WINDOW_SECONDS * sample_rate):
            return audio, MediaItem(reason=f"audio too short for a spectrogram ({samples.size} samples)")
        write_log_mel_image(samples, sample_rate, self.folder / f"{stem}-logmel.png", title=key)
        return audio, MediaItem(path=f"{self.prefix}/{stem}-logmel.png")

    def _stem(self, key: str) -> str:
        # File names stay unique even when two keys sanitise to the same text.
        if key not in self._names:
            self._names[key] = f"clip-{len(self._names):04d}-{re.sub(r'[^A-Za-z0-9_-]', '_', key)[:60]}"
        return self._names[key]


def write_video_excerpt(frames: list[Image.Image], fps: float, path: Path) -> Path:
    """Encode frames as a small VP9 WebM video played at `fps` frames per second."""
    if not frames:
        raise ValueError("no frames to encode")
    width, height = _even_size(frames[0].size, EXCERPT_MAX_SIDE)
    # libvpx takes the rate as a fraction; a rational approximation keeps 29.97 fps sources correct.
    rate = _as_fraction(fps)

    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Real-time speed and constant quality: a 1 s excerpt encodes in a few milliseconds.
        stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "34", "b:v": "0"}
        for frame in frames:
            pixels = np.asarray(frame.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode 16-bit PCM WAV bytes to mono float samples in [-1, 1] and the sample rate."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            if reader.getsampwidth() != 2:
                raise ValueError(f"expected 16-bit PCM, got {8 * reader.getsampwidth()}-bit samples")
            channels, sample_rate = reader.getnchannels(), reader.getframerate()
            raw = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as error:
        raise ValueError(f"not a valid WAV file: {error}") from None
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples[: samples.size - samples.size % channels].reshape(-1, channels).mean(axis=1)
    return samples, sample_rate


def log_mel_spectrogram(samples: np.ndarray, sample_rate: int, *, bands: int = MEL_BANDS) -> np.ndarray:
    """Return the log-mel power spectrogram in dB, shape (bands, frames), 25 ms Hann windows every 10 ms."""
    window_length = max(2, round(WINDOW_SECONDS * sample_rate))
    hop = max(1, round(HOP_SECONDS * sample_rate))
    n_fft = 1 << (window_length - 1).bit_length()
    starts = np.arange(0, max(1, samples.size - window_length + 1), hop)
    windows = np.stack([samples[start : start + window_length] for start in starts])  # (T, W)
    windows = windows * np.hanning(window_length)
    power = np.abs(np.fft.rfft(windows, n=n_fft, axis=1)) ** 2  # (T, n_fft // 2 + 1)
    mel_power = power @ mel_filterbank(sample_rate, n_fft, bands).T  # (T, bands)
    return 10.0 * np.log10(np.maximum(mel_power.T, 1e-10))  # (bands, T)


def mel_filterbank(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    """Return triangular filters on the HTK mel scale from 0 Hz to Nyquist, shape (bands, n_fft // 2 + 1)."""
    def to_mel(hertz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hertz / 700.0)

    def to_hertz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bin_hertz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hertz(np.linspace(0.0, to_mel(np.array(sample_rate / 2)), bands + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hertz - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bin_hertz) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling))


def write_log_mel_image(samples: np.ndarray, sample_rate: int, path: Path, *, title: str) -> Path:
    """Draw the clip's log-mel spectrogram as a small PNG with time and frequency axes."""
    spectrogram = log_mel_spectrogram(samples, sample_rate)  # (bands, T)
    duration = samples.size / sample_rate
    figure = Figure(figsize=(3.6, 2.2), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(
        spectrogram,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, duration, 0, spectrogram.shape[0]),
    )
    axes.set_xlabel("time in the clip (s)", fontsize=8)
    axes.set_ylabel(f"mel band (0-{sample_rate / 2000:g} kHz)", fontsize=8)
    axes.set_title(f"log-mel power: {title}", fontsize=8)
    axes.tick_params(labelsize=7)
    colour_bar = figure.colorbar(image, ax=axes)
    colour_bar.set_label("power (dB)", fontsize=8)
    colour_bar.ax.tick_params(labelsize=7)
    figure.tight_layout()
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path


def _even_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Scale (width, height) so the longer side is at most `max_side`, rounded to even numbers for yuv420p."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _as_fraction(fps: float) -> Fraction:
    if not np.isfinite(fps) or fps <= 0:
        fps = FALLBACK_FPS
    return Fraction(fps).limit_denominator(1001)
