"""Damaged shard members: each bad sample is skipped, counted and logged with its shard and key; the rest stream.

Readers (`iter_clips` for embedding, `stream_clips` for training) share the sample decoder, so both are
checked on the same damaged copies of a real shard set.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from pathlib import Path

import pytest

from fault_media import write_video
from shards.cli import main
from shards.read import iter_clips, list_shards
from shards.sample_errors import SampleErrorLog
from shards.stream import stream_clips


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    video = write_video(folder / "walk.mp4", seconds=6, audio_rate=16000)
    assert main(["shards", "build", str(video), "--out", str(folder / "set"), "--clips-per-shard", "3"]) == 0
    return folder / "set"


def damaged_copy(shard_set: Path, folder: Path, key: str, damage: str) -> Path:
    """Copy the set and damage one member of `key`: drop its JSON or WAV, or make its JSON invalid."""
    copy = folder / "copy"
    shutil.copytree(shard_set, copy)
    for shard in copy.glob("shard-*.tar"):
        with tarfile.open(shard) as tar:
            members = [(info, tar.extractfile(info).read()) for info in tar]
        if not any(info.name.startswith(key) for info, _ in members):
            continue
        with tarfile.open(shard, "w") as tar:
            for info, data in members:
                if info.name == f"{key}.json" and damage == "no json":
                    continue
                if info.name == f"{key}.wav" and damage == "no wav":
                    continue
                if info.name == f"{key}.json" and damage == "bad json":
                    data = b'{"key": "walk-00'
                    info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return copy


@pytest.mark.parametrize("damage", ["no json", "bad json", "no wav"])
def test_damaged_member_skips_its_clip(shard_set, tmp_path, caplog, damage):
    key = "walk-0002000"
    copy = damaged_copy(shard_set, tmp_path, key, damage)

    errors = SampleErrorLog()
    with caplog.at_level(logging.WARNING):
        keys = [clip.key for clip in iter_clips(copy, errors=errors)]
    streamed = sorted(clip.key for clip in stream_clips(list_shards(copy), seed=0, shuffle_buffer=1))

    assert len(keys) == 5
    assert key not in keys
    assert errors.count == 1
    assert streamed == sorted(keys)
    assert any(key in record.getMessage() and "shard-" in record.getMessage() for record in caplog.records)
    json.loads((copy / "index.json").read_text())
