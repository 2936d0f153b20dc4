"""Benchmark pretraining on the real footage in tools/footage: trainer overhead, kNN probe gains, sync accuracy.

Each video is split in time: clips of its first 60% train the encoders and form the kNN probe's labelled
bank, and clips of its last 40% are the held-out queries, so no held-out clip overlaps a training clip.
Measured:
  (a) samples per second of the trainer (`pretrain.train.train`, from log.jsonl) and of a bare loop on the
      same model, config and loader. The bare loop runs forward, backward, optimiser step and EMA update,
      without logging or checkpoints. The two run in turn, bare then trainer, for `--rounds` rounds, and the
      overhead is 1 - the median of the per-round ratios trainer / bare, so a machine whose speed drifts
      between rounds still gives a fair comparison;
  (b) per method, the kNN probe's top-1 accuracy at telling which source recording a held-out clip comes
      from, for the pretrained encoder and the same network at initialisation (`checkpoints/init.pt`);
      BYOL and DINO use video only (three of the five videos are silent), the audio-shift model the two
      videos with audio;
  (c) the audio-shift model's sync accuracy on held-out clips: each clip with its own audio and with a
      shifted stretch of the same source (0.5-2.5 s), right when the energy is below 0 for in-sync audio and
      above 0 for shifted audio, and the pairwise rate of energy(in sync) < energy(shifted).

All configs are tiny, sized for a 2-core CPU (see `method_config`). `--quick` shrinks everything for a test.
Usage: python tools/bench_pretrain.py [--quick] [--out DIR] [--rounds N] [--overhead-only]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import torch
import webdataset as wds

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pretrain.config import PretrainConfig, config_from_dict  # noqa: E402
from pretrain.data import build_train_loader, check_shards  # noqa: E402
from pretrain.ema import EMA, cosine_momentum  # noqa: E402
from pretrain.embed import ClipEmbedder, embed_shards, load_method  # noqa: E402
from pretrain.knn_probe import clip_probe_label, knn_top1  # noqa: E402
from pretrain.methods import build_method  # noqa: E402
from pretrain.seeding import seed_everything  # noqa: E402
from pretrain.shifted_audio import ShiftedAudioPairer  # noqa: E402
from pretrain.train import build_optimizer, train  # noqa: E402
from shards.audio import LogMel  # noqa: E402
from shards.build import build_shards  # noqa: E402
from shards.build_options import BuildOptions  # noqa: E402
from shards.read import iter_clips, read_index  # noqa: E402

logger = logging.getLogger("bench_pretrain")

FOOTAGE = REPO / "tools" / "footage"
VIDEOS = ("vtest.avi", "bikes.mp4", "Megamind.avi", "bigbuckbunny.mp4", "carphone_pristine.mp4")
TRAIN_FRACTION = 0.6
METHODS = ("byol", "dino", "audio_shift")


def video_duration(path: Path) -> float:
    """Return the duration of a video's first video stream in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration) / av.time_base


def build_split_shards(out: Path, clip_stride: float) -> tuple[Path, Path]:
    """Build a shard set of all videos, then copy it into a training set (first 60% of each video in time)
    and a held-out set (clips starting at or after the split point, so none overlaps a training clip)."""
    # Many clips per shard, so the audio-shift model finds neighbours for its shifted audio.
    options = BuildOptions(clip_seconds=1.0, stride_seconds=clip_stride, max_side=64, clips_per_shard=64, workers=1)
    build_shards([FOOTAGE / name for name in VIDEOS], out / "all", options)
    splits = {name: round(video_duration(FOOTAGE / name) * TRAIN_FRACTION, 3) for name in VIDEOS}
    copy_clips(out / "all", out / "train", lambda meta: meta["end_s"] <= splits[meta["source_name"]])
    copy_clips(out / "all", out / "heldout", lambda meta: meta["start_s"] >= splits[meta["source_name"]])
    return out / "train", out / "heldout"


def copy_clips(source: Path, out: Path, keep: Callable[[dict], bool]) -> None:
    """Copy the samples of `source` whose metadata `keep` accepts into a new shard set, one shard per source shard.

    The index is the source's with its shard list and clip counts recomputed, which is what training reads.
    """
    index = read_index(source)
    out.mkdir(parents=True)
    shards, counts = [], {}
    for shard in index["shards"]:
        kept = 0
        with wds.TarWriter(str(out / shard["name"])) as writer:
            for sample in wds.WebDataset(str(source / shard["name"]), shardshuffle=False):
                meta = json.loads(sample["json"])
                if keep(meta):
                    writer.write(sample)
                    kept += 1
                    counts[meta["source_name"]] = counts.get(meta["source_name"], 0) + 1
        shards.append({**shard, "num_clips": kept})
    sources = [{**entry, "num_clips": counts.get(Path(entry["path"]).name, 0)} for entry in index["sources"]]
    copied = {**index, "shards": shards, "sources": sources, "num_clips": sum(counts.values())}
    (out / "index.json").write_text(json.dumps(copied, indent=2))


def method_config(method: str, shards: Path, run: Path, steps: int, quick: bool) -> PretrainConfig:
    """Return the tiny config of one method: narrow 3D ResNet of width 8, 48-pixel crops, 4 frames, batch 8."""
    modality = "audio_video" if method == "audio_shift" else "video"
    raw = {
        "data": {"shards": str(shards), "modality": modality, "num_frames": 4, "crop_size": 48,
                 "crop_scale": [0.4, 1.0], "num_workers": 1, "shuffle_buffer": 32, "n_mels": 32},
        "model": {"video_width": 8, "audio_width": 8, "fusion_hidden_dim": 64, "joint_dim": 32},
        "method": {"name": method, "projector_hidden_dim": 128, "projector_dim": 32, "predictor_hidden_dim": 128,
                   "head_hidden_dim": 128, "head_bottleneck_dim": 32, "head_out_dim": 256,
                   "teacher_temp_warmup_steps": max(steps // 5, 1)},
        "optim": {"lr": 0.002, "warmup_steps": max(steps // 10, 1), "total_steps": steps, "batch_size": 4 if quick else 8,
                  "weight_decay": 0.04 if method == "dino" else 0.0001},
        "run": {"out_dir": str(run), "seed": 0, "log_every": 5, "checkpoint_every": steps, "wandb_mode": "disabled"},
    }
    if method == "dino":
        raw["data"].update({"local_views": 2, "local_crop_size": 24, "local_crop_scale": [0.1, 0.4]})
    return config_from_dict(PretrainConfig, raw)


def bare_samples_per_s(config: PretrainConfig, skip_steps: int) -> float:
    """Run the same optimiser steps as the trainer with nothing else, and return samples per second."""
    seed_everything(config.run.seed)
    method = build_method(config)
    optimizer = build_optimizer(method, config)
    loader = build_train_loader(
        check_shards(config.data, config.method), config.data, batch_size=config.optim.batch_size,
        seed=config.run.seed, rank=0, pin_memory=False, method=config.method,
    )
    ema = EMA()
    method.train()
    batches = iter(loader)
    start = 0.0
    for step in range(config.optim.total_steps):
        if step == skip_steps:
            start = time.perf_counter()
        batch = next(batches)
        inputs = {name: value for name, value in batch.items() if isinstance(value, torch.Tensor)}
        loss, _ = method(inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(method.parameters(), config.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if method.uses_target_network:
            ema.update(method.online, method.target, cosine_momentum(step, config.optim.total_steps, 0.99))
    elapsed = time.perf_counter() - start
    return (config.optim.total_steps - skip_steps) * config.optim.batch_size / elapsed


def trainer_samples_per_s(run: Path, skip_steps: int) -> float:
    """Return the trainer's samples per second over the logged windows after `skip_steps`."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    windows = [record["samples_per_s"] for record in records if record["step"] > skip_steps]
    # Each window covers the same number of steps, so the harmonic mean is the rate over all of them.
    return len(windows) / sum(1.0 / rate for rate in windows)


def probe_accuracy(checkpoint: Path, train_shards: Path, heldout_shards: Path, work: Path) -> float:
    """Embed both shard sets with a checkpoint and return the kNN probe's top-1 source accuracy."""
    tables = []
    for name, shards in (("bank", train_shards), ("queries", heldout_shards)):
        out = work / name
        embed_shards(checkpoint, shards, out, batch_size=16, device="cpu")
        vectors = torch.from_numpy(np.load(out / "embeddings.npy", allow_pickle=False))
        labels = [clip_probe_label(json.loads(line)) for line in (out / "meta.jsonl").read_text().splitlines()]
        tables.append((vectors, labels))
    (bank, bank_labels), (queries, query_labels) = tables
    return knn_top1(bank, bank_labels, queries, query_labels)


@torch.no_grad()
def sync_accuracy(checkpoint: Path, heldout_shards: Path) -> dict[str, float]:
    """Return the audio-shift model's decision accuracy and pairwise accuracy on held-out shifted pairs."""
    method, config, _ = load_method(checkpoint)
    method.eval()
    embedder = ClipEmbedder(method.encoder, config, "joint", torch.device("cpu"))
    logmel = LogMel(n_mels=config.data.n_mels)
    pairer = ShiftedAudioPairer(config.method.shift_min_seconds, config.method.shift_max_seconds,
                                torch.Generator().manual_seed(0))
    in_sync, shifted = [], []
    for pair in pairer(iter_clips(heldout_shards)):
        video = embedder.video_input(pair.clip)[None]  # (1, 3, T, H, W)
        audio = logmel(torch.from_numpy(np.stack([pair.clip.audio, pair.shifted_audio])))  # (2, 1, M, F)
        energy = method.energy(video.expand(2, -1, -1, -1, -1), audio)  # (2,)
        in_sync.append(float(energy[0]))
        shifted.append(float(energy[1]))
    if not in_sync:
        return {"pairs": 0, "decision_accuracy": math.nan, "pairwise_accuracy": math.nan}
    sync_energy, shifted_energy = np.array(in_sync), np.array(shifted)
    decisions = np.concatenate([sync_energy < 0, shifted_energy > 0])
    return {
        "pairs": len(in_sync),
        "decision_accuracy": float(decisions.mean()),
        "pairwise_accuracy": float((sync_energy < shifted_energy).mean()),
    }


def majority_share(shards: Path, audio_only: bool) -> float:
    """Return the top-1 accuracy of always guessing the most common source among the held-out clips."""
    counts = [entry["num_clips"] for entry in read_index(shards)["sources"] if entry["has_audio"] or not audio_only]
    return max(counts) / sum(counts)


def measure_overhead(out: Path, train_shards: Path, steps: int, skip: int, rounds: int, quick: bool) -> dict:
    """Run the bare loop and the trainer in turn `rounds` times on BYOL and return the per-round ratios."""
    bare, trainer = [], []
    for round_index in range(rounds):
        run = out / f"overhead_{round_index}"
        config = method_config("byol", train_shards, run, steps, quick)
        bare.append(bare_samples_per_s(config, skip))
        train(config)
        trainer.append(trainer_samples_per_s(run, skip))
    ratios = [rate / baseline for rate, baseline in zip(trainer, bare)]
    return {"bare_samples_per_s": bare, "trainer_samples_per_s": trainer, "trainer_over_bare": ratios,
            "overhead": 1.0 - float(np.median(ratios))}


def run_benchmark(
    out: Path, quick: bool, rounds: int, overhead_only: bool = False, overhead_steps: int = 300
) -> dict:
    """Build the shards, train each method, and return every measured number."""
    steps = 6 if quick else 60
    skip = 2 if quick else 10
    train_shards, heldout_shards = build_split_shards(out / "shards", clip_stride=1.0 if quick else 0.5)
    results: dict = {"steps": steps, "quick": quick, "methods": {}}
    # Longer runs than the probe training, so that each timed window is long against the machine's jitter.
    overhead_steps = steps if quick else overhead_steps
    results["overhead"] = measure_overhead(out, train_shards, overhead_steps, overhead_steps // 6, rounds, quick)
    results["overhead"]["steps"] = overhead_steps
    if overhead_only:
        return results

    for method in METHODS:
        run = out / f"run_{method}"
        config = method_config(method, train_shards, run, steps, quick)
        started = time.perf_counter()
        train(config)
        entry: dict = {"train_seconds": round(time.perf_counter() - started, 1)}
        entry["majority_baseline"] = majority_share(heldout_shards, audio_only=method == "audio_shift")
        for name in ("init", "last"):
            work = out / f"embed_{method}_{name}"
            entry[f"probe_top1_{name}"] = probe_accuracy(run / "checkpoints" / f"{name}.pt", train_shards,
                                                         heldout_shards, work)
        if method == "audio_shift":
            entry["sync_heldout_last"] = sync_accuracy(run / "checkpoints" / "last.pt", heldout_shards)
            entry["sync_heldout_init"] = sync_accuracy(run / "checkpoints" / "init.pt", heldout_shards)
        results["methods"][method] = entry
        logger.info("%s: %s", method, entry)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps and fewer clips, for a test (about 1 min)")
    parser.add_argument("--out", type=Path, default=None, help="work folder to create (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="bare-loop and trainer runs taken in turn for the overhead (default: 3)")
    parser.add_argument("--overhead-only", action="store_true", help="measure the trainer overhead only")
    parser.add_argument("--overhead-steps", type=int, default=300,
                        help="optimiser steps of each overhead run; the first sixth is not timed (default: 300)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pretrain").setLevel(logging.WARNING)

    if args.out is not None and args.out.exists():
        print(f"bench_pretrain.py: error: {args.out} already exists; choose a new --out", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        results = run_benchmark(out, args.quick, max(args.rounds, 1), args.overhead_only, args.overhead_steps)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
