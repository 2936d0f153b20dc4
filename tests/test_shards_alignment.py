"""A flash and a click recorded together stay together through build, streaming, decoding and augmentation."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from shards.audio import AudioViewAugment, LogMel
from shards.augment import VideoViewAugment
from shards.build import BuildOptions, build_shards
from shards.read import list_shards
from shards.stream import stream_clips

FPS = 25
SAMPLE_RATE = 44100
EVENT_FRAME = 34  # 1.36 s: inside clips starting at 0.5 s and 1.0 s, on no clip boundary
EVENT_S = EVENT_FRAME / FPS
DURATION_S = 4.0


def write_flash_and_click(path: Path) -> None:
    """Write an H.264/AAC MP4: dark grey frames and silence, one white frame and a 5 ms click at EVENT_S."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"

        for index in range(int(DURATION_S * FPS)):
            level = 255 if index == EVENT_FRAME else 30
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, dtype=np.uint8), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)

        samples = np.zeros(int(DURATION_S * SAMPLE_RATE), dtype=np.float32)
        click = round(EVENT_S * SAMPLE_RATE)
        samples[click : click + SAMPLE_RATE // 200] = 0.8 * np.sign(np.sin(np.arange(SAMPLE_RATE // 200) * 0.7))
        chunk = 1024
        for start in range(0, len(samples), chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + chunk], format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            frame.time_base = Fraction(1, SAMPLE_RATE)
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def test_flash_and_click_agree(tmp_path):
    video = tmp_path / "flash.mp4"
    write_flash_and_click(video)
    build_shards([video], tmp_path / "set", BuildOptions(clip_seconds=1.0, stride_seconds=0.5, max_side=64))

    generator = torch.Generator().manual_seed(0)
    video_augment = VideoViewAugment(size=32, num_frames=FPS, flip=0.5, color_jitter=0.2, scale=(0.5, 1.0))
    logmel = LogMel(sample_rate=16000)
    audio_augment = AudioViewAugment(gain_db=6.0, time_mask=0, freq_mask=8)

    checked = 0
    for clip in stream_clips(list_shards(tmp_path / "set"), seed=0):
        start_s = clip.meta["start_s"]
        if not start_s < EVENT_S < clip.meta["end_s"]:
            continue

        view = video_augment(clip.frames, generator)  # (3, T, 32, 32)
        brightness = view.mean(dim=(0, 2, 3))  # (T,)
        # The view contains every frame of the clip in order (25 of 25), so its index maps to a source frame.
        assert len(clip.meta["frame_indices"]) == FPS
        flash_frame = clip.meta["frame_indices"][int(brightness.argmax())]
        flash_s = flash_frame / clip.meta["fps"] - start_s

        spectrogram = audio_augment(logmel(torch.from_numpy(clip.audio)), generator)  # (1, M, F)
        energy = spectrogram[0].mean(dim=0)  # (F,)
        threshold = (energy.min() + energy.max()) / 2
        onset_frame = int(torch.nonzero(energy > threshold)[0])
        click_s = onset_frame * 160 / 16000

        assert flash_frame == EVENT_FRAME
        assert abs(click_s - flash_s) < 1 / FPS, (clip.key, click_s, flash_s)
        checked += 1
    assert checked == 2
