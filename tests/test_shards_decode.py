"""Decoding real footage: frames and times with decord, audio with PyAV, and clear errors for non-videos."""

import fractions
import logging
from pathlib import Path

import av
import numpy as np
import pytest

from shards.decode import NO_AUDIO_STREAM, VideoFile, audio_slice, decode_audio
from shards.errors import ShardsInputError

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"


def write_test_video(
    path: Path, *, seconds: float, fps: int = 10, audio_rate: int | None = 44100, audio_start_s: float = 0.0
) -> None:
    """Encode a small synthetic video (frame i has grey level 10 * i) with an optional 440 Hz tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = None
        if audio_rate:
            audio = container.add_stream("aac", rate=audio_rate)
            audio.layout = "stereo"

        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (10 * i) % 250, np.uint8), format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)

        if audio is not None:
            t = np.arange(round(seconds * audio_rate)) / audio_rate
            tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            frame.sample_rate = audio_rate
            frame.pts = round(audio_start_s * audio_rate)
            for packet in audio.encode(frame):
                container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


def test_vtest_frames_and_times():
    video = VideoFile(FOOTAGE / "vtest.avi", max_side=160)
    assert video.num_frames == 795
    assert video.fps == pytest.approx(10.0)
    assert video.duration_s == pytest.approx(79.5, abs=1e-3)
    assert (video.width, video.height) == (160, 120)
    assert np.allclose(video.frame_times[:3], [0.0, 0.1, 0.2], atol=1e-5)

    frames = video.read_frames([0, 5, 794])
    assert frames.shape == (3, 120, 160, 3)
    assert frames.dtype == np.uint8


def test_megamind_broken_timestamps_fall_back():
    video = VideoFile(FOOTAGE / "Megamind.avi", max_side=160)
    assert video.num_frames == 270
    assert np.allclose(video.frame_times, np.arange(270) / video.fps)
    assert video.duration_s == pytest.approx(11.26, abs=0.01)


def test_megamind_audio_survives_corrupt_packet(caplog):
    with caplog.at_level(logging.WARNING, logger="shards.decode"):
        track = decode_audio(FOOTAGE / "Megamind.avi")
    assert track.missing_reason is None
    assert track.skipped_packets == 1
    assert track.samples.dtype == np.float32
    assert abs(len(track.samples) / track.sample_rate - 11.2) < 0.2
    assert np.abs(track.samples).max() > 0.05
    assert any("corrupt audio packet" in record.message for record in caplog.records)


def test_megamind_skipped_packet_becomes_silence():
    # The corrupt packet is the first one (32 ms of AC3): its time stays silent so the rest stays aligned.
    track = decode_audio(FOOTAGE / "Megamind.avi")
    assert np.all(track.samples[:500] == 0)


def test_bigbuckbunny_audio_is_mono_16k():
    track = decode_audio(FOOTAGE / "bigbuckbunny.mp4")
    assert track.sample_rate == 16000
    assert track.samples.ndim == 1
    assert abs(len(track.samples) / 16000 - 5.3) < 0.05
    assert track.samples.min() >= -1.0
    assert track.samples.max() <= 1.0


def test_video_without_audio_stream():
    track = decode_audio(FOOTAGE / "bikes.mp4")
    assert track.samples is None
    assert track.missing_reason == NO_AUDIO_STREAM


def test_synthetic_tone_resampled(tmp_path):
    path = tmp_path / "tone.mp4"
    write_test_video(path, seconds=2.0, audio_rate=44100)
    track = decode_audio(path)
    assert abs(len(track.samples) - 32000) < 2000

    # A 440 Hz tone keeps its frequency after resampling to 16 kHz.
    middle = track.samples[8000:24000]
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.argmax(spectrum) * 16000 / len(middle) == pytest.approx(440, abs=2)


def test_late_audio_start_padded_with_silence(tmp_path):
    path = tmp_path / "late.mp4"
    write_test_video(path, seconds=2.0, audio_rate=16000, audio_start_s=0.5)
    track = decode_audio(path)
    onset = int(np.flatnonzero(np.abs(track.samples) > 0.05)[0])
    assert abs(onset - 8000) < 200


def test_audio_slice_pads_past_end():
    track = decode_audio(FOOTAGE / "bigbuckbunny.mp4")
    end = len(track.samples)
    tail = audio_slice(track, end - 100, end + 400)
    assert tail.shape == (500,)
    assert np.all(tail[100:] == 0)
    assert np.array_equal(tail[:100], track.samples[-100:])


def test_random_bytes_raise_input_error(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ShardsInputError, match="noise.mp4: not a readable video"):
        VideoFile(path)


def test_empty_file_raises_input_error(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(ShardsInputError, match="empty.avi: file is empty"):
        VideoFile(path)


def test_truncated_header_raises_input_error(tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes((FOOTAGE / "bikes.mp4").read_bytes()[:300])
    with pytest.raises(ShardsInputError, match="cut.mp4"):
        VideoFile(path)


def test_audio_only_file_raises_input_error(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(ShardsInputError, match="no video stream"):
        VideoFile(path)


def test_directory_raises_input_error(tmp_path):
    with pytest.raises(ShardsInputError, match="not a file"):
        VideoFile(tmp_path)
