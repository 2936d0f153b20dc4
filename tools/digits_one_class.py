"""One-class benchmark of latentwatch's detectors on scikit-learn's handwritten digits (real 8x8 images).

Protocol: each digit in turn is the normal class. Its images are split at random (seeded) into 70% for
fitting and 30% for testing. The test set is those 30% plus every image of the other nine digits, which are
the anomalies. Pixels are scaled to [0, 1]. Each detector is fitted on the normal 70% only and the AUROC of
its scores on the test set is reported, per digit and as mean and standard deviation over digits.

Representations: `raw` (the 64 pixels) and `pca32` (PCA to 32 dimensions, fitted on the normal training
split only). Detectors: kNN (k = 5, Euclidean, mean distance), IAE on the 8 image rows as a sequence of 8
segments of 8 pixels, and CnC on the whole vector. IAE needs a sequence axis, which a whole-image PCA does not
have, so IAE runs on `raw` only. The table shows each detector's default score (kNN mean distance, IAE
`mae_i`, CnC `combined`); the JSON file has every score of IAE and CnC, and no score is picked on test labels.

    .venv/bin/python tools/digits_one_class.py --out digits_one_class.json

All ten digits took 50 to 85 s on a 2-core CPU machine shared with other jobs (seed 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from detect.cnc import CnCDetector
from detect.iae import IAEDetector
from detect.knn import KNNDetector
from detect.metrics import auroc

logger = logging.getLogger(__name__)

TRAIN_FRACTION = 0.7
PCA_DIMENSION = 32
DEFAULT_SCORES = {"knn": "mean_distance", "iae": "mae_i", "cnc": "combined"}


def split_digit(labels: np.ndarray, digit: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (normal training rows, test rows, test labels with 1 = anomaly) for one normal digit."""
    rng = np.random.default_rng(seed + digit)
    normal = rng.permutation(np.flatnonzero(labels == digit))
    cut = int(round(TRAIN_FRACTION * normal.size))
    train, normal_test = normal[:cut], normal[cut:]
    anomalies = np.flatnonzero(labels != digit)
    test = np.concatenate([normal_test, anomalies])
    return train, test, np.r_[np.zeros(normal_test.size), np.ones(anomalies.size)]


def score_detectors(
    train: np.ndarray, test: np.ndarray, *, sequences: bool, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Fit every detector on `train` (M, 64 or 32) and return, per detector, all its scores of `test`."""
    scores: dict[str, dict[str, np.ndarray]] = {}
    knn = KNNDetector(k=5, metric="l2").fit(train)
    scores["knn"] = {"mean_distance": knn.score(test)}
    if sequences:
        iae = IAEDetector(seed=seed).fit(train.reshape(-1, 8, 8))  # image rows as 8 segments of 8 pixels
        scores["iae"] = iae.score_all(test.reshape(-1, 8, 8))
    cnc = CnCDetector(seed=seed).fit(train)
    scores["cnc"] = cnc.score_all(test)
    return scores


def run_protocol(seed: int, digits: list[int]) -> dict[str, Any]:
    """Run the one-class protocol and return AUROC per representation, detector, score and digit."""
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32)  # (1797, 64), pixels in [0, 1]

    per_digit: dict[str, dict[str, dict[str, dict[int, float]]]] = {"raw": {}, "pca32": {}}
    for digit in digits:
        train_rows, test_rows, test_labels = split_digit(labels, digit, seed)
        train, test = images[train_rows], images[test_rows]
        pca = PCA(n_components=PCA_DIMENSION, random_state=seed).fit(train)
        representations = {
            "raw": (train, test, True),
            "pca32": (pca.transform(train).astype(np.float32), pca.transform(test).astype(np.float32), False),
        }
        for name, (train_vectors, test_vectors, sequences) in representations.items():
            all_scores = score_detectors(train_vectors, test_vectors, sequences=sequences, seed=seed)
            for detector, scores in all_scores.items():
                for score_name, values in scores.items():
                    per_detector = per_digit[name].setdefault(detector, {})
                    per_detector.setdefault(score_name, {})[digit] = auroc(test_labels, values)
        logger.info("digit %d done", digit)

    results: dict[str, Any] = {}
    for name, detectors in per_digit.items():
        results[name] = {}
        for detector, score_names in detectors.items():
            results[name][detector] = {
                score_name: {
                    "per_digit": {str(digit): value for digit, value in values.items()},
                    "mean": float(np.mean(list(values.values()))),
                    "std": float(np.std(list(values.values()))),
                }
                for score_name, values in score_names.items()
            }
    return results


def format_table(results: dict[str, Any]) -> str:
    """Mean and standard deviation of AUROC over digits, for each detector's default score."""
    lines = [f"{'representation':<16}{'detector':<10}{'score':<16}{'AUROC mean':>12}{'std':>8}"]
    for name, detectors in results.items():
        for detector, score_names in detectors.items():
            score_name = DEFAULT_SCORES[detector]
            summary = score_names[score_name]
            lines.append(
                f"{name:<16}{detector:<10}{score_name:<16}{summary['mean']:>12.4f}{summary['std']:>8.4f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("digits_one_class.json"),
                        help="JSON file to write (default: digits_one_class.json)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the splits and the networks (default: 0)")
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)),
                        help="normal digits to run, each in 0-9 (default: all ten)")
    args = parser.parse_args(argv)
    if any(digit not in range(10) for digit in args.digits):
        parser.error(f"--digits must be in 0-9, got {args.digits}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # These networks are tiny: on a shared 2-core machine extra intra-op threads only wait for each other.
    torch.set_num_threads(1)

    started = time.perf_counter()
    results = run_protocol(args.seed, sorted(set(args.digits)))
    elapsed = time.perf_counter() - started
    print(format_table(results))

    report = {
        "protocol": (
            f"one-class on sklearn load_digits: each digit normal in turn, {TRAIN_FRACTION:.0%} of its "
            "images to fit, the rest plus all other digits (anomalies) to test; pixels scaled to [0, 1]; "
            "pca32 is fitted on the normal training split; IAE takes the 8 image rows as 8 segments of 8 "
            "pixels"
        ),
        "seed": args.seed,
        "digits": sorted(set(args.digits)),
        "default_scores": DEFAULT_SCORES,
        "results": results,
        "runtime_s": round(elapsed, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.partial")
    temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, args.out)
    print(f"results: {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
