"""Build a shard set: cut every source into clips of frames plus aligned audio, in parallel, resumably.

How the work is split, and why the output does not depend on the number of workers: each source (a video
file or a frame folder) is one unit of work. A worker process cuts it into clips and writes them, already
encoded, to a spool file of that source alone (`shards.cut_source`), then writes a small record that marks
the source as done. When every source is done, the parent copies the spooled clips into
`shard-000000.tar`, `shard-000001.tar`, ... in input order. Which worker cut a source, and when, never
reaches the shards, so `--workers 1` and `--workers 8` give byte-identical shard sets.

How a killed build resumes: everything happens in `.OUT.partial` next to `OUT` (`shards.build_journal`).
Spools, records and shards are written under temporary names and renamed when complete. A rerun with the
same inputs and settings keeps the records and their spools, deletes everything half-written, cuts only
the sources without a record, and assembles the shards again from all spools. A rerun with other inputs
or settings is rejected with the difference named, unless `--restart` discards the old build. The spools
take about as much disk as the shards until the build ends. A kill in the moment between renaming the
finished folder to `OUT` and deleting its `.journal` subfolder leaves that subfolder in `OUT`; readers
ignore it.

Inputs that give no clip are logged and listed in `index.json` under `skipped`.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from shards.build_journal import BuildJournal, describe_build, partial_folder
from shards.build_options import BuildOptions, default_workers
from shards.clips import clip_key
from shards.cut_source import FORMAT_VERSION, cut_source, record_path, spool_path
from shards.decode import SAMPLE_RATE
from shards.errors import ShardsInputError
from shards.source_item import SourceItem
from shards.write import ShardSetWriter, read_samples

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "VIDEO_EXTENSIONS", "BuildOptions", "BuildSummary", "build_shards", "find_videos"]

# Directories are scanned for these extensions; a file named on the command line is used whatever its name.
VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp"}
)


@dataclass
class BuildSummary:
    """Counts of a finished build, for the closing message and for tests."""

    out: Path
    num_clips: int = 0
    total_seconds: float = 0.0
    num_shards: int = 0
    skipped: list[dict] = field(default_factory=list)
    failed_clips: int = 0
    missing: list = field(default_factory=list)
    bytes_per_clip_second: dict = field(default_factory=dict)
    """`{"shards": ..., "sources": ...}`: stored bytes per second of clip, and source bytes per second."""


def find_videos(inputs: list[str | Path]) -> list[Path]:
    """Expand files and directories (scanned recursively, sorted) into a list of video paths.

    Raises `ShardsInputError` for a path that does not exist, and for two inputs whose clip keys would
    collide (the same sanitised file stem), because keys must be unique in a shard set.
    """
    videos: list[Path] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise ShardsInputError(f"{path}: no such file or directory")
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not found:
                extensions = " ".join(sorted(VIDEO_EXTENSIONS))
                logger.warning("%s: no video files found (extensions: %s)", path, extensions)
            videos.extend(found)
        else:
            videos.append(path)

    unique: dict[Path, Path] = {}
    for video in videos:
        unique.setdefault(video.resolve(), video)
    items = [SourceItem(path=resolved, stem=stem_of(resolved)) for resolved in unique]
    check_unique_stems(items)
    return list(unique)


def stem_of(path: str | Path) -> str:
    """Return the clip-key stem of a source: its file stem as `shards.clips.clip_key` sanitises it."""
    return clip_key(path, 0.0).rsplit("-", 1)[0]


def check_unique_stems(items: list[SourceItem]) -> None:
    """Raise `ShardsInputError` when two items would give the same clip keys, or a stem is not key-safe."""
    by_stem: dict[str, Path] = {}
    for item in items:
        if not item.stem or stem_of(f"{item.stem}.x") != item.stem:
            raise ShardsInputError(
                f"{item.path}: stem {item.stem!r} may contain only letters, digits, '_' and '-'"
            )
        if item.stem in by_stem:
            raise ShardsInputError(
                f"{by_stem[item.stem]} and {item.path} give the same clip keys ('{item.stem}-...'); "
                "rename one of them or build them into separate shard sets"
            )
        by_stem[item.stem] = item.path


def build_shards(
    inputs: list[str | Path | SourceItem],
    out: str | Path,
    options: BuildOptions | None = None,
    *,
    missing: list | None = None,
) -> BuildSummary:
    """Cut `inputs` into clips and write a shard set at `out`, resuming an unfinished build of `out`.

    `inputs` are `SourceItem`s from a collection reader, or videos and directories of videos, which
    become items with no label. `missing` lists what a collection reader expected but did not find; it is
    counted and stored in `index.json`.
    """
    options = options if options is not None else BuildOptions()
    options.validate()
    out = Path(out).absolute()
    _check_destination(out, options.overwrite)
    items = _as_items(inputs)
    if not items:
        raise ShardsInputError("no video files among the inputs")

    out.parent.mkdir(parents=True, exist_ok=True)
    journal = BuildJournal(partial_folder(out))
    journal.open(describe_build(items, options, FORMAT_VERSION), options.restart)
    try:
        summary = _build_in(journal, items, options, missing or [])
    except ShardsInputError:
        # Sources already cut are kept for a rerun after the input is fixed; a build with nothing done
        # leaves no trace.
        keep = journal.has_finished_work()
        journal.close(delete=not keep)
        if keep:
            logger.warning("kept the finished sources in %s; rerun the command to resume", journal.partial)
        raise
    except BaseException:
        journal.close(delete=False)
        raise

    summary.out = out
    _replace(journal.partial, out)
    shutil.rmtree(out / journal.folder.name, ignore_errors=True)
    journal.close(delete=False)
    return summary


def _as_items(inputs: list[str | Path | SourceItem]) -> list[SourceItem]:
    given_items = [given for given in inputs if isinstance(given, SourceItem)]
    paths = [given for given in inputs if not isinstance(given, SourceItem)]
    items = given_items + [SourceItem(path=video, stem=stem_of(video)) for video in find_videos(paths)]
    check_unique_stems(items)
    return items


def _check_destination(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not overwrite:
        raise ShardsInputError(f"{out} already exists; pass --overwrite to replace it")
    is_shard_set = out.is_dir() and (out / "index.json").is_file()
    is_empty_dir = out.is_dir() and not any(out.iterdir())
    if not (is_shard_set or is_empty_dir):
        raise ShardsInputError(
            f"{out} is not a shard set (no index.json), and --overwrite replaces only shard sets"
        )


def _replace(partial: Path, out: Path) -> None:
    """Move the finished folder to `out`, moving an old shard set aside first and deleting it after."""
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)  # left by a build killed while replacing
    if out.exists():
        out.rename(old)
    partial.rename(out)
    if old.exists():
        shutil.rmtree(old)


def _build_in(journal: BuildJournal, items: list[SourceItem], options: BuildOptions, missing: list) -> BuildSummary:
    records = _cut_all(journal, items, options)
    errors = [record for record in records if record["status"] == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more input error(s))" if len(errors) > 1 else ""
        raise ShardsInputError(errors[0]["reason"] + more)
    return _assemble(journal, records, options, missing)


def _cut_all(journal: BuildJournal, items: list[SourceItem], options: BuildOptions) -> list[dict]:
    """Cut every source that has no record yet, in parallel, and return the records of all, in input order."""
    records: dict[int, dict] = {}
    pending = []
    for position, item in enumerate(items):
        path = record_path(journal.work, position)
        if path.is_file():
            records[position] = json.loads(path.read_text())
        else:
            pending.append(position)

    workers = min(options.workers or default_workers(), max(1, len(pending)))
    progress = tqdm(total=len(items), initial=len(records), desc="sources", unit="source")
    if workers == 1 or len(pending) <= 1:
        for position in pending:
            records[position] = cut_source(position, items[position], options, journal.work)
            progress.update()
    else:
        # Spawned workers import decord and PyAV afresh instead of inheriting the parent's threads.
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger().getEffectiveLevel()
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_configure_worker, initargs=(level,)
        ) as pool:
            futures = {
                pool.submit(cut_source, position, items[position], options, journal.work): position
                for position in pending
            }
            try:
                for future in concurrent.futures.as_completed(futures):
                    records[futures[future]] = future.result()
                    progress.update()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    progress.close()
    return [records[position] for position in range(len(items))]


def _configure_worker(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _assemble(journal: BuildJournal, records: list[dict], options: BuildOptions, missing: list) -> BuildSummary:
    """Copy the spooled clips into shards in input order and write `index.json`."""
    summary = BuildSummary(out=journal.partial, missing=list(missing))
    sources: list[dict] = []
    writer = ShardSetWriter(journal.partial, options.clips_per_shard)
    source_bytes = 0
    source_seconds = 0.0

    ok_records = [record for record in records if record["status"] == "ok"]
    for record in records:
        if record["status"] == "skipped":
            summary.skipped.append({"path": record["path"], "reason": record["reason"]})
    for record in tqdm(ok_records, desc="shards", unit="source", disable=None):
        for members in read_samples(spool_path(journal.work, record["position"])):
            writer.write_members(members)
        summary.num_clips += record["num_clips"]
        summary.failed_clips += record["failed_clips"]
        source_bytes += record["source_bytes"]
        source_seconds += record["source"]["duration_s"]
        sources.append(record["source"])
    shards = writer.close()

    if summary.num_clips == 0:
        reasons = "; ".join(skipped["reason"] for skipped in summary.skipped[:3])
        raise ShardsInputError(f"no input gave a clip ({reasons})")

    summary.total_seconds = round(summary.num_clips * options.clip_seconds, 6)
    summary.num_shards = len(shards)
    shard_bytes = sum((journal.partial / shard["name"]).stat().st_size for shard in shards)
    # Overlapping clips store the same second more than once, so both figures are per second of clip
    # for the shards and per second of video for the sources.
    summary.bytes_per_clip_second = {
        "shards": round(shard_bytes / summary.total_seconds, 1),
        "sources": round(source_bytes / source_seconds, 1) if source_seconds > 0 else None,
    }
    index = {
        "format_version": FORMAT_VERSION,
        "num_clips": summary.num_clips,
        "total_seconds": summary.total_seconds,
        "clip_seconds": options.clip_seconds,
        "stride_seconds": options.stride,
        "sample_rate": SAMPLE_RATE,
        "max_side": options.max_side,
        "jpeg_quality": options.jpeg_quality,
        "bytes_per_clip_second": summary.bytes_per_clip_second,
        "shards": shards,
        "sources": sources,
        "skipped": summary.skipped,
        "num_missing": len(summary.missing),
        "missing": summary.missing,
    }
    temporary = journal.partial / f"index.json.partial-{os.getpid()}"
    temporary.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(temporary, journal.partial / "index.json")
    return summary
