"""The `latentwatch shards build` command line."""

from __future__ import annotations

import argparse

from shards.build import BuildOptions, build_shards


def add_build_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `build` to the `latentwatch shards` subcommands."""
    defaults = BuildOptions()
    parser = subparsers.add_parser(
        "build",
        help="cut videos into clips with aligned audio and write WebDataset shards",
        description=(
            "Cut each video into clips of --clip-seconds (every frame in the span, resized, as JPEG, plus "
            "the audio of the same span as mono 16 kHz WAV) and write them as tar shards with an index.json. "
            "Frame labels come from a VIDEO_STEM.labels.json file next to a video, when there is one."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                        help="video files, or directories scanned recursively for video files")
    parser.add_argument("--out", required=True, metavar="DIR", help="shard set folder to create")
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
    parser.add_argument("--overwrite", action="store_true", help="replace an existing shard set at --out")
    parser.set_defaults(handler=run_build)
    return parser


def run_build(args: argparse.Namespace) -> int:
    """Build the shard set and print a one-line summary."""
    options = BuildOptions(
        clip_seconds=args.clip_seconds,
        stride_seconds=args.stride_seconds,
        max_side=args.max_side,
        clips_per_shard=args.clips_per_shard,
        jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
    )
    summary = build_shards(args.inputs, args.out, options)
    print(
        f"wrote {summary.num_clips} clips ({summary.total_seconds:g} s) in {summary.num_shards} shard(s) "
        f"to {summary.out}; skipped {len(summary.skipped)} input(s), {summary.failed_clips} clip(s) failed"
    )
    return 0
