"""`latentwatch detect explain`: the command line of the static HTML report of alarms."""

from __future__ import annotations

import argparse
from pathlib import Path

from detect.explain import write_report
from detect.scores import read_scores


def add_explain_command(commands: argparse._SubParsersAction) -> None:
    """Add `latentwatch detect explain` to the `detect` subcommands."""
    parser = commands.add_parser(
        "explain",
        help="static HTML report of the top alarms and their nearest normal clips",
        description="Write a static HTML report that opens from disk: score timelines, and each top alarm "
        "beside its nearest normal clips with thumbnails, distances, sources and time spans.",
    )
    parser.add_argument("--scores", type=Path, required=True, help="scores folder written by `detect score`")
    parser.add_argument("--shards", type=Path, nargs="+", required=True,
                        help="shard folders containing the scored and the normal clips")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write")
    parser.add_argument(
        "--top", type=int, default=12, help="number of highest-scoring clips to show (default: 12)"
    )
    parser.add_argument(
        "--metrics", type=Path, help="metrics.json from `detect evaluate` to show in the summary"
    )
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    scores = read_scores(args.scores)
    index_path = write_report(args.out, scores, args.shards, top=args.top, metrics_path=args.metrics)
    print(index_path)
    return 0
