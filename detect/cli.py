"""`latentwatch detect ...`: fit a detector, score embeddings, evaluate scores and explain alarms."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from detect.base import load_detector
from detect.embeddings import Embeddings, load_embeddings
from detect.errors import DetectInputError
from detect.evaluate import evaluate_scores, format_table, write_evaluation
from detect.explain import write_report
from detect.json_files import finite_float
from detect.knn import AGGREGATES, INDEXES, METRICS, KNNDetector
from detect.scores import read_scores, write_scores
from detect.scoring import score_embeddings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> tuple[type[Exception], ...]:
    """Add `latentwatch detect ...` to the command line and return the input-error classes."""
    detect_parser = subparsers.add_parser(
        "detect", help="fit detectors on normal embeddings, score, evaluate, explain"
    )
    commands = detect_parser.add_subparsers(dest="detect_command", required=True, metavar="COMMAND")
    _add_fit(commands)
    _add_score(commands)
    _add_evaluate(commands)
    _add_explain(commands)
    return (DetectInputError,)


def _add_fit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("fit", help="fit a detector on the embeddings of normal clips")
    parser.add_argument("--method", choices=["knn"], default="knn", help="detector to fit (default: knn)")
    parser.add_argument(
        "--embeddings", type=Path, required=True, help="embeddings folder of normal clips only"
    )
    parser.add_argument("--out", type=Path, required=True, help="detector folder to write")
    parser.add_argument("--k", type=int, default=5,
                        help="neighbours per query (default: 5); needs at least k + 1 normal clips")
    parser.add_argument("--metric", choices=METRICS, default="cosine",
                        help="cosine: 1 - cosine similarity of L2-normalised vectors; l2: Euclidean "
                             "(default: cosine)")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="mean",
                        help="reduce the k distances by mean, or by the largest (max and kth agree) "
                             "(default: mean)")
    parser.add_argument("--index", choices=INDEXES, default="flat",
                        help="flat: exact search; hnsw: approximate, for millions of normal clips "
                             "(default: flat)")
    parser.add_argument("--contamination", type=float, default=0.1,
                        help="fraction of normal clips above the alarm threshold, in (0, 0.5] (default: 0.1)")
    parser.add_argument("--reference-quantile", type=float, default=0.99,
                        help="quantile of normal nearest-neighbour distances above which a clip has nothing "
                             "normal near it (default: 0.99)")
    parser.add_argument("--exclude-anomalous", action="store_true",
                        help="drop clips whose frame_labels mark an anomalous frame instead of failing")
    parser.set_defaults(handler=_fit)


def _add_score(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score", help="score every clip of an embeddings folder and list its neighbours"
    )
    parser.add_argument("--model", type=Path, required=True, help="detector folder written by `detect fit`")
    parser.add_argument("--embeddings", type=Path, required=True, help="embeddings folder to score")
    parser.add_argument("--out", type=Path, required=True, help="scores folder to write")
    parser.set_defaults(handler=_score)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="AUROC, EER, AUPRC and AP of a scores folder, with plots")
    parser.add_argument("--scores", type=Path, required=True, help="scores folder written by `detect score`")
    parser.add_argument("--out", type=Path, help="output folder (default: SCORES/evaluation)")
    parser.add_argument("--smooth-sigma", type=float, default=0.0,
                        help="Gaussian smoothing of frame scores, standard deviation in frames; "
                             "0 turns it off "
                             "(default: 0)")
    parser.add_argument("--normal-label", action="append", dest="normal_labels", metavar="NAME",
                        help="clip label that means normal, for clip-level evaluation; repeatable "
                             "(default: normal)")
    parser.set_defaults(handler=_evaluate)


def _add_explain(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "explain", help="static HTML report of the top alarms and their nearest normal clips"
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


def _fit(args: argparse.Namespace) -> int:
    embeddings = load_embeddings(args.embeddings)
    vectors, meta = _normal_rows(embeddings, source=args.embeddings, exclude_anomalous=args.exclude_anomalous)
    detector = KNNDetector(
        k=args.k,
        metric=args.metric,
        aggregate=args.aggregate,
        index=args.index,
        contamination=args.contamination,
        reference_quantile=args.reference_quantile,
    )
    detector.fit(vectors, meta)
    detector.save(args.out)
    print(f"detector: {args.out} ({len(meta)} normal clips, threshold {detector.threshold_:.4f})")
    return 0


def _normal_rows(
    embeddings: Embeddings, *, source: Path, exclude_anomalous: bool
) -> tuple[np.ndarray, list[dict]]:
    """Return the rows to fit on.

    Clips with an anomalous frame label raise DetectInputError, or are dropped when `exclude_anomalous`.
    """
    anomalous = [
        index for index, row in enumerate(embeddings.meta)
        if isinstance(row.get("frame_labels"), list) and any(row["frame_labels"])
    ]
    if not anomalous:
        return np.asarray(embeddings.vectors), embeddings.meta
    if not exclude_anomalous:
        raise DetectInputError(
            f"{len(anomalous)} of {len(embeddings)} clips in {source} have anomalous frame labels (first: "
            f"{embeddings.meta[anomalous[0]]['key']}); a detector is fitted on normal clips only, so pass "
            "--exclude-anomalous to drop them or fit on a normal-only embeddings folder"
        )
    keep = np.setdiff1d(np.arange(len(embeddings)), anomalous)
    logger.warning("dropped %d clips with anomalous frame labels; fitting on %d", len(anomalous), keep.size)
    return np.asarray(embeddings.vectors[keep]), [embeddings.meta[index] for index in keep]


def _score(args: argparse.Namespace) -> int:
    detector = load_detector(args.model)
    embeddings = load_embeddings(args.embeddings)
    rows, header = score_embeddings(
        detector, embeddings, model_path=args.model, embeddings_path=args.embeddings
    )
    write_scores(args.out, rows, header)
    threshold = finite_float(header.get("threshold"))
    alarms = sum(1 for row in rows if threshold is not None and row["score"] > threshold)
    print(f"scores: {args.out} ({len(rows)} clips, {alarms} above the alarm threshold)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    scores = read_scores(args.scores)
    normal_labels = tuple(args.normal_labels or ("normal",))
    evaluation = evaluate_scores(scores, smooth_sigma=args.smooth_sigma, normal_labels=normal_labels)
    evaluation.metrics["scores"] = str(args.scores.resolve())
    out = args.out or args.scores / "evaluation"
    write_evaluation(out, evaluation, threshold=finite_float(scores.header.get("threshold")))
    print(format_table(evaluation.metrics))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    scores = read_scores(args.scores)
    index_path = write_report(args.out, scores, args.shards, top=args.top, metrics_path=args.metrics)
    print(index_path)
    return 0
