"""Score an embeddings folder with a fitted detector and build the rows and header of a scores folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from detect.base import Detector
from detect.embeddings import Embeddings
from detect.errors import DetectInputError
from detect.knn import KNNDetector

logger = logging.getLogger(__name__)


def score_embeddings(
    detector: Detector, embeddings: Embeddings, *, model_path: Path, embeddings_path: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the scores rows (in embeddings order) and the scores header for one embeddings folder.

    A clip whose key is a normal training key is scored without itself (leave-one-out), so scoring the
    training folder gives honest scores. For a kNN detector each row lists its k nearest normal neighbours.
    """
    check_dimension(detector, embeddings)

    keys = embeddings.keys
    neighbour_lists: list[list[dict[str, Any]]]
    if isinstance(detector, KNNDetector):
        exclude = detector.normal_ids_for_keys(keys)
        vectors = np.asarray(embeddings.vectors)  # (N, D)
        distances, ids = detector.kneighbors(vectors, exclude_self_ids=exclude)  # (N, k) each
        scores = detector.aggregate_distances(distances)
        normal_keys = [row["key"] for row in detector.normal_meta_]
        neighbour_lists = [
            [{"key": normal_keys[j], "distance": float(d)} for j, d in zip(row_ids, row_distances)]
            for row_ids, row_distances in zip(ids, distances)
        ]
        self_matches = int((exclude >= 0).sum())
        if self_matches:
            logger.info("%d clips are normal training clips and were scored without themselves", self_matches)
    else:
        scores = detector.score(np.asarray(embeddings.vectors), keys=keys)
        neighbour_lists = [[] for _ in keys]

    rows = score_rows(embeddings.meta, scores, neighbour_lists)
    header = scores_header(detector, embeddings, model_path=model_path, embeddings_path=embeddings_path)
    if isinstance(detector, KNNDetector):
        header["nearest_distance_reference"] = detector.nearest_distance_reference_
        header["reference_quantile"] = detector.reference_quantile
    return rows, header


def check_dimension(detector: Detector, embeddings: Embeddings) -> None:
    """Raise `DetectInputError` naming both dimensions when the embeddings do not fit the detector."""
    if embeddings.dimension != detector.dimension_:
        raise DetectInputError(
            f"embeddings have dimension {embeddings.dimension} "
            f"but the model was fitted on {detector.dimension_}"
        )


def score_rows(
    meta: list[dict[str, Any]], scores: np.ndarray, neighbour_lists: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Build one scores row per item: key, score and neighbours first, then the item's metadata fields."""
    rows = []
    for item_meta, score, neighbours in zip(meta, scores, neighbour_lists):
        row = {"key": item_meta["key"], "score": float(score), "neighbours": neighbours}
        row.update((field, value) for field, value in item_meta.items() if field not in row)
        rows.append(row)
    return rows


def scores_header(
    detector: Detector, embeddings: Embeddings, *, model_path: Path, embeddings_path: Path
) -> dict[str, Any]:
    """Build the scores header fields that every detector writes."""
    return {
        "detector": detector.name,
        "model": str(model_path.resolve()),
        "embeddings": str(embeddings_path.resolve()),
        "dimension": detector.dimension_,
        "settings": detector.settings(),
        "threshold": detector.threshold_,
        "normal_count": len(detector.normal_meta_),
        "embeddings_header": embeddings.header,
    }
