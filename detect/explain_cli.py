"""`latentwatch detect explain`: the command line of the static HTML report of alarms."""

from __future__ import annotations

import argparse
from pathlib import Path

from detect.errors import DetectInputError
from detect.explain import DEFAULT_PAGE_SIZE, write_report
from detect.scores import Scores, read_scores


def add_explain_command(commands: argparse._SubParsersAction) -> None:
    """Add `latentwatch detect explain` to the `detect` subcommands."""
    parser = commands.add_parser(
        "explain",
        help="static HTML report of the top alarms and their nearest normal clips",
        description="Write a static HTML report that opens from disk: score timelines whose alarm peaks link "
        "to the alarms, and each top alarm beside its nearest normal clips with thumbnails, video excerpts, "
        "audio, distances, sources and time spans. Every other scored clip is listed in paged tables.",
    )
    parser.add_argument("--scores", type=Path, required=True, help="scores folder written by `detect score`")
    parser.add_argument("--shards", type=Path, nargs="+", required=True,
                        help="shard folders containing the scored and the normal clips")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write")
    parser.add_argument(
        "--top", type=int, default=12, help="number of highest-scoring clips to expand (default: 12)"
    )
    parser.add_argument(
        "--metrics", type=Path, help="metrics.json from `detect evaluate` to show in the summary, with the "
        "ROC and PR plots found next to it"
    )
    parser.add_argument(
        "--modality", action="append", default=[], metavar="NAME=DIR",
        help="scores folder of the same clips on another embedding, e.g. video=scores/video. Repeat it to "
        "show each alarm's distances in every modality side by side and name the one that drives it",
    )
    parser.add_argument(
        "--page-size", type=int, default=DEFAULT_PAGE_SIZE,
        help=f"rows per page of the table of all scored clips (default: {DEFAULT_PAGE_SIZE})",
    )
    parser.set_defaults(handler=_explain)


def parse_modality(text: str) -> tuple[str, Path]:
    """Split a `NAME=DIR` argument; raise DetectInputError when the name or the folder is empty."""
    name, separator, folder = text.partition("=")
    if not separator or not name.strip() or not folder.strip():
        raise DetectInputError(f"--modality expects NAME=DIR, such as video=scores/video, got {text!r}")
    return name.strip(), Path(folder)


def _explain(args: argparse.Namespace) -> int:
    scores = read_scores(args.scores)
    modalities: list[tuple[str, Scores]] = []
    for text in args.modality:
        name, folder = parse_modality(text)
        modalities.append((name, read_scores(folder)))
    index_path = write_report(
        args.out, scores, args.shards, top=args.top, metrics_path=args.metrics, modalities=modalities,
        page_size=args.page_size,
    )
    print(index_path)
    return 0
