"""The `kinetics` and `audioset` layouts: annotation CSVs matched to downloaded clip files."""

from pathlib import Path

import pytest

from shards.collections import read_collection
from shards.errors import ShardsInputError

# The readers match files by name and never open them, so placeholder bytes stand in for the clips.


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"clip")
    return path


KINETICS_CSV = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,-3B32lodo2M,59,69,train,0
air drumming,--nQbRBEz2s,104,114,train,0
air drumming,a_b-c_d_e_f,0,10,val,0
abseiling,missing0001,12,22,train,0
"""


def test_kinetics_matches_class_folders_and_flat(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text(KINETICS_CSV)
    root = tmp_path / "videos"
    first = touch(root / "train" / "abseiling" / "-3B32lodo2M_000059_000069.mp4")
    second = touch(root / "--nQbRBEz2s_000104_000114.webm")
    third = touch(root / "val" / "air_drumming" / "a_b-c_d_e_f_000000_000010.mkv")
    touch(root / "unrelated_000001_000002.mp4")

    listing = read_collection("kinetics", root, annotations=csv)
    assert [(item.path, item.label, item.split) for item in listing.items] == [
        (second, "air drumming", "train"),
        (first, "abseiling", "train"),
        (third, "air drumming", "val"),
    ]
    assert [item.stem for item in listing.items] == [
        "--nQbRBEz2s_000104_000114", "-3B32lodo2M_000059_000069", "a_b-c_d_e_f_000000_000010",
    ]
    assert all(item.collection == "kinetics" for item in listing.items)
    assert listing.missing == [{
        "entry": "abseiling,missing0001,12,22,train,0",
        "reason": f"no local file missing0001_000012_000022.* under {root}",
    }]


def test_kinetics_split_filter_limits_missing(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text(KINETICS_CSV)
    root = tmp_path / "videos"
    touch(root / "a_b-c_d_e_f_000000_000010.mp4")
    listing = read_collection("kinetics", root, annotations=csv, split="val")
    assert [item.stem for item in listing.items] == ["a_b-c_d_e_f_000000_000010"]
    assert listing.missing == []


def test_kinetics_test_csv_without_labels(tmp_path):
    csv = tmp_path / "test.csv"
    csv.write_text("youtube_id,time_start,time_end,split\nabcdefghijk,5,15,test\n")
    root = tmp_path / "videos"
    touch(root / "abcdefghijk_000005_000015.mp4")
    [item] = read_collection("kinetics", root, annotations=csv).items
    assert item.label is None
    assert item.split == "test"


def test_kinetics_csv_without_required_columns(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("label,ytid,start,end\nx,abc,1,2\n")
    with pytest.raises(ShardsInputError, match="lacks the column\\(s\\) youtube_id, time_start, time_end"):
        read_collection("kinetics", tmp_path, annotations=csv)


def test_kinetics_unreadable_csv(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ShardsInputError, match="cannot read annotation file"):
        read_collection("kinetics", tmp_path, annotations=csv)


AUDIOSET_CSV = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw"
_0B0sw8ArYk, 0.000, 10.000, "/m/09x0r"
AbsentAbsen, 5.000, 15.000, "/m/09x0r"
"""

CLASS_INDEX = """index,mid,display_name
0,/m/09x0r,"Speech"
1,/m/03v3yw,"Male speech, man speaking"
2,/t/dd00088,"Gush"
"""


def write_audioset(tmp_path: Path, csv_name: str = "balanced_train_segments.csv") -> tuple[Path, Path]:
    csv = tmp_path / "meta" / csv_name
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text(AUDIOSET_CSV)
    index = tmp_path / "meta" / "class_labels_indices.csv"
    index.write_text(CLASS_INDEX)
    return csv, index


def test_audioset_name_forms_and_labels(tmp_path):
    csv, index = write_audioset(tmp_path)
    root = tmp_path / "clips"
    milliseconds = touch(root / "--PJHxphWEs_30000_40000.mp4")
    seconds = touch(root / "a" / "-0RWZT-miFs_420.000_430.000.mkv")
    bare = touch(root / "_0B0sw8ArYk.webm")
    touch(root / "--PJHxphWEs_50000_60000.mp4")  # another segment of the same video: not in the CSV

    listing = read_collection("audioset", root, annotations=csv, class_index=index)
    by_path = {item.path: item for item in listing.items}
    assert set(by_path) == {milliseconds, seconds, bare}
    assert by_path[milliseconds].label == "Speech;Gush"
    assert by_path[seconds].label == "Male speech, man speaking"
    assert by_path[bare].label == "Speech"
    assert by_path[seconds].stem == "-0RWZT-miFs_420_000_430_000"
    assert all(item.split == "train" and item.collection == "audioset" for item in listing.items)
    [entry] = listing.missing
    assert entry["entry"] == 'AbsentAbsen, 5.000, 15.000, "/m/09x0r"'
    assert "no local file AbsentAbsen_<start>_<end>.*" in entry["reason"]


def test_audioset_integer_seconds_and_wrong_span(tmp_path):
    csv, index = write_audioset(tmp_path)
    root = tmp_path / "clips"
    whole_seconds = touch(root / "-0RWZT-miFs_420_430.mp4")
    touch(root / "--PJHxphWEs_31000_41000.mp4")  # a span the CSV does not list
    listing = read_collection("audioset", root, annotations=csv, class_index=index)
    assert [item.path for item in listing.items] == [whole_seconds]
    assert len(listing.missing) == 3


def test_audioset_class_index_next_to_csv_and_eval_split(tmp_path):
    csv, _ = write_audioset(tmp_path, "eval_segments.csv")
    touch(tmp_path / "clips" / "_0B0sw8ArYk_0_10000.mp4")
    listing = read_collection("audioset", tmp_path / "clips", annotations=csv)
    [item] = listing.items
    assert item.label == "Speech"
    assert item.split == "test"
    assert read_collection("audioset", tmp_path / "clips", annotations=csv, split="train").items == []


def test_audioset_without_class_index_keeps_ids(tmp_path):
    csv, index = write_audioset(tmp_path)
    index.unlink()
    touch(tmp_path / "clips" / "--PJHxphWEs_30000_40000.mp4")
    [item] = read_collection("audioset", tmp_path / "clips", annotations=csv).items
    assert item.label == "/m/09x0r;/t/dd00088"


def test_audioset_malformed_line(tmp_path):
    csv, index = write_audioset(tmp_path)
    csv.write_text(AUDIOSET_CSV + "oops, 1.0\n")
    with pytest.raises(ShardsInputError, match="invalid segment line 'oops, 1.0'"):
        read_collection("audioset", tmp_path, annotations=csv, class_index=index)


def test_audioset_class_index_without_columns(tmp_path):
    csv, index = write_audioset(tmp_path)
    index.write_text("a,b\n1,2\n")
    with pytest.raises(ShardsInputError, match="lacks the column\\(s\\) mid, display_name"):
        read_collection("audioset", tmp_path, annotations=csv, class_index=index)
