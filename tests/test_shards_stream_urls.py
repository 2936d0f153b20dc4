"""One streaming path for local files, `pipe:` commands and http URLs, and fixed-length resampled epochs."""

import functools
import http.server
import shlex
import threading
from pathlib import Path

import pytest
import torch

from shards.build import BuildOptions, build_shards
from shards.errors import ShardsInputError
from shards.stream import epoch_share, shard_urls, stream_clips

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"
ALL_KEYS = {f"bikes-{i * 1000:07d}" for i in range(10)}


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> Path:
    """Bikes in 1 s clips: 10 clips in 4 shards."""
    out = tmp_path_factory.mktemp("urls") / "set"
    build_shards([FOOTAGE / "bikes.mp4"], out, BuildOptions(clip_seconds=1.0, clips_per_shard=3, max_side=64))
    return out


@pytest.fixture
def http_base(shard_set):
    """Serve the shard set's folder on 127.0.0.1 for the duration of one test."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shard_set))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def keys_of(urls: list[str], num_workers: int = 0) -> list[str]:
    loader = torch.utils.data.DataLoader(stream_clips(urls, seed=0), batch_size=None, num_workers=num_workers)
    return [clip.key for clip in loader]


def test_local_pipe_and_http_agree(shard_set, http_base):
    local = shard_urls(str(shard_set))
    piped = [f"pipe:cat {shlex.quote(url)}" for url in local]
    served = shard_urls(http_base)
    assert served[0] == f"{http_base.rstrip('/')}/shard-000000.tar"
    assert len(served) == len(local) == 4

    local_keys = keys_of(local)
    assert sorted(local_keys) == sorted(ALL_KEYS)
    assert keys_of(piped) == local_keys
    assert keys_of(served, num_workers=2) == keys_of(local, num_workers=2)


def test_http_clips_decode_same(shard_set, http_base):
    local = {clip.key: clip for clip in stream_clips(shard_urls(str(shard_set)), seed=1)}
    for clip in stream_clips(shard_urls(http_base), seed=1):
        assert (clip.frames == local[clip.key].frames).all()
        assert clip.meta == local[clip.key].meta


def test_http_missing_shard_set_error(http_base):
    with pytest.raises(ShardsInputError, match="index.json: cannot be read"):
        shard_urls(http_base + "nowhere")


def test_epoch_shares_add_up():
    for total in (1, 7, 100, 101):
        for world_size in (1, 3):
            for num_workers in (1, 2, 5):
                shares = [
                    epoch_share(total, rank, world_size, worker, num_workers)
                    for rank in range(world_size)
                    for worker in range(num_workers)
                ]
                assert sum(shares) == total
                assert max(shares) - min(shares) <= 1


@pytest.mark.parametrize("num_workers", [0, 2])
def test_samples_per_epoch_exact(shard_set, num_workers):
    dataset = stream_clips(shard_urls(str(shard_set)), seed=0, resampled=True, samples_per_epoch=13)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    for _ in range(2):
        keys = [clip.key for clip in loader]
        assert len(keys) == 13
        assert set(keys) <= ALL_KEYS


def test_samples_per_epoch_splits_nodes(shard_set, monkeypatch):
    counts = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        dataset = stream_clips(shard_urls(str(shard_set)), seed=rank, resampled=True, samples_per_epoch=10)
        counts.append(len(list(dataset)))
    assert counts == [4, 3, 3]


def test_samples_per_epoch_needs_resampled(shard_set):
    with pytest.raises(ValueError, match="needs resampled=True"):
        stream_clips(shard_urls(str(shard_set)), seed=0, samples_per_epoch=5)
