"""Stream clips from shards for training: split over nodes and DataLoader workers, shuffled with a seed."""

from __future__ import annotations

import webdataset as wds

from shards.read import decode_sample
from shards.sample_errors import SampleErrorLog


def stream_clips(
    urls: list[str], *, seed: int, shuffle_buffer: int = 64, resampled: bool = False
) -> wds.DataPipeline:
    """Return an iterable dataset of `Clip` objects read from the shard files `urls`.

    Without `resampled`, one pass is one epoch. Shards are shuffled with `seed` (the same order on every
    node), then split between nodes (`torch.distributed` ranks) and between DataLoader workers. Every
    clip is yielded exactly once per epoch, but a node or worker left without a shard yields nothing, so
    make shards at least as many as nodes times workers.
    Samples are shuffled in a buffer of `shuffle_buffer` clips, also seeded. The order repeats for the
    same seed, so pass a different seed per epoch (for example `base_seed + epoch`) to vary it.

    With `resampled=True`, each node and worker draws shards with replacement from its own seeded
    generator: an infinite stream for multi-node training where shards cannot be split evenly.

    Bad shards and samples are logged and counted, never fatal. Use the DataLoader with
    `batch_size=None` (or a `collate_fn` that accepts `Clip` objects), since clips are not tensors.
    """
    if not urls:
        raise ValueError("stream_clips needs at least one shard URL")
    errors = SampleErrorLog()

    if resampled:
        stages = [wds.ResampledShards(list(urls), seed=seed, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(list(urls), seed=seed), wds.split_by_node, wds.split_by_worker]

    stages.append(wds.tarfile_to_samples(handler=errors))
    if shuffle_buffer > 1:
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer, seed=seed))
    stages.append(wds.map(decode_sample, handler=errors))
    return wds.DataPipeline(*stages)
