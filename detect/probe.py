"""Probes of a frozen representation: how well do clip labels follow from the embeddings alone?

Two standard protocols, both fitted on a labelled training embeddings folder and measured on a test folder:
- linear: multinomial logistic regression (scikit-learn) on embeddings standardised with the training
  set's mean and standard deviation;
- kNN as in DINO (Caron et al., 2021): the k = 20 training embeddings of highest cosine similarity vote for
  their labels with weight exp(similarity / 0.07), and classes are ranked by their summed votes.
Both report top-1 and top-5 accuracy. With fewer than 5 classes, top-5 counts the top `classes` guesses and
is then trivially 1.0; `top_k` in the result is the number of guesses counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from detect.errors import DetectInputError

logger = logging.getLogger(__name__)

METHODS = ("linear", "knn")
TOP_K = 5

# Test rows per similarity matrix in the kNN probe; memory is this times the training count, in float32.
_KNN_BATCH = 1024


@dataclass
class ProbeResult:
    """Accuracy of one probe on one test set."""

    method: str
    top1: float
    top5: float
    top_k: int  # guesses counted for `top5`: min(5, number of training classes)
    train_count: int
    test_count: int
    class_count: int
    unseen_test_labels: int  # test rows whose label never occurs in training; always counted as wrong
    settings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_labels(meta: Sequence[dict[str, Any]], *, field: str, source: str) -> list[str]:
    """Return the `field` value of every metadata row as a string; any missing or null value is an error."""
    labels: list[str] = []
    missing: list[int] = []
    for index, row in enumerate(meta):
        value = row.get(field)
        if value is None or isinstance(value, (dict, list)) or value == "":
            missing.append(index)
        else:
            labels.append(str(value))
    if missing:
        first = meta[missing[0]].get("key", f"row {missing[0]}")
        raise DetectInputError(
            f"{source} has {len(missing)} of {len(meta)} rows without a label in field {field!r} "
            f"(first: {first}); a probe needs a label on every clip, so set it in meta.jsonl or choose "
            "another field with --label-field"
        )
    return labels


def linear_probe(
    train_vectors: np.ndarray,
    train_labels: Sequence[str],
    test_vectors: np.ndarray,
    test_labels: Sequence[str],
    *,
    seed: int = 0,
    max_iter: int = 2000,
) -> ProbeResult:
    """Fit logistic regression on standardised training embeddings and measure top-1/top-5 on the test set."""
    train_vectors, test_vectors, classes = _check_inputs(
        train_vectors, train_labels, test_vectors, test_labels
    )
    scaler = StandardScaler().fit(train_vectors)
    model = LogisticRegression(max_iter=max_iter, random_state=seed)
    model.fit(scaler.transform(train_vectors), np.asarray(train_labels))
    probabilities = model.predict_proba(scaler.transform(test_vectors))  # (M, C), columns in model.classes_
    return _result(
        "linear", probabilities, list(model.classes_), train_labels, test_labels,
        settings={"seed": seed, "max_iter": max_iter},
    )


def knn_probe(
    train_vectors: np.ndarray,
    train_labels: Sequence[str],
    test_vectors: np.ndarray,
    test_labels: Sequence[str],
    *,
    k: int = 20,
    temperature: float = 0.07,
) -> ProbeResult:
    """Classify test rows by a weighted kNN vote on cosine similarity, as DINO does; top-1/top-5 accuracy."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DetectInputError(f"k must be a positive integer, got {k!r}")
    if not temperature > 0:
        raise DetectInputError(f"temperature must be > 0, got {temperature}")
    train_vectors, test_vectors, classes = _check_inputs(
        train_vectors, train_labels, test_vectors, test_labels
    )
    k = min(k, train_vectors.shape[0])

    train_unit = _unit_rows(train_vectors, source="training embeddings")  # (N, D)
    test_unit = _unit_rows(test_vectors, source="test embeddings")  # (M, D)
    class_index = {label: index for index, label in enumerate(classes)}
    train_classes = np.array([class_index[label] for label in train_labels])  # (N,)

    votes = np.zeros((test_unit.shape[0], len(classes)), dtype=np.float64)  # (M, C)
    for start in range(0, test_unit.shape[0], _KNN_BATCH):
        similarity = test_unit[start : start + _KNN_BATCH] @ train_unit.T  # (B, N)
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # (B, k), unordered
        nearest_similarity = np.take_along_axis(similarity, nearest, axis=1).astype(np.float64)  # (B, k)
        weights = np.exp(nearest_similarity / temperature)  # (B, k); similarity <= 1 keeps this finite
        rows = np.repeat(np.arange(nearest.shape[0]), k)
        np.add.at(votes[start : start + _KNN_BATCH], (rows, train_classes[nearest].ravel()), weights.ravel())
    return _result(
        "knn", votes, classes, train_labels, test_labels, settings={"k": k, "temperature": temperature}
    )


def _check_inputs(
    train_vectors: np.ndarray,
    train_labels: Sequence[str],
    test_vectors: np.ndarray,
    test_labels: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    train_vectors = np.asarray(train_vectors, dtype=np.float32)
    test_vectors = np.asarray(test_vectors, dtype=np.float32)
    sets = (("training", train_vectors, train_labels), ("test", test_vectors, test_labels))
    for name, vectors, labels in sets:
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise DetectInputError(f"{name} embeddings must be a non-empty 2-D array, got {vectors.shape}")
        if len(labels) != vectors.shape[0]:
            raise DetectInputError(f"{name} set has {vectors.shape[0]} embeddings but {len(labels)} labels")
        if not np.isfinite(vectors).all():
            raise DetectInputError(f"{name} embeddings contain NaN or infinity")
    if train_vectors.shape[1] != test_vectors.shape[1]:
        raise DetectInputError(
            f"test embeddings have dimension {test_vectors.shape[1]} but training embeddings have "
            f"{train_vectors.shape[1]}"
        )
    classes = sorted(set(train_labels))
    if len(classes) < 2:
        raise DetectInputError(f"a probe needs at least 2 classes in the training set, found {classes}")
    return train_vectors, test_vectors, classes


def _unit_rows(vectors: np.ndarray, *, source: str) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    if (norms == 0).any():
        raise DetectInputError(f"{source} have all-zero rows, which have no direction for cosine similarity")
    return (vectors / norms).astype(np.float32)


def _result(
    method: str,
    class_scores: np.ndarray,
    classes: list[str],
    train_labels: Sequence[str],
    test_labels: Sequence[str],
    *,
    settings: dict[str, Any],
) -> ProbeResult:
    """Accuracy from class scores (M, C): higher = more likely, columns in the order of `classes`."""
    top_k = min(TOP_K, len(classes))
    # Stable sort on negated scores: ties go to the class that sorts first, the same on every run.
    ranking = np.argsort(-class_scores, axis=1, kind="stable")[:, :top_k]  # (M, top_k)
    class_index = {label: index for index, label in enumerate(classes)}
    truth = np.array([class_index.get(label, -1) for label in test_labels])  # (M,), -1 = never seen
    unseen = int((truth < 0).sum())
    if unseen:
        logger.warning("%d test rows have labels absent from the training set; they count as wrong", unseen)

    return ProbeResult(
        method=method,
        top1=float((ranking[:, 0] == truth).mean()),
        top5=float((ranking == truth[:, None]).any(axis=1).mean()),
        top_k=top_k,
        train_count=len(train_labels),
        test_count=len(test_labels),
        class_count=len(classes),
        unseen_test_labels=unseen,
        settings=settings,
    )
