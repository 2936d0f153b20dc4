"""Exact frame decoding and clip keys.

Every decode and clip order gives the same pixels, frame i is the decoder's i-th frame, every `--max-side`
gives frames of the size README's rule gives, and clip keys keep names written in any script.
"""

from __future__ import annotations

import fractions
import json
import random
from pathlib import Path

import av
import numpy as np
import pytest

from fault_media import truncated_copy, write_video
from shards.build import BuildOptions, build_shards
from shards.clips import clip_spans, frames_in_span
from shards.decode import VideoFile, frame_to_rgb
from shards.errors import ShardsInputError
from shards.frame_folder import FrameFolder
from shards.read import list_shards
from shards.stream import stream_clips

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"

# Enough frames to cover many clips (Megamind's clips cover its frames 0 to 263) while keeping the test fast.
REFERENCE_FRAMES = 250

# The size tests cut the first seconds of each video only: a wrong size fails on the first clip already.
SIZE_TEST_SECONDS = 30.0


def clip_indices(video: VideoFile, clip_seconds: float, stride_seconds: float) -> list[list[int]]:
    """Return the frame indices of every clip of `video`, in the order the builder cuts them."""
    return [
        frames_in_span(video.frame_times, start, end).tolist()
        for start, end in clip_spans(video.duration_s, clip_seconds, stride_seconds)
    ]


def pyav_frames(path: Path, count: int, width: int, height: int) -> np.ndarray:
    """Decode the first `count` frames of `path` with a plain PyAV loop: `(count, height, width, 3)`."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame_to_rgb(frame, width, height))
            if len(frames) == count:
                break
    return np.stack(frames)


def expected_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The resize rule of README: the longer side becomes `max_side` unless already shorter, aspect kept."""
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def test_megamind_clips_identical_in_any_order():
    # Megamind.avi has no usable timestamps, the case where seeking decoders shifted frames by one.
    orders = ["forward", "reverse", "shuffled", "forward"]
    decoded: list[dict[int, np.ndarray]] = []
    for order in orders:
        with VideoFile(FOOTAGE / "Megamind.avi", max_side=160) as video:
            assert not video.frames_placed_by_time
            clips = list(enumerate(clip_indices(video, 1.0, 0.5)))
            if order == "reverse":
                clips.reverse()
            elif order == "shuffled":
                random.Random(0).shuffle(clips)
            decoded.append({number: video.read_frames(indices) for number, indices in clips})

    first = decoded[0]
    assert len(first) == 21
    for other, order in zip(decoded[1:], orders[1:]):
        assert other.keys() == first.keys()
        for number in first:
            assert np.array_equal(other[number], first[number]), (order, number)


@pytest.mark.parametrize(("name", "placed_by_time"), [("Megamind.avi", False), ("vtest.avi", True)])
def test_frame_i_is_the_decoders_ith_frame(name, placed_by_time):
    path = FOOTAGE / name
    with VideoFile(path, max_side=160) as video:
        assert video.frames_placed_by_time is placed_by_time
        reference = pyav_frames(path, REFERENCE_FRAMES, video.width, video.height)  # (N, H, W, 3)

        # Overlapping clips, as a build with a stride below the clip length reads them.
        checked = set()
        for indices in clip_indices(video, 1.0, 0.5):
            indices = [index for index in indices if index < REFERENCE_FRAMES]
            if not indices:
                break
            frames = video.read_frames(indices)
            for index, frame in zip(indices, frames):
                assert np.array_equal(frame, reference[index]), (name, index)
            checked.update(indices)
    assert checked == set(range(REFERENCE_FRAMES))

    # Neighbouring frames differ, so a shift by one position could not pass the comparison above.
    shifted_equal = [np.array_equal(reference[i], reference[i + 1]) for i in range(REFERENCE_FRAMES - 1)]
    assert sum(shifted_equal) < REFERENCE_FRAMES // 10


def test_rereading_earlier_frame_same_pixels():
    with VideoFile(FOOTAGE / "bikes.mp4", max_side=64) as video:
        late = video.read_frames([200, 201])
        early = video.read_frames([3, 4])  # decodes again from the start
        assert np.array_equal(video.read_frames([200, 201]), late)
        assert np.array_equal(video.read_frames([3, 4]), early)
        assert not np.array_equal(early, late)


def test_late_start_frames_match_by_timestamp(tmp_path):
    # The stream starts at 0.5 s: frames are placed by their timestamps relative to that start.
    millisecond = fractions.Fraction(1, 1000)
    path = write_video(tmp_path / "late.mkv", frame_pts=list(range(500, 3500, 100)), time_base=millisecond)
    with VideoFile(path, max_side=64) as video:
        assert video.frames_placed_by_time
        assert video.num_frames == 30
        reference = pyav_frames(path, 30, video.width, video.height)
        for indices in clip_indices(video, 1.0, 0.5):
            assert np.array_equal(video.read_frames(indices), reference[indices])


def test_truncated_avi_keeps_the_frames_before_the_cut(tmp_path):
    whole = write_video(tmp_path / "whole.avi", seconds=3)
    cut = truncated_copy(whole, tmp_path / "cut.avi", 0.9)
    with VideoFile(cut) as video:
        # The last of the 25 frames left is cut inside its packet, so it decodes only in part.
        assert video.num_frames == 25
        reference = pyav_frames(whole, 30, video.width, video.height)
        clips = clip_indices(video, 1.0, 1.0)
        assert len(clips) == 2
        for indices in clips:
            assert np.array_equal(video.read_frames(indices), reference[indices])


def test_index_outside_the_video_raises_index_error():
    with VideoFile(FOOTAGE / "bikes.mp4", max_side=64) as video:
        with pytest.raises(IndexError, match="frame index 250 outside 0..249"):
            video.read_frames([249, 250])


@pytest.mark.parametrize("name", ["bikes.mp4", "vtest.avi"])
@pytest.mark.parametrize("max_side", [16, 48, 50, 64, 97, 160])
def test_every_max_side_decodes(name, max_side):
    path = FOOTAGE / name
    with av.open(str(path)) as container:
        native = container.streams.video[0].codec_context
        width, height = expected_size(native.width, native.height, max_side)

    with VideoFile(path, max_side=max_side) as video:
        assert (video.width, video.height) == (width, height)
        clips = clip_indices(video, 1.0, 1.0)[: int(SIZE_TEST_SECONDS)]
        assert clips
        for indices in clips:
            frames = video.read_frames(indices)
            assert frames.shape == (len(indices), height, width, 3)
            assert frames.dtype == np.uint8


def test_build_at_max_side_48_keeps_every_clip(tmp_path):
    # decord resized bikes.mp4 (640x272) to a width it did not report, and every clip failed.
    out = tmp_path / "shards"
    summary = build_shards([FOOTAGE / "bikes.mp4"], out, BuildOptions(max_side=48, workers=1))
    assert summary.failed_clips == 0
    assert summary.num_clips == 10
    clips = list(stream_clips(list_shards(out), seed=0, shuffle_buffer=1))
    assert {clip.frames.shape[1:] for clip in clips} == {(20, 48, 3)}


def test_one_pixel_video_skipped(tmp_path):
    video = write_video(tmp_path / "dot.mov", seconds=2, size=(1, 1), codec="png", pix_fmt="rgb24")
    with pytest.raises(ShardsInputError, match="frames are 1x1 pixels"):
        VideoFile(video)

    write_video(tmp_path / "normal.mp4", seconds=2)
    out = tmp_path / "shards"
    summary = build_shards([tmp_path], out, BuildOptions(workers=1))
    assert summary.num_clips == 2
    reasons = {Path(entry["path"]).name: entry["reason"] for entry in summary.skipped}
    assert "frames are 1x1 pixels" in reasons["dot.mov"]


def test_one_pixel_frame_folder_is_rejected(tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (1, 5), (index, 0, 0)).save(folder / f"{index:03d}.png")
    with pytest.raises(ShardsInputError, match="frames are 1x5 pixels"):
        FrameFolder(folder, fps=10)


def test_chinese_and_arabic_names_round_trip(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "步行街 监控.mp4", seconds=2)
    write_video(videos / "ممر المشاة.mp4", seconds=2)
    write_video(videos / "ممر المشاة 2.mp4", seconds=1)

    out = tmp_path / "shards"
    summary = build_shards([videos], out, BuildOptions(workers=1))
    assert summary.num_clips == 5

    expected = {
        "步行街_监控-0000000", "步行街_监控-0001000",
        "ممر_المشاة-0000000", "ممر_المشاة-0001000",
        "ممر_المشاة_2-0000000",
    }
    clips = list(stream_clips(list_shards(out), seed=0, shuffle_buffer=1))
    assert {clip.key for clip in clips} == expected
    for clip in clips:
        assert clip.meta["key"] == clip.key
        assert clip.frames.shape == (10, 48, 64, 3)
        assert clip.meta["source_name"] in {"步行街 监控.mp4", "ممر المشاة.mp4", "ممر المشاة 2.mp4"}

    index = json.loads((out / "index.json").read_text())
    assert sorted(Path(source["path"]).name for source in index["sources"]) == sorted(
        path.name for path in videos.iterdir()
    )
