"""Stream clips from shards for training: split over nodes and DataLoader workers, shuffled with a seed.

A shard is named by a URL, and every kind goes through the same pipeline. WebDataset opens each one with
`gopen`: a local path (`/data/set/shard-000000.tar`), a shell command whose standard output is
the tar (`pipe:aws s3 cp s3://bucket/shard-000000.tar -`), or an http(s) URL (fetched with `curl`,
which must be installed). `shard_urls` lists the shards of a local shard set or of one served over http.
"""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Iterator

import webdataset as wds

from shards.errors import ShardsInputError
from shards.read import decode_sample, list_shards, read_index_data
from shards.sample_errors import SampleErrorLog


def shard_urls(location: str) -> list[str]:
    """Return the shard URLs of the shard set at `location`: a local folder or an http(s) base URL.

    For a URL, `LOCATION/index.json` is fetched and each shard name is appended to `LOCATION/`.
    """
    if not location.startswith(("http://", "https://")):
        return list_shards(location)

    base = location.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/index.json", timeout=60) as response:
            index = read_index_data(json.loads(response.read()), f"{base}/index.json")
    except (OSError, ValueError) as error:
        raise ShardsInputError(f"{base}/index.json: cannot be read ({error})") from error
    return [f"{base}/{shard['name']}" for shard in index["shards"]]


def epoch_share(samples_per_epoch: int, rank: int, world_size: int, worker: int, num_workers: int) -> int:
    """Return how many of `samples_per_epoch` clips one DataLoader worker of one node yields.

    The epoch is split as evenly as possible over `world_size * num_workers` readers, and the first
    `samples_per_epoch % readers` of them yield one clip more, so the shares add up exactly.
    """
    readers = world_size * num_workers
    reader = rank * num_workers + worker
    return samples_per_epoch // readers + (1 if reader < samples_per_epoch % readers else 0)


def _take_epoch_share(samples_per_epoch: int):
    """Return a pipeline stage that stops after this reader's share of `samples_per_epoch` clips."""

    def take(source: Iterator) -> Iterator:
        share = epoch_share(samples_per_epoch, *wds.utils.pytorch_worker_info())
        yield from itertools.islice(source, share)

    return take


def stream_clips(
    urls: list[str],
    *,
    seed: int,
    shuffle_buffer: int = 64,
    resampled: bool = False,
    samples_per_epoch: int | None = None,
) -> wds.DataPipeline:
    """Return an iterable dataset of `Clip` objects read from the shard files `urls`.

    Without `resampled`, one pass is one epoch. Shards are shuffled with `seed` (the same order on every
    node), then split between nodes (`torch.distributed` ranks, or the RANK and WORLD_SIZE variables) and
    between DataLoader workers. Every clip is yielded exactly once per epoch, but a node or worker left
    without a shard yields nothing, so make shards at least as many as nodes times workers.
    Samples are shuffled in a buffer of `shuffle_buffer` clips, also seeded. The order repeats for the
    same seed, so pass a different seed per epoch (for example `base_seed + epoch`) to vary it.

    With `resampled=True`, each node and worker draws shards with replacement from its own seeded
    generator: an infinite stream for multi-node training where shards cannot be split evenly. Set
    `samples_per_epoch` to end each pass after that many clips in total over all nodes and workers (each
    yields its share, see `epoch_share`), so an epoch has the same length whatever the number of nodes.
    Clips are drawn with replacement, so an epoch may repeat some clips and miss others.

    Bad shards and samples are logged and counted, never fatal. Use the DataLoader with
    `batch_size=None` (or a `collate_fn` that accepts `Clip` objects), since clips are not tensors.
    """
    if not urls:
        raise ValueError("stream_clips needs at least one shard URL")
    if samples_per_epoch is not None and not resampled:
        raise ValueError("samples_per_epoch needs resampled=True; without it an epoch is one pass over the shards")
    if samples_per_epoch is not None and samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be at least 1, got {samples_per_epoch}")
    errors = SampleErrorLog()

    if resampled:
        stages = [wds.ResampledShards(list(urls), seed=seed, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(list(urls), seed=seed), wds.split_by_node, wds.split_by_worker]

    stages.append(wds.tarfile_to_samples(handler=errors))
    if shuffle_buffer > 1:
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer, seed=seed))
    stages.append(wds.map(decode_sample, handler=errors))
    if samples_per_epoch is not None:
        stages.append(_take_epoch_share(samples_per_epoch))
    return wds.DataPipeline(*stages)
