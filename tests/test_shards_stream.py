"""Streaming clips for training: DataLoader workers, seeded shuffling, resampling, and bad shards."""

from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
import torch

from shards.build import BuildOptions, build_shards
from shards.read import Clip, list_shards
from shards.stream import stream_clips

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"


@pytest.fixture(scope="module")
def shard_urls(tmp_path_factory) -> list[str]:
    """Bikes in 0.5 s clips: 20 clips in 5 shards of 4."""
    out = tmp_path_factory.mktemp("stream") / "set"
    build_shards([FOOTAGE / "bikes.mp4"], out, BuildOptions(clip_seconds=0.5, clips_per_shard=4, max_side=64))
    return list_shards(out)


ALL_KEYS = {f"bikes-{i * 500:07d}" for i in range(20)}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_each_clip_once(shard_urls, num_workers):
    loader = torch.utils.data.DataLoader(
        stream_clips(shard_urls, seed=0, shuffle_buffer=8), batch_size=None, num_workers=num_workers
    )
    clips = list(loader)
    assert all(isinstance(clip, Clip) for clip in clips)
    counts = Counter(clip.key for clip in clips)
    assert set(counts) == ALL_KEYS
    assert set(counts.values()) == {1}


def test_second_epoch_yields_all_again(shard_urls):
    loader = torch.utils.data.DataLoader(stream_clips(shard_urls, seed=0), batch_size=None, num_workers=2)
    for _ in range(2):
        assert sorted(clip.key for clip in loader) == sorted(ALL_KEYS)


def test_seed_fixes_order(shard_urls):
    first = [clip.key for clip in stream_clips(shard_urls, seed=3)]
    again = [clip.key for clip in stream_clips(shard_urls, seed=3)]
    other = [clip.key for clip in stream_clips(shard_urls, seed=4)]
    assert first == again
    assert first != other
    assert first != sorted(first)


def test_resampled_is_endless(shard_urls):
    clips = list(islice(iter(stream_clips(shard_urls, seed=0, resampled=True)), 60))
    assert len(clips) == 60
    assert {clip.key for clip in clips} <= ALL_KEYS


def test_truncated_shard_not_fatal(shard_urls, tmp_path):
    broken = tmp_path / "broken.tar"
    data = Path(shard_urls[0]).read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    urls = [str(broken), *shard_urls[1:]]
    loader = torch.utils.data.DataLoader(stream_clips(urls, seed=0), batch_size=None, num_workers=2)
    keys = [clip.key for clip in loader]
    assert {f"bikes-{i * 500:07d}" for i in range(4, 20)} <= set(keys)
    assert len(keys) == len(set(keys))


def test_empty_url_list_rejected():
    with pytest.raises(ValueError, match="at least one shard"):
        stream_clips([], seed=0)
