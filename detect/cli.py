"""`latentwatch detect ...` (fit a detector, score embeddings, evaluate scores, explain alarms) and
`latentwatch probe ...` (linear and kNN probes of frozen embeddings)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

from detect.base import Detector, load_detector
from detect.cnc import CnCDetector
from detect.embeddings import Embeddings, load_embeddings
from detect.energy import score_energy
from detect.errors import DetectInputError
from detect.evaluate import evaluate_scores, format_table, write_evaluation
from detect.explain_cli import add_explain_command
from detect.iae import IAEDetector
from detect.json_files import finite_float
from detect.knn import AGGREGATES, INDEXES, METRICS, KNNDetector
from detect.probe import ProbeResult, knn_probe, linear_probe, read_labels
from detect.scores import read_scores, write_scores
from detect.scoring import score_embeddings
from detect.seeds import format_seed_table, recorded_seeds, write_seed_evaluations
from detect.sequences import build_windows, score_sequence_embeddings

FIT_METHODS = ("knn", "iae", "cnc")
SCORE_METHODS = ("detector", "energy")
DEFAULT_SEQUENCE_LENGTH = 5

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
    add_explain_command(commands)
    _add_probe(subparsers)
    return (DetectInputError,)


def _add_fit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "fit",
        help="fit a detector on the embeddings of normal clips",
        description="Fit a detector on the embeddings of normal clips only and write its folder. Clips whose "
        "frame labels mark an anomalous frame are rejected unless --exclude-anomalous drops them.",
    )
    parser.add_argument("--method", choices=FIT_METHODS, default="knn",
                        help="knn: distance to the nearest normal clips; iae: interpolating autoencoder on "
                             "sequences of consecutive clips; cnc: Clear & Concise codelength autoencoder on "
                             "single clips (default: knn)")
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
    parser.add_argument("--calibration-rows", type=int, default=None,
                        help="knn only: compute the leave-one-out scores behind the alarm threshold and the "
                             "nearest-normal reference on a seeded random subset of this many normal clips, "
                             "0 = all. The threshold's rank then has standard error sqrt(q(1-q)/n): 0.21%% of "
                             "clips at contamination 0.1 with 20000 rows (default: 20000)")
    parser.add_argument("--exclude-anomalous", action="store_true",
                        help="drop clips whose frame_labels mark an anomalous frame instead of failing")
    parser.add_argument("--sequence-length", type=int, default=None,
                        help="iae only: clips per sequence, at least 3. Each window contains that many "
                             "consecutive clips of one video (ordered by start time, stride 1) and is scored "
                             "under the key of its centre clip; the clips at both ends of a video get no "
                             "score (default: 5)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="iae: maximum training epochs, early stopping may end sooner (default: 200); "
                             "cnc: epochs of masked training after 20 warm-up epochs (default: 60)")
    parser.add_argument("--seed", type=int, default=0,
                        help="iae and cnc: seed of weight initialisation, noise, batches and the validation "
                             "split; knn: seed of the calibration subset (default: 0)")
    parser.set_defaults(handler=_fit)


def _add_score(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "score",
        help="score every clip of an embeddings folder and list its neighbours",
        description="Score every clip of an embeddings folder (higher = more anomalous) and write, per clip, "
        "its score and its nearest normal clips with their distances. With --method energy, the score is "
        "the audio-shift model's energy of each clip with its own audio, read from the folder's energy.npy "
        "(written by `latentwatch embed` for audio-shift checkpoints); it needs no --model and lists no "
        "neighbours.",
    )
    parser.add_argument("--method", choices=SCORE_METHODS, default="detector",
                        help="detector: score with the fitted detector in --model; energy: use the folder's "
                             "energy.npy as the score (default: detector)")
    parser.add_argument("--model", type=Path,
                        help="detector folder written by `detect fit`; required with --method detector")
    parser.add_argument("--embeddings", type=Path, required=True, help="embeddings folder to score")
    parser.add_argument("--out", type=Path, required=True, help="scores folder to write")
    parser.add_argument("--allow-other-encoder", action="store_true",
                        help="score embeddings whose checkpoint or modality differs from the ones the model "
                             "was fitted on (refused by default: their distances are not comparable)")
    parser.set_defaults(handler=_score)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="AUROC, EER, AUPRC and AP of a scores folder, with plots",
        description="Map clip scores to frames (each frame takes the maximum score of the clips covering it) "
        "and report AUROC, EER, AUPRC and AP, micro and macro, plus the centre-frame rule; write "
        "metrics.json, ROC and PR curves and per-video score timelines. Macro metrics are the mean over "
        "videos with both normal and anomalous frames; single-class videos are skipped and counted. With "
        "several scores folders (one per seed), each is evaluated in its own subfolder and metrics.json "
        "adds the mean, sample standard deviation and n of every metric.",
    )
    parser.add_argument("--scores", type=Path, nargs="+", required=True, metavar="SCORES",
                        help="scores folder written by `detect score`; give one folder per seed of the same "
                             "experiment to also get the mean, standard deviation and n of every metric")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: SCORES/evaluation; required with several folders)")
    parser.add_argument("--smooth-sigma", type=float, default=0.0,
                        help="Gaussian smoothing of frame scores, standard deviation in frames; "
                             "0 turns it off "
                             "(default: 0)")
    parser.add_argument("--normalise-per-video", action="store_true",
                        help="z-score each video's scores with that video's own mean and standard deviation "
                             "before pooling; this uses test-time statistics, so the output says so (default: off)")
    parser.add_argument("--normal-label", action="append", dest="normal_labels", metavar="NAME",
                        help="clip label that means normal, for clip-level evaluation; repeatable "
                             "(default: normal)")
    parser.set_defaults(handler=_evaluate)


def _add_probe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe", help="linear or kNN probe of frozen embeddings: top-1 and top-5 accuracy of clip labels"
    )
    parser.add_argument("method", choices=("linear", "knn"),
                        help="linear: logistic regression on standardised embeddings; knn: cosine kNN vote "
                             "weighted by exp(similarity / temperature), as DINO evaluates features")
    parser.add_argument("--train", type=Path, required=True, help="labelled embeddings folder to fit on")
    parser.add_argument("--test", type=Path, required=True, help="labelled embeddings folder to measure on")
    parser.add_argument("--label-field", default="label",
                        help="meta.jsonl field that contains each clip's class (default: label)")
    parser.add_argument("--k", type=int, default=20, help="knn only: neighbours that vote (default: 20)")
    parser.add_argument("--temperature", type=float, default=0.07,
                        help="knn only: vote weight exp(similarity / temperature) (default: 0.07)")
    parser.add_argument("--seed", type=int, default=0, help="linear only: solver seed (default: 0)")
    parser.add_argument("--out", type=Path, help="JSON file to write the result to (optional)")
    parser.set_defaults(handler=_probe)


def _fit(args: argparse.Namespace) -> int:
    embeddings = load_embeddings(args.embeddings)
    vectors, meta = _normal_rows(embeddings, source=args.embeddings, exclude_anomalous=args.exclude_anomalous)
    detector = _new_detector(args)
    if args.method == "iae":
        length = DEFAULT_SEQUENCE_LENGTH if args.sequence_length is None else args.sequence_length
        windows = build_windows(vectors, meta, length)
        detector.fit(windows.sequences, windows.meta)
        described = f"{len(windows.meta)} sequences of {length} normal clips"
    else:
        detector.fit(vectors, meta)
        described = f"{len(meta)} normal clips"
    # Recorded so that `detect score` can refuse embeddings of another encoder with the same dimension.
    detector.embeddings_source_ = {
        field: embeddings.header.get(field) for field in ("encoder", "checkpoint", "modality")
    }
    detector.save(args.out)
    print(f"detector: {args.out} ({described}, threshold {detector.threshold_:.4g})")
    return 0


def _new_detector(args: argparse.Namespace) -> Detector:
    if args.sequence_length is not None and args.method != "iae":
        raise DetectInputError(f"--sequence-length applies to --method iae only, not {args.method}")
    if args.epochs is not None and args.method == "knn":
        raise DetectInputError("--epochs applies to --method iae and cnc only; knn has no training epochs")
    if args.calibration_rows is not None and args.method != "knn":
        raise DetectInputError(f"--calibration-rows applies to --method knn only, not {args.method}")
    if args.method == "knn":
        calibration = {} if args.calibration_rows is None else {"calibration_rows": args.calibration_rows}
        return KNNDetector(
            k=args.k,
            metric=args.metric,
            aggregate=args.aggregate,
            index=args.index,
            contamination=args.contamination,
            reference_quantile=args.reference_quantile,
            calibration_seed=args.seed,
            **calibration,
        )
    if args.method == "iae":
        epochs = {} if args.epochs is None else {"max_epochs": args.epochs}
        return IAEDetector(seed=args.seed, contamination=args.contamination, **epochs)
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    return CnCDetector(seed=args.seed, contamination=args.contamination, **epochs)


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
    if len(anomalous) == len(embeddings):
        raise DetectInputError(
            f"all {len(embeddings)} clips in {source} have anomalous frame labels, so no normal clip is left "
            "to fit on; fit on an embeddings folder of normal clips"
        )
    keep = np.setdiff1d(np.arange(len(embeddings)), anomalous)
    logger.warning("dropped %d clips with anomalous frame labels; fitting on %d", len(anomalous), keep.size)
    return np.asarray(embeddings.vectors[keep]), [embeddings.meta[index] for index in keep]


def _check_same_encoder(detector: Detector, embeddings: Embeddings, path: Path) -> None:
    """Refuse embeddings from another checkpoint or modality than the ones the detector was fitted on.

    Distances between embeddings of two encoders mean nothing, and a shared dimension would hide it.
    Folders without a recorded checkpoint (embeddings from other tools) are not compared.
    """
    fitted = getattr(detector, "embeddings_source_", None) or {}
    for field in ("checkpoint", "modality"):
        expected, found = fitted.get(field), embeddings.header.get(field)
        if expected is not None and found is not None and expected != found:
            raise DetectInputError(
                f"{path} contains embeddings of {field} {found!r}, but the model was fitted on embeddings of "
                f"{field} {expected!r}; embed with the same encoder, or pass --allow-other-encoder"
            )


def _score(args: argparse.Namespace) -> int:
    if args.method == "energy":
        if args.model is not None:
            raise DetectInputError("--method energy reads energy.npy and takes no --model; drop --model")
        rows, header = score_energy(load_embeddings(args.embeddings), embeddings_path=args.embeddings)
        write_scores(args.out, rows, header)
        print(f"scores: {args.out} ({len(rows)} clips scored by audio-shift energy, no alarm threshold)")
        return 0

    if args.model is None:
        raise DetectInputError("--model is required with --method detector (or use --method energy)")
    detector = load_detector(args.model)
    embeddings = load_embeddings(args.embeddings)
    if not args.allow_other_encoder:
        _check_same_encoder(detector, embeddings, args.embeddings)
    score_function = score_sequence_embeddings if detector.input_ndim == 3 else score_embeddings
    rows, header = score_function(
        detector, embeddings, model_path=args.model, embeddings_path=args.embeddings
    )
    write_scores(args.out, rows, header)
    threshold = finite_float(header.get("threshold"))
    alarms = sum(1 for row in rows if threshold is not None and row["score"] > threshold)
    print(f"scores: {args.out} ({len(rows)} clips, {alarms} above the alarm threshold)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if len(args.scores) > 1 and args.out is None:
        raise DetectInputError("--out is required when --scores names several folders")
    if len(set(path.resolve() for path in args.scores)) != len(args.scores):
        raise DetectInputError("--scores names the same folder twice; give each run's folder once")
    normal_labels = tuple(args.normal_labels or ("normal",))

    evaluations, headers = [], []
    for path in args.scores:
        scores = read_scores(path)
        evaluation = evaluate_scores(
            scores,
            smooth_sigma=args.smooth_sigma,
            normal_labels=normal_labels,
            normalise_per_video=args.normalise_per_video,
        )
        evaluation.metrics["scores"] = str(path.resolve())
        evaluation.metrics["seeds"] = recorded_seeds(scores.header)
        evaluations.append(evaluation)
        headers.append(scores.header)
    thresholds = [finite_float(header.get("threshold")) for header in headers]

    if len(evaluations) == 1:
        out = args.out or args.scores[0] / "evaluation"
        write_evaluation(out, evaluations[0], threshold=thresholds[0])
        print(format_table(evaluations[0].metrics))
    else:
        out = args.out
        combined = write_seed_evaluations(out, evaluations, args.scores, headers, thresholds=thresholds)
        print(format_seed_table(combined))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    train = load_embeddings(args.train)
    test = load_embeddings(args.test)
    if train.dimension != test.dimension:
        raise DetectInputError(
            f"{args.test} has dimension {test.dimension} but {args.train} has dimension {train.dimension}"
        )
    train_labels = read_labels(train.meta, field=args.label_field, source=str(args.train / "meta.jsonl"))
    test_labels = read_labels(test.meta, field=args.label_field, source=str(args.test / "meta.jsonl"))
    train_vectors, test_vectors = np.asarray(train.vectors), np.asarray(test.vectors)

    result: ProbeResult
    if args.method == "linear":
        result = linear_probe(train_vectors, train_labels, test_vectors, test_labels, seed=args.seed)
    else:
        result = knn_probe(
            train_vectors, train_labels, test_vectors, test_labels, k=args.k, temperature=args.temperature
        )

    print(
        f"{result.method} probe: top-1 {result.top1:.4f}, top-{result.top_k} {result.top5:.4f} "
        f"({result.test_count} test clips, {result.class_count} classes, {result.train_count} training clips)"
    )
    if args.out is not None:
        description = {
            **result.as_dict(),
            "train": str(args.train.resolve()),
            "test": str(args.test.resolve()),
            "label_field": args.label_field,
        }
        _write_json_atomically(args.out, description)
        print(f"result: {args.out}")
    return 0


def _write_json_atomically(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(value, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
