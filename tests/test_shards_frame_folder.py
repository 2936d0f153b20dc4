"""`FrameFolder`: a folder of frame images read with the interface of `VideoFile`."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.errors import ShardsInputError
from shards.frame_folder import FrameFolder, list_frame_images, natural_sort_key


def write_frames(
    folder: Path, count: int, *, size=(40, 30), suffix=".png", mode="RGB", digits=3
) -> list[np.ndarray]:
    """Write `count` frames whose pixel value encodes their index; return them as RGB arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for index in range(count):
        value = 10 + 20 * index
        pixels = np.full((size[1], size[0], 3), value, np.uint8)
        pixels[0, 0] = (index, 0, 255 - index)
        image = Image.fromarray(pixels).convert(mode)
        image.save(folder / f"{index:0{digits}d}{suffix}")
        frames.append(np.asarray(image.convert("RGB")))
    return frames


def test_interface_matches_video_file(tmp_path):
    write_frames(tmp_path / "clip", 5)
    folder = FrameFolder(tmp_path / "clip", fps=10)
    assert folder.path == tmp_path / "clip"
    assert folder.fps == 10.0
    assert folder.num_frames == 5
    np.testing.assert_allclose(folder.frame_times, [0.0, 0.1, 0.2, 0.3, 0.4])
    assert folder.duration_s == pytest.approx(0.5)
    assert (folder.width, folder.height) == (40, 30)
    assert folder.video_start_s == 0.0
    assert folder.has_audio_stream is False


def test_read_frames_returns_rgb_in_order(tmp_path):
    expected = write_frames(tmp_path / "clip", 4)
    frames = FrameFolder(tmp_path / "clip", fps=24).read_frames([3, 0, 2])
    assert frames.shape == (3, 30, 40, 3)
    assert frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], expected[3])
    np.testing.assert_array_equal(frames[1], expected[0])
    np.testing.assert_array_equal(frames[2], expected[2])


def test_grayscale_tiff_becomes_rgb(tmp_path):
    write_frames(tmp_path / "ucsd", 3, suffix=".tif", mode="L")
    frames = FrameFolder(tmp_path / "ucsd", fps=10).read_frames([1])
    assert frames.shape == (1, 30, 40, 3)
    assert (frames[..., 0] == frames[..., 1]).all()
    assert (frames[..., 1] == frames[..., 2]).all()


def test_max_side_resizes_like_video_file(tmp_path):
    write_frames(tmp_path / "clip", 2, size=(200, 100))
    folder = FrameFolder(tmp_path / "clip", fps=10, max_side=50)
    assert (folder.width, folder.height) == (50, 25)
    assert folder.read_frames([0, 1]).shape == (2, 25, 50, 3)
    small = FrameFolder(tmp_path / "clip", fps=10, max_side=400)
    assert (small.width, small.height) == (200, 100)


def test_natural_order_and_hidden_files(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for name in ["10.jpg", "2.jpg", "1.jpg", "._1.jpg", "notes.txt"]:
        if name.endswith(".jpg") and not name.startswith("."):
            Image.new("RGB", (8, 8)).save(folder / name)
        else:
            (folder / name).write_bytes(b"not an image")
    assert [path.name for path in list_frame_images(folder)] == ["1.jpg", "2.jpg", "10.jpg"]
    assert sorted(["frame10", "frame9"], key=natural_sort_key) == ["frame9", "frame10"]


def test_empty_folder_is_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardsInputError, match="no frame images"):
        FrameFolder(tmp_path / "empty", fps=10)


def test_missing_folder_and_bad_fps(tmp_path):
    with pytest.raises(ShardsInputError, match="not a folder"):
        FrameFolder(tmp_path / "absent", fps=10)
    write_frames(tmp_path / "clip", 1)
    with pytest.raises(ShardsInputError, match="must be positive"):
        FrameFolder(tmp_path / "clip", fps=0)


def test_unreadable_first_frame_is_input_error(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "000.jpg").write_bytes(b"truncated")
    with pytest.raises(ShardsInputError, match="not a readable image"):
        FrameFolder(folder, fps=10)


def test_bad_later_frame_raises_runtime_error(tmp_path):
    write_frames(tmp_path / "clip", 3)
    (tmp_path / "clip" / "001.png").write_bytes(b"corrupt")
    folder = FrameFolder(tmp_path / "clip", fps=10)
    assert folder.read_frames([0, 2]).shape == (2, 30, 40, 3)
    with pytest.raises(RuntimeError, match="cannot read frame image"):
        folder.read_frames([1])


def test_frame_of_other_size_raises_runtime_error(tmp_path):
    write_frames(tmp_path / "clip", 2)
    Image.new("RGB", (20, 20)).save(tmp_path / "clip" / "002.png")
    folder = FrameFolder(tmp_path / "clip", fps=10)
    with pytest.raises(RuntimeError, match="first frame is 40x30"):
        folder.read_frames([2])


def test_index_outside_folder(tmp_path):
    write_frames(tmp_path / "clip", 2)
    with pytest.raises(IndexError):
        FrameFolder(tmp_path / "clip", fps=10).read_frames([2])
