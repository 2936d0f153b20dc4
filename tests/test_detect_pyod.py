"""The kNN detector gives PyOD's `KNN` scores (PyOD 3.6.7, a test-only dependency) on the same data and settings.

PyOD's training scores (`decision_scores_`) leave each row out, as ours do; its `decision_function` lets a
training row match itself, as our `score` does when no keys are given. Its "largest" method is our "max"
and "kth"; its "mean" is our "mean". PyOD's L2 is Minkowski with p = 2. Every comparison of training scores
sets `calibration_rows=0`, so that every normal row gets a training score, except the one that checks a subset.
"""

import numpy as np
import pytest
from pyod.models.knn import KNN

from detect.knn import KNNDetector

PYOD_METHOD = {"mean": "mean", "max": "largest", "kth": "largest"}


def _data(seed: int, *, float32_values: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(300, 24))
    queries = np.concatenate([rng.normal(size=(80, 24)), rng.normal(loc=1.5, size=(20, 24))])
    if float32_values:
        normal = normal.astype(np.float32).astype(np.float64)
        queries = queries.astype(np.float32).astype(np.float64)
    return normal, queries


@pytest.mark.parametrize("aggregate", ["mean", "max", "kth"])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_knn_equals_pyod_float64(aggregate, k):
    # float64 data are kept as float64, so both sides compute the same float64 distances.
    normal, queries = _data(k, float32_values=False)
    ours = KNNDetector(k=k, metric="l2", aggregate=aggregate, batch_size=37, calibration_rows=0).fit(normal)
    theirs = KNN(n_neighbors=k, method=PYOD_METHOD[aggregate]).fit(normal)

    np.testing.assert_allclose(ours.train_scores_, theirs.decision_scores_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.decision_function(queries), theirs.decision_function(queries), rtol=0, atol=1e-5)

    # Training rows scored without keys match themselves in both libraries.
    np.testing.assert_allclose(ours.decision_function(normal[:50]), theirs.decision_function(normal[:50]),
                               rtol=0, atol=1e-5)


def test_knn_equals_pyod_float32_input():
    # float32 rows (as embeddings are stored) give the same float64 distances as PyOD on the same values.
    normal, queries = _data(7, float32_values=True)
    ours = KNNDetector(k=5, metric="l2", aggregate="mean", calibration_rows=0).fit(normal.astype(np.float32))
    theirs = KNN(n_neighbors=5, method="mean").fit(normal)

    np.testing.assert_allclose(ours.train_scores_, theirs.decision_scores_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.score(queries.astype(np.float32)), theirs.decision_function(queries),
                               rtol=0, atol=1e-9)


def test_training_scores_by_key_equal_pyod_leave_one_out():
    normal, _ = _data(3, float32_values=False)
    ours = KNNDetector(k=4, metric="l2", aggregate="max", calibration_rows=0).fit(normal)
    theirs = KNN(n_neighbors=4, method="largest").fit(normal)
    keys = [row["key"] for row in ours.normal_meta_]

    np.testing.assert_allclose(ours.score(normal, keys=keys), theirs.decision_scores_, rtol=0, atol=1e-5)


def test_knn_equals_pyod_with_duplicate_rows():
    # Duplicates tie at distance 0; the chosen neighbours may differ, the sorted distances may not.
    normal, queries = _data(5, float32_values=False)
    normal = np.concatenate([normal, normal[:40], normal[:10]])
    ours = KNNDetector(k=3, metric="l2", aggregate="mean", calibration_rows=0).fit(normal)
    theirs = KNN(n_neighbors=3, method="mean").fit(normal)

    np.testing.assert_allclose(ours.train_scores_, theirs.decision_scores_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.decision_function(queries), theirs.decision_function(queries), rtol=0, atol=1e-5)


def test_cosine_equals_pyod_l2_on_unit_rows():
    # On unit-length rows, 1 - cos(a, b) = ||a - b||^2 / 2, so PyOD's "largest" L2 score maps onto ours.
    normal, queries = _data(11, float32_values=False)
    ours = KNNDetector(k=5, metric="cosine", aggregate="kth", calibration_rows=0).fit(normal)
    unit_normal = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    theirs = KNN(n_neighbors=5, method="largest").fit(unit_normal)

    np.testing.assert_allclose(ours.train_scores_, theirs.decision_scores_**2 / 2, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.score(queries), theirs.decision_function(unit_queries) ** 2 / 2,
                               rtol=0, atol=1e-5)


def test_calibration_subset_equals_pyod_on_those_rows():
    # A calibration subset scores its rows exactly as PyOD scores them against all normal rows.
    normal, queries = _data(13, float32_values=False)
    ours = KNNDetector(k=5, metric="l2", aggregate="mean", calibration_rows=70, calibration_seed=4).fit(normal)
    theirs = KNN(n_neighbors=5, method="mean").fit(normal)

    assert ours.calibration_ids_.shape == (70,)
    np.testing.assert_allclose(ours.train_scores_, theirs.decision_scores_[ours.calibration_ids_], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.decision_function(queries), theirs.decision_function(queries), rtol=0, atol=1e-5)
