"""Reading shard sets in stored order: index checks, clip decoding, and bad data counted instead of fatal."""

import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.build import BuildOptions, build_shards
from shards.errors import ShardsInputError
from shards.read import Clip, SampleError, decode_sample, iter_clips, list_shards, read_index
from shards.sample_errors import SampleErrorLog

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> Path:
    """Bikes (no audio, 10 clips) then Big Buck Bunny (audio, 5 clips): 1 s clips, 5 per shard."""
    out = tmp_path_factory.mktemp("read") / "set"
    build_shards(
        [FOOTAGE / "bikes.mp4", FOOTAGE / "bigbuckbunny.mp4"],
        out,
        BuildOptions(clip_seconds=1.0, clips_per_shard=5),
    )
    return out


def copy_set(shard_set: Path, destination: Path) -> Path:
    destination.mkdir()
    for path in shard_set.iterdir():
        (destination / path.name).write_bytes(path.read_bytes())
    return destination


def test_iter_clips_stored_order(shard_set):
    clips = list(iter_clips(shard_set))
    # Files named on the command line keep their order.
    assert [clip.key for clip in clips] == [f"bikes-{i * 1000:07d}" for i in range(10)] + [
        f"bigbuckbunny-{i * 1000:07d}" for i in range(5)
    ]
    assert all(isinstance(clip, Clip) for clip in clips)


def test_clip_contents(shard_set):
    clips = {clip.key: clip for clip in iter_clips(shard_set)}
    bunny = clips["bigbuckbunny-0002000"]
    assert bunny.frames.shape == (25, 90, 160, 3)
    assert bunny.frames.dtype == np.uint8
    assert bunny.audio.shape == (16000,)
    assert bunny.audio.dtype == np.float32
    assert np.abs(bunny.audio).max() > 0.01
    assert bunny.meta["frame_indices"] == list(range(50, 75))

    bikes = clips["bikes-0009000"]
    assert bikes.audio is None
    assert bikes.frames.shape == (25, 68, 160, 3)
    assert bikes.meta["has_audio"] is False


def test_read_index_and_list_shards(shard_set):
    index = read_index(shard_set)
    assert index["num_clips"] == 15
    assert list_shards(shard_set) == [str(shard_set / f"shard-00000{i}.tar") for i in range(3)]


def test_read_index_version_mismatch(shard_set, tmp_path):
    copy = copy_set(shard_set, tmp_path / "copy")
    index = json.loads((copy / "index.json").read_text())
    index["format_version"] = 2
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardsInputError, match="format_version is 2 but this version of latentwatch reads 1"):
        read_index(copy)


def test_read_index_not_a_shard_set(tmp_path):
    with pytest.raises(ShardsInputError, match="not a shard set"):
        read_index(tmp_path)


def test_list_shards_missing_file(shard_set, tmp_path):
    copy = copy_set(shard_set, tmp_path / "copy")
    (copy / "shard-000001.tar").unlink()
    with pytest.raises(ShardsInputError, match="missing"):
        list_shards(copy)


def test_truncated_tar_counted_not_fatal(shard_set, tmp_path, caplog):
    copy = copy_set(shard_set, tmp_path / "copy")
    first = copy / "shard-000000.tar"
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])

    errors = SampleErrorLog()
    with caplog.at_level(logging.WARNING):
        keys = [clip.key for clip in iter_clips(copy, errors=errors)]

    # The second and third shards are whole; the first loses its second half.
    assert keys[-10:] == [f"bikes-{i * 1000:07d}" for i in range(5, 10)] + [
        f"bigbuckbunny-{i * 1000:07d}" for i in range(5)
    ]
    assert 10 < len(keys) < 15
    assert errors.count >= 1
    assert any("shard-000000.tar" in record.getMessage() for record in caplog.records)
    assert any(f"read {len(keys)} of 15 clips" in record.getMessage() for record in caplog.records)


def test_bad_member_names_shard_and_key(shard_set, tmp_path, caplog):
    copy = copy_set(shard_set, tmp_path / "copy")
    shard = copy / "shard-000001.tar"
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(shard, "w") as tar:
        for info, data in members:
            if info.name == "bikes-0006000.003.jpg":
                data = b"not a jpeg"
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    errors = SampleErrorLog()
    with caplog.at_level(logging.WARNING):
        keys = [clip.key for clip in iter_clips(copy, errors=errors)]
    assert len(keys) == 14
    assert "bikes-0006000" not in keys
    assert errors.count == 1
    message = next(r.getMessage() for r in caplog.records if "bikes-0006000" in r.getMessage())
    assert "shard-000001.tar" in message


def test_decode_sample_missing_wav():
    meta = {
        "format_version": 1, "key": "k-0000000", "frame_indices": [0], "has_audio": True, "sample_rate": 16000
    }
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    sample = {
        "__key__": "k-0000000",
        "__url__": "s.tar",
        "json": json.dumps(meta).encode(),
        "000.jpg": jpeg.getvalue(),
    }
    with pytest.raises(SampleError, match="s.tar k-0000000: .wav member missing"):
        decode_sample(sample)

    meta["has_audio"] = False
    sample["json"] = json.dumps(meta).encode()
    clip = decode_sample(sample)
    assert clip.frames.shape == (1, 8, 8, 3)
    assert clip.audio is None


def test_decode_sample_frame_count_mismatch():
    meta = {"format_version": 1, "key": "k-0000000", "frame_indices": [0, 1], "has_audio": False}
    sample = {"__key__": "k-0000000", "__url__": "s.tar", "json": json.dumps(meta).encode()}
    with pytest.raises(SampleError, match="0 frame\\(s\\) stored but the metadata lists 2"):
        decode_sample(sample)
