"""kNN detector: exactness against brute force, self-match exclusion, separation, save and load."""

import json

import numpy as np
import pytest

from detect.base import load_detector
from detect.errors import DetectInputError
import detect.knn as knn_module
from detect.knn import KNNDetector
from detect.metrics import auroc


def _brute_force_distances(queries, normal, metric):
    queries, normal = queries.astype(np.float64), normal.astype(np.float64)
    if metric == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        normal = normal / np.linalg.norm(normal, axis=1, keepdims=True)
        return 1.0 - queries @ normal.T  # (M, N)
    return np.sqrt(((queries[:, None, :] - normal[None, :, :]) ** 2).sum(axis=2))


def _aggregate(sorted_distances, aggregate):
    return sorted_distances.mean(axis=1) if aggregate == "mean" else sorted_distances[:, -1]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("aggregate", ["mean", "max", "kth"])
def test_scores_match_brute_force(metric, aggregate):
    rng = np.random.default_rng(1)
    normal = rng.normal(size=(60, 12)).astype(np.float32)
    queries = rng.normal(size=(25, 12)).astype(np.float32)
    detector = KNNDetector(k=4, metric=metric, aggregate=aggregate, batch_size=7).fit(normal)

    all_distances = _brute_force_distances(queries, normal, metric)
    expected_distances = np.sort(all_distances, axis=1)[:, :4]
    distances, ids = detector.kneighbors(queries)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(all_distances, ids, axis=1), distances, atol=1e-5)
    np.testing.assert_allclose(detector.score(queries), _aggregate(expected_distances, aggregate), atol=1e-5)

    # Leave-one-out training scores: the diagonal (each row against itself) is excluded.
    training = _brute_force_distances(normal, normal, metric)
    np.fill_diagonal(training, np.inf)
    expected_training = _aggregate(np.sort(training, axis=1)[:, :4], aggregate)
    np.testing.assert_allclose(detector.train_scores_, expected_training, atol=1e-5)
    assert detector.threshold_ == pytest.approx(np.quantile(expected_training, 0.9), abs=1e-5)


def test_self_match_excluded_with_duplicates():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(10, 6)).astype(np.float32)
    normal = np.concatenate([base, base[:3], base[:3]])  # rows 0-2 appear three times each
    detector = KNNDetector(k=2, metric="l2").fit(normal)

    distances, ids = detector.kneighbors(normal, exclude_self_ids=np.arange(len(normal)))
    assert not (ids == np.arange(len(normal))[:, None]).any(), "a row matched itself"
    # A row with two duplicates has its two copies at distance 0 as neighbours, never itself.
    for copies in ({0, 10, 13}, {1, 11, 14}, {2, 12, 15}):
        for row in copies:
            assert distances[row].tolist() == [0.0, 0.0]
            assert set(ids[row].tolist()) == copies - {row}
    for row in range(3, 10):
        assert distances[row, 0] > 0

    # Scoring the normal rows by key gives the leave-one-out scores; without keys they match themselves.
    keys = [row["key"] for row in detector.normal_meta_]
    np.testing.assert_allclose(detector.score(normal, keys=keys), detector.train_scores_)
    assert detector.score(normal)[5] == pytest.approx(np.sort(np.linalg.norm(normal - normal[5], axis=1))[:2].mean())


def test_self_exclusion_finds_other_copies():
    # Three identical rows: each must be matched to the other two, at distance 0.
    normal = np.concatenate([np.ones((3, 4)), np.random.default_rng(3).normal(size=(5, 4)) + 5]).astype(np.float32)
    detector = KNNDetector(k=2, metric="l2").fit(normal)
    distances, ids = detector.kneighbors(normal[:3], exclude_self_ids=np.arange(3))
    for row in range(3):
        assert sorted(ids[row].tolist()) == sorted({0, 1, 2} - {row})
        assert distances[row].tolist() == [0.0, 0.0]


def test_planted_anomaly_is_separated():
    rng = np.random.default_rng(4)
    # Embeddings of one kind of clip sit away from the origin, so cosine and L2 both see the shift.
    centre = np.zeros(16)
    centre[0] = 10.0
    shift = np.zeros(16)
    shift[1:4] = 4.0
    normal = (centre + rng.normal(size=(400, 16))).astype(np.float32)
    test_normal = (centre + rng.normal(size=(100, 16))).astype(np.float32)
    anomalies = (centre + shift + rng.normal(size=(30, 16))).astype(np.float32)
    queries = np.concatenate([test_normal, anomalies])
    labels = np.r_[np.zeros(100), np.ones(30)]
    for metric in ("cosine", "l2"):
        detector = KNNDetector(k=5, metric=metric).fit(normal)
        assert auroc(labels, detector.score(queries)) >= 0.95, metric
        predictions = detector.predict(queries)
        assert predictions[100:].mean() > 0.9
        assert predictions[:100].mean() < 0.3


def test_save_load_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(5)
    normal = rng.normal(size=(40, 8)).astype(np.float32)
    meta = [{"key": f"n-{i}", "source_name": "walk.mp4"} for i in range(40)]
    detector = KNNDetector(k=3, metric="l2", aggregate="max", contamination=0.05).fit(normal, meta)
    folder = detector.save(tmp_path / "model")

    names = sorted(path.name for path in folder.iterdir())
    assert names == ["detector.json", "meta.jsonl", "normal_vectors.npy", "train_scores.npy"]
    for path in folder.glob("*.npy"):
        assert path.read_bytes()[:6] == b"\x93NUMPY"
        assert np.load(path, allow_pickle=False).dtype != object
    json.loads((folder / "detector.json").read_text())
    for line in (folder / "meta.jsonl").read_text().splitlines():
        json.loads(line)

    loaded = load_detector(folder)
    assert isinstance(loaded, KNNDetector)
    assert loaded.settings() == detector.settings()
    assert loaded.threshold_ == detector.threshold_
    assert loaded.nearest_distance_reference_ == detector.nearest_distance_reference_
    assert loaded.normal_meta_ == meta
    queries = rng.normal(size=(9, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.score(queries), detector.score(queries))
    np.testing.assert_array_equal(KNNDetector.load(folder).predict(queries), detector.predict(queries))


def _saved_model(tmp_path):
    normal = np.random.default_rng(6).normal(size=(20, 4)).astype(np.float32)
    return KNNDetector(k=2).fit(normal).save(tmp_path / "model")


def test_loading_another_detector_fails(tmp_path):
    folder = _saved_model(tmp_path)
    description = json.loads((folder / "detector.json").read_text())
    description["detector"] = "iae"
    (folder / "detector.json").write_text(json.dumps(description))
    with pytest.raises(DetectInputError, match="unknown detector 'iae'"):
        load_detector(folder)


def test_loading_other_version_fails(tmp_path):
    folder = _saved_model(tmp_path)
    description = json.loads((folder / "detector.json").read_text())
    description["format_version"] = 2
    (folder / "detector.json").write_text(json.dumps(description))
    with pytest.raises(DetectInputError, match="format_version 2"):
        KNNDetector.load(folder)


def test_loading_with_missing_file_fails(tmp_path):
    folder = _saved_model(tmp_path)
    (folder / "normal_vectors.npy").unlink()
    with pytest.raises(DetectInputError, match="missing normal_vectors.npy"):
        load_detector(folder)


def test_pickled_array_is_rejected(tmp_path):
    folder = _saved_model(tmp_path)
    np.save(folder / "train_scores.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    with pytest.raises(DetectInputError, match="without pickle"):
        load_detector(folder)


def test_score_before_fit_fails():
    with pytest.raises(DetectInputError, match="not fitted"):
        KNNDetector().score(np.ones((2, 3), np.float32))


def test_dimension_mismatch_fails():
    detector = KNNDetector(k=2).fit(np.random.default_rng(7).normal(size=(10, 8)).astype(np.float32))
    with pytest.raises(DetectInputError, match="dimension 4 but the model was fitted on 8"):
        detector.score(np.ones((2, 4), np.float32))


def test_k_larger_than_normal_set_fails():
    with pytest.raises(DetectInputError, match="k=5 needs at least 6 normal clips"):
        KNNDetector(k=5).fit(np.random.default_rng(8).normal(size=(5, 3)).astype(np.float32))


def test_invalid_settings_fail():
    with pytest.raises(DetectInputError, match="metric must be one of"):
        KNNDetector(metric="manhattan")
    with pytest.raises(DetectInputError, match="contamination"):
        KNNDetector(contamination=0.9)
    with pytest.raises(DetectInputError, match="all-zero"):
        KNNDetector(k=1).fit(np.zeros((3, 2), np.float32))


def test_hnsw_matches_exact_search():
    rng = np.random.default_rng(9)
    normal = rng.normal(size=(200, 8)).astype(np.float32)
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    exact = KNNDetector(k=3, metric="l2").fit(normal)
    approximate = KNNDetector(k=3, metric="l2", index="hnsw").fit(normal)
    np.testing.assert_allclose(approximate.score(queries), exact.score(queries), atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_memory_mapped_float16_rows_not_copied(tmp_path, monkeypatch, metric):
    rng = np.random.default_rng(8)
    path = tmp_path / "rows.npy"
    np.save(path, rng.normal(size=(300, 16)).astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    queries = rng.normal(size=(40, 16)).astype(np.float16)

    # Blocks of 7 rows make the exact search merge hits across many blocks of normal rows.
    monkeypatch.setattr(knn_module, "_BLOCK_BYTES", 7 * 4 * 16)
    detector = KNNDetector(k=4, metric=metric, batch_size=16).fit(mapped)
    assert detector.block_rows_ == 7
    assert np.shares_memory(detector.normal_vectors_, mapped), "the normal rows were copied"
    assert detector.normal_vectors_.dtype == np.float16

    reference = KNNDetector(k=4, metric=metric).fit(np.asarray(mapped, dtype=np.float64))
    np.testing.assert_allclose(detector.train_scores_, reference.train_scores_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(detector.score(queries), reference.score(queries.astype(np.float64)), rtol=0, atol=1e-9)

    # The saved rows are the rows as given, and a loaded detector scores the same.
    detector.save(tmp_path / "model")
    loaded = load_detector(tmp_path / "model")
    np.testing.assert_array_equal(np.load(tmp_path / "model" / "normal_vectors.npy"), np.asarray(mapped))
    np.testing.assert_allclose(loaded.score(queries), reference.score(queries.astype(np.float64)), rtol=0, atol=1e-9)


def test_calibration_subset_is_exact_and_seeded(tmp_path):
    rng = np.random.default_rng(10)
    normal = rng.normal(size=(300, 8)).astype(np.float32)
    detector = KNNDetector(k=3, metric="l2", calibration_rows=40, calibration_seed=2).fit(normal)

    ids = detector.calibration_ids_
    assert ids.shape == (40,)
    assert np.all(np.diff(ids) > 0)
    assert 0 <= ids[0]
    assert ids[-1] < 300
    same_seed = KNNDetector(k=3, metric="l2", calibration_rows=40, calibration_seed=2).fit(normal)
    other_seed = KNNDetector(k=3, metric="l2", calibration_rows=40, calibration_seed=3).fit(normal)
    np.testing.assert_array_equal(same_seed.calibration_ids_, ids)
    assert not np.array_equal(other_seed.calibration_ids_, ids)

    # Each subset row is scored leave-one-out against all 300 normal rows, not only the subset.
    training = _brute_force_distances(normal[ids], normal, "l2")  # (40, 300)
    training[np.arange(40), ids] = np.inf
    nearest = np.sort(training, axis=1)
    np.testing.assert_allclose(detector.train_scores_, nearest[:, :3].mean(axis=1), atol=1e-5)
    assert detector.threshold_ == pytest.approx(np.quantile(nearest[:, :3].mean(axis=1), 0.9), abs=1e-5)
    assert detector.nearest_distance_reference_ == pytest.approx(np.quantile(nearest[:, 0], 0.99), abs=1e-5)
    keys = [detector.normal_meta_[index]["key"] for index in ids]
    np.testing.assert_allclose(detector.score(normal[ids], keys=keys), detector.train_scores_, atol=1e-9)

    # The subset is saved and restored with the detector.
    folder = detector.save(tmp_path / "model")
    assert json.loads((folder / "detector.json").read_text())["fitted"]["train_score_count"] == 40
    loaded = load_detector(folder)
    np.testing.assert_array_equal(loaded.calibration_ids_, ids)
    np.testing.assert_array_equal(loaded.train_scores_, detector.train_scores_)
    assert loaded.settings() == detector.settings()


@pytest.mark.parametrize("calibration_rows", [0, 300, 1000])
def test_calibration_uses_every_row_when_not_smaller(tmp_path, calibration_rows):
    normal = np.random.default_rng(11).normal(size=(300, 8)).astype(np.float32)
    detector = KNNDetector(k=3, metric="l2", calibration_rows=calibration_rows).fit(normal)
    assert detector.calibration_ids_ is None
    assert detector.train_scores_.shape == (300,)
    folder = detector.save(tmp_path / "model")
    assert not (folder / "calibration_ids.npy").exists()
    assert load_detector(folder).calibration_ids_ is None


def test_refit_without_subset_clears_calibration_ids():
    rng = np.random.default_rng(12)
    detector = KNNDetector(k=2, metric="l2", calibration_rows=10).fit(rng.normal(size=(50, 4)).astype(np.float32))
    assert detector.calibration_ids_ is not None
    detector.fit(rng.normal(size=(8, 4)).astype(np.float32))
    assert detector.calibration_ids_ is None
    assert detector.train_scores_.shape == (8,)


@pytest.mark.parametrize("value", [-1, 2.5, True, "100"])
def test_invalid_calibration_rows_fail(value):
    with pytest.raises(DetectInputError, match="calibration_rows must be an integer >= 0"):
        KNNDetector(calibration_rows=value)


def test_corrupt_calibration_ids_fail_to_load(tmp_path):
    normal = np.random.default_rng(13).normal(size=(60, 4)).astype(np.float32)
    folder = KNNDetector(k=2, calibration_rows=20).fit(normal).save(tmp_path / "model")
    ids = np.load(folder / "calibration_ids.npy")

    np.save(folder / "calibration_ids.npy", ids[::-1].copy())
    with pytest.raises(DetectInputError, match="distinct normal-row ids in ascending order"):
        load_detector(folder)
    np.save(folder / "calibration_ids.npy", np.r_[ids[:-1], 60])
    with pytest.raises(DetectInputError, match=r"each in \[0, 60\)"):
        load_detector(folder)
    np.save(folder / "calibration_ids.npy", ids[:-1])
    with pytest.raises(DetectInputError, match="one per row of calibration_ids.npy"):
        load_detector(folder)
    np.save(folder / "calibration_ids.npy", ids.astype(np.float64))
    with pytest.raises(DetectInputError, match="1-D integer array"):
        load_detector(folder)


def test_gpu_search_when_gpu_visible(monkeypatch):
    """faiss-gpu builds expose knn_gpu; with a GPU visible, the exact search must go through it."""
    import faiss

    calls = []

    def fake_knn_gpu(resources, queries, block, count, metric):
        calls.append((resources, queries.shape, block.shape, count))
        return faiss.knn(queries, block, count, metric=metric)

    monkeypatch.setattr(faiss, "knn_gpu", fake_knn_gpu, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
    monkeypatch.setattr(knn_module, "_GPU_RESOURCES", [])
    rng = np.random.default_rng(0)
    normal, queries = rng.normal(size=(200, 8)), rng.normal(size=(10, 8))

    on_gpu = KNNDetector(k=3, metric="l2").fit(normal).score(queries)

    assert calls and all(call[0] == "resources" for call in calls)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    calls.clear()
    on_cpu = KNNDetector(k=3, metric="l2").fit(normal).score(queries)
    assert calls == []
    np.testing.assert_allclose(on_gpu, on_cpu)
