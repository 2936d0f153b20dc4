"""The `latentwatch shards build` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from shards.build import BuildOptions, build_shards
from shards.errors import ShardsInputError


def _layout_names() -> list[str]:
    """Return the collection layouts the collection readers know, or none when they are not installed."""
    try:
        from shards.collections import LAYOUTS
    except ImportError:
        return []
    return sorted(LAYOUTS)


def add_build_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `build` to the `latentwatch shards` subcommands."""
    defaults = BuildOptions()
    layouts = _layout_names()
    parser = subparsers.add_parser(
        "build",
        help="cut videos into clips with aligned audio and write WebDataset shards",
        description=(
            "Cut each video into clips of --clip-seconds (every frame in the span, resized, as JPEG, plus "
            "the audio of the same span as mono 16 kHz WAV) and write them as tar shards with an index.json. "
            "Frame labels come from a VIDEO_STEM.labels.json file next to a video, when there is one. "
            "Sources are cut by --workers processes; the shards are the same whatever their number. A build "
            "that was killed resumes where it stopped when the same command is run again."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="ROOT_OR_FILES",
                        help="video files, or directories scanned recursively for video files; with --layout, "
                        "the root folder of the collection")
    parser.add_argument("--out", required=True, metavar="DIR", help="shard set folder to create")
    parser.add_argument("--layout", choices=layouts or None, default=None,
                        help="read the inputs as a collection of this layout (labels, splits, frame labels) "
                        "instead of plain video files")
    parser.add_argument("--annotations", metavar="CSV", default=None,
                        help="annotation file of the collection, for layouts that need one")
    parser.add_argument("--split", default=None, help="build only this split of the collection (e.g. train)")
    parser.add_argument("--class-index", metavar="CSV", default=None,
                        help="class index file mapping label ids to names, for layouts that use one")
    parser.add_argument("--train-minutes", type=float, metavar="MINUTES", default=None,
                        help="for layouts that split one recording in time (subway): minutes of training "
                        "footage at its start")
    parser.add_argument("--clip-seconds", type=float, metavar="SECONDS", default=defaults.clip_seconds,
                        help="clip length in seconds (default: %(default)s)")
    parser.add_argument("--stride-seconds", type=float, metavar="SECONDS", default=None,
                        help="seconds between clip starts (default: the clip length, so clips do not "
                        "overlap)")
    parser.add_argument("--max-side", type=int, metavar="PIXELS", default=defaults.max_side,
                        help="resize frames so the longer side is at most this many pixels "
                        "(default: %(default)s)")
    parser.add_argument("--clips-per-shard", type=int, metavar="N", default=defaults.clips_per_shard,
                        help="clips per tar shard (default: %(default)s)")
    parser.add_argument("--jpeg-quality", type=int, metavar="QUALITY", default=defaults.jpeg_quality,
                        help="JPEG quality of stored frames, 1-100 (default: %(default)s)")
    parser.add_argument("--workers", type=int, metavar="N", default=None,
                        help="processes that cut sources in parallel (default: the number of CPUs, at most 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing shard set at --out")
    parser.add_argument("--restart", action="store_true",
                        help="discard an unfinished build of --out instead of resuming it")
    parser.set_defaults(handler=run_build)
    return parser


def _read_inputs(args: argparse.Namespace) -> tuple[list, list]:
    """Return the build inputs and the listing's missing entries: collection items, or the paths as given."""
    if args.layout is None:
        for flag in ("annotations", "split", "class_index", "train_minutes"):
            if getattr(args, flag) is not None:
                raise ShardsInputError(f"--{flag.replace('_', '-')} needs --layout")
        return list(args.inputs), []

    from shards.collections import read_collection

    if len(args.inputs) != 1:
        raise ShardsInputError(f"--layout {args.layout} takes one collection root, got {len(args.inputs)} paths")
    listing = read_collection(
        args.layout,
        Path(args.inputs[0]),
        annotations=Path(args.annotations) if args.annotations else None,
        split=args.split,
        class_index=Path(args.class_index) if args.class_index else None,
        train_minutes=args.train_minutes,
    )
    return list(listing.items), list(listing.missing)


def run_build(args: argparse.Namespace) -> int:
    """Build the shard set and print a one-line summary."""
    options = BuildOptions(
        clip_seconds=args.clip_seconds,
        stride_seconds=args.stride_seconds,
        max_side=args.max_side,
        clips_per_shard=args.clips_per_shard,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
        workers=args.workers,
        restart=args.restart,
    )
    inputs, missing = _read_inputs(args)
    summary = build_shards(inputs, args.out, options, missing=[_as_json(entry) for entry in missing])
    sizes = summary.bytes_per_clip_second
    size_text = f"{sizes['shards'] / 1000:.1f} kB per clip-second in shards"
    if sizes.get("sources"):
        size_text += f", {sizes['sources'] / 1000:.1f} kB per second in sources"
    missing_text = f", {len(summary.missing)} listed but missing" if summary.missing else ""
    print(
        f"wrote {summary.num_clips} clips ({summary.total_seconds:g} s) in {summary.num_shards} shard(s) "
        f"to {summary.out}; skipped {len(summary.skipped)} input(s), {summary.failed_clips} clip(s) failed"
        f"{missing_text}; {size_text}"
    )
    return 0


def _as_json(entry: object) -> object:
    """Return a listing's missing entry in a form `index.json` can store."""
    if isinstance(entry, (str, int, float, dict, list)) or entry is None:
        return entry
    if hasattr(entry, "__dataclass_fields__"):
        from dataclasses import asdict

        return {name: str(value) if isinstance(value, Path) else value for name, value in asdict(entry).items()}
    return str(entry)
