"""The anomaly benchmark layouts: UCSD Ped1/Ped2, CUHK Avenue, ShanghaiTech Campus and Subway."""

from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io
from PIL import Image

from shards.collections import read_collection
from shards.errors import ShardsInputError
from shards.frame_folder import FrameFolder


def write_video(path: Path, num_frames: int, fps: int = 10) -> Path:
    """Encode a tiny MPEG-4 video of `num_frames` grey frames that brighten one step per frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(num_frames):
            pixels = np.full((24, 32, 3), (10 + 7 * index) % 250, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_frames(folder: Path, count: int, suffix: str, *, first: int = 1, digits: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("L", (24, 16), 30 + index).save(folder / f"{index + first:0{digits}d}{suffix}")


def write_masks(folder: Path, anomalous: list[bool]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, positive in enumerate(anomalous):
        mask = np.zeros((16, 24), np.uint8)
        if positive:
            mask[3:5, 7:9] = 255
        Image.fromarray(mask).save(folder / f"{index + 1:03d}.bmp")


UCSD_M = """TestVideoFile = {};
% 1
TestVideoFile{end+1}.gt_frame = [3:5];
% 2
TestVideoFile{end+1}.gt_frame = [1:2, 6:6];
"""


def write_ucsd_set(root: Path, name: str) -> Path:
    """A UCSD set with two training and two test clips of 6 frames, ground truth in the .m file."""
    set_root = root / name
    for clip in ["Train001", "Train002"]:
        write_frames(set_root / "Train" / clip, 6, ".tif")
    for clip in ["Test001", "Test002"]:
        write_frames(set_root / "Test" / clip, 6, ".tif")
    (set_root / "Test" / f"{name}.m").write_text(UCSD_M)
    (set_root / "Train" / "._Train001").write_bytes(b"resource fork")
    return set_root


def test_ucsd_both_sets(tmp_path):
    write_ucsd_set(tmp_path, "UCSDped1")
    write_ucsd_set(tmp_path, "UCSDped2")
    listing = read_collection("ucsd", tmp_path)
    assert [item.stem for item in listing.items] == [
        "UCSDped1_Test001", "UCSDped1_Test002", "UCSDped1_Train001", "UCSDped1_Train002",
        "UCSDped2_Test001", "UCSDped2_Test002", "UCSDped2_Train001", "UCSDped2_Train002",
    ]
    by_stem = {item.stem: item for item in listing.items}
    np.testing.assert_array_equal(by_stem["UCSDped1_Test001"].frame_labels, [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(by_stem["UCSDped2_Test002"].frame_labels, [1, 1, 0, 0, 0, 1])
    train = by_stem["UCSDped1_Train002"]
    assert train.split == "train"
    assert train.frame_labels is None
    assert train.fps == 10.0
    assert train.is_frame_folder
    assert train.path == tmp_path / "UCSDped1" / "Train" / "Train002"
    assert FrameFolder(train.path, fps=train.fps).num_frames == 6
    assert listing.missing == []


def test_ucsd_one_set_and_split(tmp_path):
    set_root = write_ucsd_set(tmp_path, "UCSDped2")
    listing = read_collection("ucsd", set_root, split="test")
    assert [item.stem for item in listing.items] == ["UCSDped2_Test001", "UCSDped2_Test002"]
    assert all(item.split == "test" and item.collection == "ucsd" for item in listing.items)


def test_ucsd_m_lines_follow_clip_numbers(tmp_path):
    set_root = write_ucsd_set(tmp_path, "UCSDped1")
    for image in (set_root / "Test" / "Test001").iterdir():
        image.unlink()
    (set_root / "Test" / "Test001").rmdir()
    [item] = read_collection("ucsd", set_root, split="test").items
    assert item.stem == "UCSDped1_Test002"
    np.testing.assert_array_equal(item.frame_labels, [1, 1, 0, 0, 0, 1])


def test_ucsd_masks_fill_in_without_m_file(tmp_path):
    set_root = write_ucsd_set(tmp_path, "UCSDped1")
    (set_root / "Test" / "UCSDped1.m").unlink()
    write_masks(set_root / "Test" / "Test002_gt", [False, True, True, False, False, False])
    listing = read_collection("ucsd", set_root, split="test")
    by_stem = {item.stem: item for item in listing.items}
    np.testing.assert_array_equal(by_stem["UCSDped1_Test002"].frame_labels, [0, 1, 1, 0, 0, 0])
    assert by_stem["UCSDped1_Test001"].frame_labels is None
    assert listing.missing == [{
        "entry": str(set_root / "Test" / "Test001"),
        "reason": "no ground truth (no line in the .m file, no pixel masks); kept without frame labels",
    }]


def test_ucsd_m_file_wins_over_masks(tmp_path, caplog):
    set_root = write_ucsd_set(tmp_path, "UCSDped2")
    write_masks(set_root / "Test" / "Test001_gt", [False, False, True, True, False, False])
    listing = read_collection("ucsd", set_root, split="test")
    np.testing.assert_array_equal(listing.items[0].frame_labels, [0, 0, 1, 1, 1, 0])
    assert "disagree with UCSDped2.m on 1 frame(s)" in caplog.text


def test_ucsd_range_past_last_frame(tmp_path):
    set_root = write_ucsd_set(tmp_path, "UCSDped1")
    (set_root / "Test" / "UCSDped1.m").write_text("TestVideoFile{end+1}.gt_frame = [4:9];\n")
    with pytest.raises(ShardsInputError, match="range 4:9 of Test001 is outside its frames 1..6"):
        read_collection("ucsd", set_root)


def test_ucsd_not_a_ucsd_folder(tmp_path):
    with pytest.raises(ShardsInputError, match="no UCSD set found"):
        read_collection("ucsd", tmp_path)


def write_label_mat(path: Path, anomalous: list[bool]) -> None:
    masks = np.empty((1, len(anomalous)), dtype=object)
    for index, positive in enumerate(anomalous):
        mask = np.zeros((6, 8), np.uint8)
        mask[2, 3] = 1 if positive else 0
        masks[0, index] = mask
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"volLabel": masks})


def test_avenue_videos_and_masks(tmp_path):
    root = tmp_path / "Avenue Dataset"
    write_video(root / "training_videos" / "01.avi", 5)
    write_video(root / "testing_videos" / "01.avi", 6)
    write_video(root / "testing_videos" / "02.avi", 4)
    write_label_mat(root / "ground_truth_demo" / "testing_label_mask" / "1_label.mat", [0, 1, 1, 0, 0, 1])

    listing = read_collection("avenue", root)
    assert [item.stem for item in listing.items] == ["avenue_test_01", "avenue_test_02", "avenue_train_01"]
    by_stem = {item.stem: item for item in listing.items}
    np.testing.assert_array_equal(by_stem["avenue_test_01"].frame_labels, [0, 1, 1, 0, 0, 1])
    assert by_stem["avenue_test_01"].frame_labels.dtype == np.int8
    assert by_stem["avenue_test_02"].frame_labels is None
    assert by_stem["avenue_train_01"].split == "train"
    assert not by_stem["avenue_train_01"].is_frame_folder
    [entry] = listing.missing
    assert entry["entry"].endswith("testing_label_mask/2_label.mat")


def test_avenue_mask_count_must_match_video(tmp_path):
    write_video(tmp_path / "testing_videos" / "01.avi", 6)
    write_label_mat(tmp_path / "testing_label_mask" / "1_label.mat", [0, 1, 0])
    with pytest.raises(ShardsInputError, match="volLabel has 3 masks but .*01.avi has 6 frames"):
        read_collection("avenue", tmp_path)


def test_avenue_mat_without_vol_label(tmp_path):
    write_video(tmp_path / "testing_videos" / "01.avi", 3)
    (tmp_path / "testing_label_mask").mkdir()
    scipy.io.savemat(str(tmp_path / "testing_label_mask" / "1_label.mat"), {"other": np.zeros(3)})
    with pytest.raises(ShardsInputError, match="no variable 'volLabel' \\(found: other\\)"):
        read_collection("avenue", tmp_path)
    for garbage in [b"not a mat file", b"MATLAB 5.0 MAT-file" + bytes(200)]:
        (tmp_path / "testing_label_mask" / "1_label.mat").write_bytes(garbage)
        with pytest.raises(ShardsInputError, match="cannot read MATLAB file"):
            read_collection("avenue", tmp_path)


def test_shanghaitech_layout(tmp_path):
    write_video(tmp_path / "training" / "videos" / "01_001.avi", 4)
    write_frames(tmp_path / "testing" / "frames" / "01_0014", 5, ".jpg", first=0)
    write_frames(tmp_path / "testing" / "frames" / "02_0128", 3, ".jpg", first=0)
    masks = tmp_path / "testing" / "test_frame_mask"
    masks.mkdir(parents=True)
    np.save(masks / "01_0014.npy", np.array([0, 0, 1, 1, 0]))

    listing = read_collection("shanghaitech", tmp_path)
    by_stem = {item.stem: item for item in listing.items}
    assert sorted(by_stem) == ["01_001", "01_0014", "02_0128"]
    test = by_stem["01_0014"]
    assert test.fps == 24.0
    assert test.split == "test"
    np.testing.assert_array_equal(test.frame_labels, [0, 0, 1, 1, 0])
    assert FrameFolder(test.path, fps=test.fps).num_frames == 5
    assert by_stem["02_0128"].frame_labels is None
    assert by_stem["01_001"].split == "train"
    assert by_stem["01_001"].fps is None
    [entry] = listing.missing
    assert entry["entry"] == str(masks / "02_0128.npy")
    train_only = read_collection("shanghaitech", tmp_path, split="train")
    assert [item.stem for item in train_only.items] == ["01_001"]


def test_shanghaitech_mask_length_mismatch(tmp_path):
    write_frames(tmp_path / "testing" / "frames" / "01_0014", 5, ".jpg", first=0)
    (tmp_path / "testing" / "test_frame_mask").mkdir(parents=True)
    np.save(tmp_path / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 1]))
    with pytest.raises(ShardsInputError, match="2 labels for 5 frames"):
        read_collection("shanghaitech", tmp_path)


def test_subway_train_and_test_parts(tmp_path):
    video = write_video(tmp_path / "subway_entrance.mp4", 50, fps=10)
    ranges = tmp_path / "entrance_ranges.txt"
    ranges.write_text("# anomalous frames\n40 45\n\n47 50  # last event\n")
    listing = read_collection("subway", video, annotations=ranges, train_minutes=0.05)
    assert [item.stem for item in listing.items] == ["subway_entrance_test", "subway_entrance_train"]
    test, train = listing.items
    assert (train.start_s, train.end_s, train.split) == (0.0, 3.0, "train")
    assert (test.start_s, test.end_s, test.split) == (3.0, None, "test")
    assert test.path == train.path == video
    expected = np.zeros(50, np.int8)
    expected[40:45] = 1
    expected[47:50] = 1
    np.testing.assert_array_equal(test.frame_labels, expected)
    assert all(item.collection == "subway" and item.fps is None for item in listing.items)


def test_subway_default_minutes_from_name(tmp_path):
    write_video(tmp_path / "videos" / "subway_exit.mp4", 20, fps=10)
    with pytest.raises(ShardsInputError, match="training part \\(5 min\\) is not shorter than the recording"):
        read_collection("subway", tmp_path / "videos")
    write_video(tmp_path / "other" / "station.mp4", 20, fps=10)
    with pytest.raises(ShardsInputError, match="cannot tell the entrance from the exit"):
        read_collection("subway", tmp_path / "other" / "station.mp4")


def test_subway_invalid_range_file(tmp_path):
    video = write_video(tmp_path / "subway_exit.mp4", 30, fps=10)
    ranges = tmp_path / "ranges.txt"
    ranges.write_text("10 12\n13\n")
    with pytest.raises(ShardsInputError, match="line 2: invalid frame range '13'"):
        read_collection("subway", video, annotations=ranges, train_minutes=0.01)
    ranges.write_text("25 31\n")
    with pytest.raises(ShardsInputError, match="invalid frame range 25-31; expected 0 <= start < stop <= 30"):
        read_collection("subway", video, annotations=ranges, train_minutes=0.01)


def test_subway_split_filter(tmp_path):
    video = write_video(tmp_path / "subway_entrance.mp4", 30, fps=10)
    listing = read_collection("subway", video, split="test", train_minutes=0.02)
    [item] = listing.items
    assert item.stem == "subway_entrance_test"
    assert item.start_s == pytest.approx(1.2)
    assert item.frame_labels is None
