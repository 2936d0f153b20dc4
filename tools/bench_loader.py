"""Measure how fast clips come out of shards, against decoding the source videos, and what storage costs.

Run from the repository root: `.venv/bin/python tools/bench_loader.py`, which took about 2 minutes on a
shared 2-core CPU. `--quick` measures two short sources and 12 clips instead, for the test suite. It builds a shard set of the real
footage in `tools/footage` into a temporary folder and prints one table; `--json FILE` also saves it.

Figures, all with the same number of processes (`--workers`):
- shards: clips/s a DataLoader delivers from `stream_clips` (JPEG frames and WAV audio decoded).
- decode ceiling: the same clips' frames decoded by decord in a tight loop, each process reading its
  share of the sources front to back with one open reader. Shards should reach at least 0.85 of it.
- naive: each clip read the naive way, opening its source, seeking to the clip's frames with decord and
  decoding its audio span with PyAV. Shards should be at least 3 times faster.
- bytes per clip-second of the shards and of the sources.
- storage forms: bytes per clip-second and decode time per clip for JPEG quality 90 and 75, WAV int16 and
  FLAC audio, and the clip's frames as one H.264 segment (`docs/storage.md` explains the choice).
Timings include no process start-up: each loader runs one warm-up pass over a few clips first.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
import torch

from shards.build import BuildOptions, build_shards
from shards.read import list_shards, read_index
from shards.sample_codec import decode_jpeg, decode_wav, encode_jpeg
from shards.stream import stream_clips
from shards.write import read_samples

FOOTAGE = Path(__file__).resolve().parent / "footage"
FULL_SOURCES = ["vtest.avi", "bikes.mp4", "Megamind.avi", "bigbuckbunny.mp4"]
QUICK_SOURCES = ["bikes.mp4", "Megamind.avi"]
SAMPLE_RATE = 16000


def clip_plan(shard_dir: Path) -> list[dict]:
    """Return the metadata of every clip of a shard set, read from the `.json` members alone."""
    plan = []
    for url in list_shards(shard_dir):
        for members in read_samples(url):
            plan.extend(json.loads(data) for name, data in members if name.endswith(".json"))
    return plan


def time_shards(urls: list[str], workers: int, warmup: int) -> tuple[float, int]:
    """Return the seconds a DataLoader takes to deliver every clip once, after a warm-up pass, and the count."""
    loader = torch.utils.data.DataLoader(
        stream_clips(urls, seed=0, shuffle_buffer=0), batch_size=None, num_workers=workers,
        persistent_workers=workers > 0,
    )
    for count, _ in enumerate(loader):  # the warm-up pass starts the workers
        if count + 1 >= warmup:
            break
    start = time.perf_counter()
    count = sum(1 for _ in loader)
    return time.perf_counter() - start, count


def _decode_sequential(task: tuple[str, int, int, list[list[int]]]) -> int:
    """Decode each clip's frames from one open reader, in order: the decode ceiling of one source."""
    path, width, height, clips = task
    reader = decord.VideoReader(path, width=width, height=height)
    for indices in clips:
        reader.get_batch(indices).asnumpy()
    return len(clips)


def _decode_naive(task: tuple[str, int, int, list[int], float, float]) -> int:
    """Open the source, seek to one clip's frames and decode them, then decode its audio span with PyAV."""
    path, width, height, indices, start_s, end_s = task
    decord.VideoReader(path, width=width, height=height).get_batch(indices).asnumpy()
    with av.open(path) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            container.seek(int(start_s / stream.time_base), stream=stream)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # Megamind.avi has a corrupt audio packet, which the builder skips too
                for frame in frames:
                    resampler.resample(frame)
                if packet.pts is not None and float(packet.pts * stream.time_base) >= end_s:
                    break
    return 1


def time_pool(function, tasks: list, workers: int) -> float:
    """Return the seconds `workers` warm processes take to run `function` over `tasks`."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        pool.map(_noop, range(workers))  # start-up and imports, not timed
        start = time.perf_counter()
        pool.map(function, tasks, chunksize=1)
        return time.perf_counter() - start


def _noop(_: int) -> None:
    return None


def ceiling_tasks(plan: list[dict], sizes: dict[str, tuple[int, int]], workers: int) -> list:
    """Split each source's clips into `workers` consecutive runs, so every process reads front to back."""
    by_source: dict[str, list[list[int]]] = {}
    for meta in plan:
        by_source.setdefault(meta["source"], []).append(meta["frame_indices"])
    tasks = []
    for source, clips in by_source.items():
        for part in np.array_split(np.arange(len(clips)), workers):
            if len(part):
                tasks.append((source, *sizes[source], [clips[i] for i in part]))
    return tasks


def storage_forms(urls: list[str], num_clips: int, max_clips: int) -> list[dict]:
    """Measure bytes per clip-second and decode ms per clip of each storage form on up to `max_clips` clips.

    Every `num_clips / max_clips`-th clip is measured, so each source contributes its share. Audio forms
    count only the clips that have audio.
    """
    step = max(1, -(-num_clips // max_clips))
    totals: dict[str, dict] = {}
    position = 0
    for url in urls:
        for members in read_samples(url):
            position += 1
            if (position - 1) % step:
                continue
            meta = json.loads(next(data for name, data in members if name.endswith(".json")))
            frames = np.stack([decode_jpeg(data) for name, data in members if name.endswith(".jpg")])
            wav = next((data for name, data in members if name.endswith(".wav")), None)
            for form, (size, decode_s) in _forms_of_clip(frames, meta["fps"], wav).items():
                entry = totals.setdefault(form, {"bytes": 0, "decode_s": 0.0, "clips": 0, "seconds": 0.0})
                entry["bytes"] += size
                entry["decode_s"] += decode_s
                entry["clips"] += 1
                entry["seconds"] += meta["end_s"] - meta["start_s"]

    return [
        {
            "form": form,
            "bytes_per_clip_second": round(entry["bytes"] / entry["seconds"], 1),
            "decode_ms_per_clip": round(1000 * entry["decode_s"] / entry["clips"], 2),
            "clips": entry["clips"],
        }
        for form, entry in totals.items()
    ]


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _forms_of_clip(frames: np.ndarray, fps: float, wav: bytes | None) -> dict[str, tuple[int, float]]:
    """Encode one clip in every storage form; return each form's bytes and decode seconds."""
    forms = {}
    for quality in (90, 75):
        jpegs = [encode_jpeg(frame, quality) for frame in frames]
        decode_s = _timed(lambda: [decode_jpeg(data) for data in jpegs])
        forms[f"frames: JPEG quality {quality}"] = (sum(map(len, jpegs)), decode_s)

    segment = _encode_h264(frames, fps)
    forms["frames: H.264 segment (crf 23)"] = (len(segment), _timed(_decode_video, segment))

    if wav is not None:
        samples, _ = decode_wav(wav)
        forms["audio: WAV int16"] = (len(wav), _timed(decode_wav, wav))
        flac = _encode_flac(samples)
        forms["audio: FLAC"] = (len(flac), _timed(_decode_audio, flac))
    return forms


def _encode_h264(frames: np.ndarray, fps: float) -> bytes:
    buffer = io.BytesIO()
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _decode_video(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _encode_flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :]  # (1, S)
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _decode_audio(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])


def run(quick: bool, workers: int, out_dir: Path) -> dict:
    """Build the shard set and take every measurement; return the results."""
    names = QUICK_SOURCES if quick else FULL_SOURCES
    shard_dir = out_dir / "shards"
    build_shards([FOOTAGE / name for name in names], shard_dir,
                 BuildOptions(clip_seconds=1.0, clips_per_shard=8, workers=workers))
    index = read_index(shard_dir)
    urls = list_shards(shard_dir)
    plan = clip_plan(shard_dir)
    if quick:
        plan = plan[:12]
        urls = urls[: (len(plan) + 7) // 8]
    sizes = {}
    for source in {meta["source"] for meta in plan}:
        reader = decord.VideoReader(source, width=-1, height=-1)
        height, width = reader[0].shape[:2]
        scale = min(1.0, index["max_side"] / max(width, height))
        sizes[source] = (max(1, round(width * scale)), max(1, round(height * scale)))

    shards_s, delivered = time_shards(urls, workers, warmup=2)
    ceiling_s = time_pool(_decode_sequential, ceiling_tasks(plan, sizes, workers), workers)
    naive_tasks = [(m["source"], *sizes[m["source"]], m["frame_indices"], m["start_s"], m["end_s"]) for m in plan]
    naive_s = time_pool(_decode_naive, naive_tasks, workers)

    shards_rate = delivered / shards_s
    ceiling_rate = len(plan) / ceiling_s
    naive_rate = len(plan) / naive_s
    return {
        "sources": names,
        "workers": workers,
        "clips": len(plan),
        "clips_per_s": {"shards": round(shards_rate, 1), "decode_ceiling": round(ceiling_rate, 1),
                        "naive": round(naive_rate, 1)},
        "shards_over_ceiling": round(shards_rate / ceiling_rate, 2),
        "shards_over_naive": round(shards_rate / naive_rate, 2),
        "bytes_per_clip_second": index["bytes_per_clip_second"],
        "storage_forms": storage_forms(urls, len(plan), max_clips=12 if quick else 60),
    }


def print_table(results: dict) -> None:
    rates = results["clips_per_s"]
    print(f"{results['clips']} clips of {', '.join(results['sources'])}; {results['workers']} process(es)")
    print(f"clips/s  shards {rates['shards']}  decode ceiling {rates['decode_ceiling']}  naive {rates['naive']}")
    print(f"shards / decode ceiling = {results['shards_over_ceiling']} (goal >= 0.85)")
    print(f"shards / naive = {results['shards_over_naive']} (goal >= 3)")
    sizes = results["bytes_per_clip_second"]
    print(f"bytes per clip-second  shards {sizes['shards']:.0f}  sources {sizes['sources']:.0f}")
    print(f"{'storage form':34s} {'bytes/clip-s':>12s} {'decode ms/clip':>15s}")
    for form in results["storage_forms"]:
        print(f"{form['form']:34s} {form['bytes_per_clip_second']:12.0f} {form['decode_ms_per_clip']:15.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short sources and 12 clips, for a smoke test")
    parser.add_argument("--workers", type=int, default=2, help="processes for every loader (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_loader-") as folder:
        results = run(args.quick, args.workers, Path(folder))
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
