"""`read_collection`: option checks, the `folder` and `manifest` layouts, sorting and unique stems."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from shards.collections import LAYOUTS, Listing, read_collection
from shards.errors import ShardsInputError


def write_video(path: Path, num_frames: int = 12, fps: int = 10) -> Path:
    """Encode a tiny MPEG-4 video of `num_frames` grey frames that brighten one step per frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for index in range(num_frames):
            pixels = np.full((24, 32, 3), 10 + 15 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_layouts_are_the_registry():
    assert LAYOUTS == (
        "folder", "kinetics", "audioset", "ucsd", "avenue", "shanghaitech", "subway", "manifest",
    )


def test_unknown_layout(tmp_path):
    expected = "unknown collection layout 'kinetic'; expected one of: folder"
    with pytest.raises(ShardsInputError, match=expected):
        read_collection("kinetic", tmp_path)


def test_missing_root(tmp_path):
    with pytest.raises(ShardsInputError, match="no such file or directory"):
        read_collection("folder", tmp_path / "absent")


def test_invalid_split(tmp_path):
    with pytest.raises(ShardsInputError, match="invalid split 'training'"):
        read_collection("folder", tmp_path, split="training")


def test_options_the_layout_does_not_take(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text("x\n")
    with pytest.raises(ShardsInputError, match="reads no annotation file"):
        read_collection("ucsd", tmp_path, annotations=csv)
    with pytest.raises(ShardsInputError, match="only by the audioset layout"):
        read_collection("kinetics", tmp_path, annotations=csv, class_index=csv)
    with pytest.raises(ShardsInputError, match="only to the subway layout"):
        read_collection("folder", tmp_path, train_minutes=3)
    with pytest.raises(ShardsInputError, match="needs its annotation CSV"):
        read_collection("kinetics", tmp_path)
    with pytest.raises(ShardsInputError, match="annotation file not found"):
        read_collection("kinetics", tmp_path, annotations=tmp_path / "absent.csv")


def test_folder_class_folders_give_labels(tmp_path):
    for name in ["abseiling/b1.mp4", "abseiling/a1.mp4", "air drumming/c 1.mkv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "abseiling" / "notes.txt").write_text("not a video")

    listing = read_collection("folder", tmp_path)
    assert isinstance(listing, Listing)
    assert [item.stem for item in listing.items] == ["a1", "b1", "c_1"]
    assert [item.label for item in listing.items] == ["abseiling", "abseiling", "air drumming"]
    assert all(item.split is None and item.frame_labels is None for item in listing.items)
    assert all(item.collection == "folder" and not item.is_frame_folder for item in listing.items)
    assert listing.missing == []


def test_folder_split_folders(tmp_path):
    for name in ["train/yoga/t.mp4", "val/yoga/v.mp4", "test/u.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = read_collection("folder", tmp_path)
    assert [(item.stem, item.split, item.label) for item in listing.items] == [
        ("t", "train", "yoga"), ("u", "test", None), ("v", "val", "yoga"),
    ]
    only_val = read_collection("folder", tmp_path, split="val")
    assert [item.stem for item in only_val.items] == ["v"]


def test_folder_sidecar_frame_labels(tmp_path):
    video = write_video(tmp_path / "walkway.mp4", num_frames=12)
    sidecar = {"num_frames": 12, "anomalous_frames": [[3, 6]]}
    (tmp_path / "walkway.labels.json").write_text(json.dumps(sidecar))
    [item] = read_collection("folder", tmp_path).items
    assert item.path == video
    assert item.label is None
    assert item.frame_labels.dtype == np.int8
    np.testing.assert_array_equal(item.frame_labels, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_folder_sidecar_wrong_frame_count(tmp_path):
    write_video(tmp_path / "walkway.mp4", num_frames=12)
    (tmp_path / "walkway.labels.json").write_text(json.dumps({"num_frames": 99, "anomalous_frames": []}))
    with pytest.raises(ShardsInputError, match="num_frames is 99 but the video has 12 frames"):
        read_collection("folder", tmp_path)


def test_folder_unreadable_labelled_video_is_missing(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "broken.labels.json").write_text(json.dumps({"num_frames": 3, "anomalous_frames": []}))
    listing = read_collection("folder", tmp_path)
    assert listing.items == []
    [entry] = listing.missing
    assert entry["entry"] == str(tmp_path / "broken.mp4")
    assert "not a readable video" in entry["reason"]


def test_stem_clash_is_input_error(tmp_path):
    for name in ["a/clip.mp4", "b/clip.avi"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ShardsInputError, match="give the same clip keys \\('clip-...'\\)"):
        read_collection("folder", tmp_path)


def write_manifest(folder: Path, rows: list[str], header: str = "path,split,anomalous_frames,label") -> Path:
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    return manifest


def test_manifest_items_and_frame_labels(tmp_path):
    write_video(tmp_path / "normal" / "day1.mp4", num_frames=10)
    write_video(tmp_path / "test" / "day2.mp4", num_frames=10)
    write_video(tmp_path / "test" / "speaker.mp4", num_frames=8)
    write_manifest(tmp_path, [
        "normal/day1.mp4,train,,",
        "test/day2.mp4,test,2-4;7-10,",
        "test/speaker.mp4,test,,interview",
        "test/absent.mp4,test,1-2,",
    ])

    listing = read_collection("manifest", tmp_path)
    by_stem = {item.stem: item for item in listing.items}
    assert sorted(by_stem) == ["day1", "day2", "speaker"]
    assert by_stem["day1"].split == "train"
    assert by_stem["day1"].frame_labels is None
    np.testing.assert_array_equal(by_stem["day2"].frame_labels, [0, 0, 1, 1, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(by_stem["speaker"].frame_labels, np.zeros(8))
    assert by_stem["speaker"].label == "interview"
    assert by_stem["day2"].path == tmp_path / "test" / "day2.mp4"
    assert listing.missing == [
        {"entry": "test/absent.mp4,test,1-2,", "reason": f"no such file {tmp_path / 'test' / 'absent.mp4'}"}
    ]

    from_file = read_collection("manifest", tmp_path / "manifest.csv", split="train")
    assert [item.stem for item in from_file.items] == ["day1"]
    assert from_file.missing == []


def test_manifest_without_label_column(tmp_path):
    write_video(tmp_path / "clip.mp4", num_frames=5)
    manifest = write_manifest(tmp_path, ["clip.mp4,val,0-1"], header="path,split,anomalous_frames")
    [item] = read_collection("manifest", tmp_path, annotations=manifest).items
    assert item.label is None
    assert item.split == "val"
    np.testing.assert_array_equal(item.frame_labels, [1, 0, 0, 0, 0])


def test_manifest_range_past_the_end(tmp_path):
    write_video(tmp_path / "clip.mp4", num_frames=5)
    write_manifest(tmp_path, ["clip.mp4,test,3-9,"])
    expected = "line 2: invalid frame range 3-9; expected 0 <= start < stop <= 5"
    with pytest.raises(ShardsInputError, match=expected):
        read_collection("manifest", tmp_path)


def test_manifest_malformed_range_and_split(tmp_path):
    write_video(tmp_path / "clip.mp4", num_frames=5)
    write_manifest(tmp_path, ["clip.mp4,test,3..4,"])
    with pytest.raises(ShardsInputError, match="invalid frame range '3..4'"):
        read_collection("manifest", tmp_path)
    write_manifest(tmp_path, ["clip.mp4,holdout,,"])
    with pytest.raises(ShardsInputError, match="invalid split 'holdout'"):
        read_collection("manifest", tmp_path)


def test_manifest_missing_columns_and_file(tmp_path):
    write_manifest(tmp_path, ["clip.mp4,test"], header="path,split")
    with pytest.raises(ShardsInputError, match="lacks the column\\(s\\) anomalous_frames"):
        read_collection("manifest", tmp_path)
    (tmp_path / "manifest.csv").unlink()
    with pytest.raises(ShardsInputError, match="no manifest.csv here"):
        read_collection("manifest", tmp_path)
