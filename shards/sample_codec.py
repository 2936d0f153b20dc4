"""Bytes of the shard members: JPEG frames and 16-bit PCM WAV audio, both directions."""

from __future__ import annotations

import io
import wave

import numpy as np
from PIL import Image


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """Encode one `(H, W, 3)` uint8 RGB frame as JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes to an `(H, W, 3)` uint8 RGB frame."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode `(S,)` float samples in [-1, 1] as mono 16-bit PCM WAV; values outside are clipped."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")  # (S,)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode mono 16-bit PCM WAV bytes to `(S,)` float32 in [-1, 1] and the sample rate.

    Raises `ValueError` for any other WAV layout, because the shard format allows only this one.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            if reader.getnchannels() != 1 or reader.getsampwidth() != 2:
                raise ValueError(
                    f"expected mono 16-bit WAV, got {reader.getnchannels()} channel(s) of "
                    f"{8 * reader.getsampwidth()} bits"
                )
            rate = reader.getframerate()
            pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")  # (S,)
    except (wave.Error, EOFError) as error:
        raise ValueError(f"invalid WAV data ({error})") from error
    return (pcm.astype(np.float32) / 32768.0), rate
