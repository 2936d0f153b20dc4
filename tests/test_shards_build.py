"""`latentwatch shards build` on real footage: the shard-set format, labels, audio, and input errors."""

import io
import json
import shutil
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.build import BuildOptions, build_shards, find_videos
from shards.errors import ShardsInputError

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"
LATENTWATCH = Path(sys.executable).parent / "latentwatch"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LATENTWATCH), *args], capture_output=True, text=True, timeout=120)


def tar_members(shard_dir: Path) -> dict[str, bytes]:
    """Return every member of every shard, in stored order."""
    members = {}
    for shard in sorted(shard_dir.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for info in tar:
                members[info.name] = tar.extractfile(info).read()
    return members


def test_vtest_through_cli(tmp_path):
    out = tmp_path / "vtest-shards"
    result = run_cli(
        "shards", "build", str(FOOTAGE / "vtest.avi"), "--out", str(out),
        "--clip-seconds", "5", "--clips-per-shard", "6",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 15 clips (75 s) in 3 shard(s)" in result.stdout

    index = json.loads((out / "index.json").read_text())
    assert index["format_version"] == 1
    assert index["num_clips"] == 15
    assert index["total_seconds"] == 75.0
    assert index["clip_seconds"] == 5.0
    assert index["stride_seconds"] == 5.0
    assert index["sample_rate"] == 16000
    expected_shards = [{"name": f"shard-00000{i}.tar", "num_clips": n} for i, n in enumerate([6, 6, 3])]
    assert index["shards"] == expected_shards
    assert index["skipped"] == []
    [source] = index["sources"]
    assert source["path"] == str(FOOTAGE / "vtest.avi")
    assert source["num_clips"] == 15
    assert source["has_audio"] is False
    assert source["fps"] == pytest.approx(10.0)

    members = tar_members(out)
    keys = [name[: -len(".json")] for name in members if name.endswith(".json")]
    assert keys == [f"vtest-{5000 * i:07d}" for i in range(15)]
    assert not any(name.endswith(".wav") for name in members)

    meta = json.loads(members["vtest-0010000.json"])
    assert meta["start_s"] == 10.0
    assert meta["end_s"] == 15.0
    assert meta["frame_indices"] == list(range(100, 150))
    assert meta["source_name"] == "vtest.avi"
    assert meta["frame_labels"] is None
    assert meta["has_audio"] is False
    assert meta["audio_missing_reason"] == "no audio stream"
    with Image.open(io.BytesIO(members["vtest-0010000.049.jpg"])) as image:
        assert image.format == "JPEG"
        assert image.size == (160, 120)
    assert "vtest-0010000.050.jpg" not in members


def test_overlapping_stride_and_max_side(tmp_path):
    out = tmp_path / "bikes"
    options = BuildOptions(clip_seconds=2.0, stride_seconds=0.5, max_side=96)
    summary = build_shards([FOOTAGE / "bikes.mp4"], out, options)
    assert summary.num_clips == 17  # starts 0, 0.5, ..., 8.0 in a 10 s video

    members = tar_members(out)
    first = json.loads(members["bikes-0000500.json"])
    assert first["frame_indices"] == list(range(13, 63))  # frame 13 starts at 0.52 s
    with Image.open(io.BytesIO(members["bikes-0000500.000.jpg"])) as image:
        assert image.size == (96, 41)


def test_megamind_audio_in_clips(tmp_path):
    out = tmp_path / "megamind"
    build_shards([FOOTAGE / "Megamind.avi"], out, BuildOptions(clip_seconds=2.0))
    members = tar_members(out)
    wavs = [name for name in members if name.endswith(".wav")]
    assert len(wavs) == 5

    total = 0
    for name in wavs:
        with wave.open(io.BytesIO(members[name])) as reader:
            assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
            assert reader.getnframes() == 32000
            total += reader.getnframes()
    assert total == 160000

    index = json.loads((out / "index.json").read_text())
    assert index["sources"][0]["skipped_audio_packets"] == 1
    assert index["sources"][0]["has_audio"] is True


def test_bigbuckbunny_audio_length_exact(tmp_path):
    out = tmp_path / "bbb"
    build_shards([FOOTAGE / "bigbuckbunny.mp4"], out, BuildOptions(clip_seconds=0.7, stride_seconds=0.45))
    members = tar_members(out)
    lengths = []
    for name, data in members.items():
        if name.endswith(".wav"):
            with wave.open(io.BytesIO(data)) as reader:
                lengths.append(reader.getnframes())
    assert len(lengths) == 11
    assert set(lengths) == {11200}


def test_labels_sidecar_maps_frames(tmp_path):
    shutil.copy(FOOTAGE / "bikes.mp4", tmp_path / "bikes.mp4")
    sidecar = {"num_frames": 250, "anomalous_frames": [[40, 65], [100, 140]]}
    (tmp_path / "bikes.labels.json").write_text(json.dumps(sidecar))

    out = tmp_path / "out"
    build_shards([tmp_path], out, BuildOptions(clip_seconds=1.0))
    members = tar_members(out)

    expected = np.zeros(250, dtype=int)
    expected[40:65] = 1
    expected[100:140] = 1
    for name, data in members.items():
        if name.endswith(".json"):
            meta = json.loads(data)
            assert meta["frame_labels"] == expected[meta["frame_indices"]].tolist()
    clip_two = json.loads(members["bikes-0002000.json"])
    assert clip_two["frame_labels"] == [1] * 15 + [0] * 10


def test_labels_sidecar_wrong_frame_count(tmp_path):
    shutil.copy(FOOTAGE / "bikes.mp4", tmp_path / "bikes.mp4")
    (tmp_path / "bikes.labels.json").write_text(json.dumps({"num_frames": 188, "anomalous_frames": []}))
    with pytest.raises(ShardsInputError, match="num_frames is 188 but the video has 250 frames"):
        build_shards([tmp_path / "bikes.mp4"], tmp_path / "out", BuildOptions())
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bikes.labels.json", "bikes.mp4"]


def test_directory_scan_skips_and_lists(tmp_path):
    videos = tmp_path / "videos"
    (videos / "nested").mkdir(parents=True)
    shutil.copy(FOOTAGE / "bikes.mp4", videos / "nested" / "bikes.mp4")
    (videos / "broken.avi").write_bytes(b"\x00" * 1000)
    (videos / "notes.txt").write_text("not a video")

    assert [p.name for p in find_videos([videos])] == ["broken.avi", "bikes.mp4"]
    summary = build_shards([videos], tmp_path / "out", BuildOptions(clip_seconds=4.0))
    assert summary.num_clips == 2
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    [skipped] = index["skipped"]
    assert skipped["path"].endswith("broken.avi")
    assert "not a readable video" in skipped["reason"]


def test_short_input_skipped_with_reason(tmp_path):
    summary = build_shards(
        [FOOTAGE / "bigbuckbunny.mp4", FOOTAGE / "bikes.mp4"],
        tmp_path / "out",
        BuildOptions(clip_seconds=6.0),
    )
    assert summary.num_clips == 1
    assert "shorter than one clip" in summary.skipped[0]["reason"]


def test_duplicate_stems_rejected(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(FOOTAGE / "bikes.mp4", tmp_path / "a" / "bikes.mp4")
    shutil.copy(FOOTAGE / "bikes.mp4", tmp_path / "b" / "bikes.avi")
    with pytest.raises(ShardsInputError, match="give the same clip keys"):
        build_shards([tmp_path], tmp_path / "out")


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    build_shards([FOOTAGE / "bikes.mp4"], out, BuildOptions(clip_seconds=5.0))
    with pytest.raises(ShardsInputError, match="already exists; pass --overwrite"):
        build_shards([FOOTAGE / "bikes.mp4"], out, BuildOptions(clip_seconds=2.0))

    summary = build_shards([FOOTAGE / "bikes.mp4"], out, BuildOptions(clip_seconds=2.0, overwrite=True))
    assert summary.num_clips == 5
    assert json.loads((out / "index.json").read_text())["num_clips"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_refuses_other_folders(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    with pytest.raises(ShardsInputError, match="is not a shard set"):
        build_shards([FOOTAGE / "bikes.mp4"], precious, BuildOptions(overwrite=True))
    assert (precious / "thesis.txt").read_text() == "keep me"


def test_identical_builds_identical_bytes(tmp_path):
    build_shards([FOOTAGE / "bikes.mp4"], tmp_path / "one", BuildOptions(clip_seconds=5.0))
    build_shards([FOOTAGE / "bikes.mp4"], tmp_path / "two", BuildOptions(clip_seconds=5.0))
    one = (tmp_path / "one" / "shard-000000.tar").read_bytes()
    assert one == (tmp_path / "two" / "shard-000000.tar").read_bytes()


def test_cli_random_bytes_one_line_error(tmp_path):
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    result = run_cli("shards", "build", str(noise), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("latentwatch: error:")]
    assert len(error_lines) == 1
    assert "no input gave a clip" in error_lines[0]
    assert "noise.mp4: not a readable video" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.mp4"]


def test_cli_missing_path_one_line_error(tmp_path):
    missing = tmp_path / "nowhere.mp4"
    result = run_cli("shards", "build", str(missing), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"latentwatch: error: {missing}: no such file or directory"


def test_cli_invalid_option_one_line_error(tmp_path):
    video = str(FOOTAGE / "bikes.mp4")
    result = run_cli("shards", "build", video, "--out", str(tmp_path / "o"), "--clip-seconds", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "latentwatch: error: --clip-seconds must be positive, got 0.0"
