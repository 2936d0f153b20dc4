"""IAE detector: planted sequence anomalies, training, save and load, input errors."""

import argparse
import json

import numpy as np
import pytest
import torch

from detect.base import load_detector
from detect.cli import register
from detect.embeddings import save_embeddings
from detect.errors import DetectInputError
from detect.iae import SCORE_NAMES, IAEDetector, distance_to_segment, interpolated_codes
from detect.metrics import auroc
from detect.sequences import build_windows

LENGTH = 8
DIMENSION = 16


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the tiny networks on one thread: on a shared 2-core machine, more threads only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def smooth_sequences(count: int, seed: int) -> np.ndarray:
    """Make normal sequences (M, N, D): a point moving at steady speed in 3-D, mapped nonlinearly to D."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(size=(3, DIMENSION)) / np.sqrt(3)
    start = rng.normal(scale=0.5, size=(count, 1, 3))
    direction = rng.normal(size=(count, 1, 3))
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    velocity = direction * rng.uniform(0.4, 0.8, size=(count, 1, 1))
    curvature = rng.normal(scale=0.01, size=(count, 1, 3))
    steps = np.arange(LENGTH)[None, :, None]
    path = start + velocity * steps + curvature * steps**2  # (M, N, 3)
    noise = rng.normal(scale=0.02, size=(count, LENGTH, DIMENSION))
    return (np.tanh(path @ mixing) + noise).astype(np.float32)


def out_of_order(sequences: np.ndarray, seed: int) -> np.ndarray:
    """Swap one middle segment with the segment half a sequence away."""
    rng = np.random.default_rng(seed)
    planted = sequences.copy()
    for row in planted:
        first = int(rng.integers(1, LENGTH - 1))
        second = (first + LENGTH // 2) % LENGTH
        row[[first, second]] = row[[second, first]]
    return planted


def frozen(sequences: np.ndarray, seed: int) -> np.ndarray:
    """Repeat one segment over the next three positions, as if the scene froze."""
    rng = np.random.default_rng(seed)
    planted = sequences.copy()
    for row in planted:
        start = int(rng.integers(1, LENGTH - 4))
        row[start + 1 : start + 4] = row[start]
    return planted


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    # Stronger input noise keeps the early-stopping rule (validation loss above the noisy training loss)
    # from ending training before the frozen segments are resolved.
    return IAEDetector(noise_std=0.2, max_epochs=150, seed=0).fit(smooth_sequences(600, seed=0))


def test_interpolated_codes_lie_on_line():
    codes = torch.tensor([[[0.0, 0.0], [5.0, -3.0], [9.0, 9.0], [3.0, 6.0]]])  # (1, 4, 2)
    line = interpolated_codes(codes)
    expected = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]])
    torch.testing.assert_close(line, expected)


def test_distance_to_segment_clamps_ends():
    start = torch.tensor([[[0.0, 0.0]]])
    end = torch.tensor([[[2.0, 0.0]]])
    points = torch.tensor([[[1.0, 3.0], [-4.0, 0.0], [5.0, 4.0]]])  # above the middle, before, after
    distances = distance_to_segment(points, start, end)
    torch.testing.assert_close(distances, torch.tensor([[3.0, 4.0, 5.0]]))


@pytest.mark.parametrize("plant", [out_of_order, frozen])
def test_separates_planted_anomalies(fitted, plant):
    normal = smooth_sequences(200, seed=5)
    anomalous = plant(smooth_sequences(200, seed=6), seed=7)
    labels = np.r_[np.zeros(200), np.ones(200)]
    scores = fitted.score(np.concatenate([normal, anomalous]))
    assert auroc(labels, scores) >= 0.9


def test_score_all_has_every_score(fitted):
    sequences = smooth_sequences(10, seed=3)
    all_scores = fitted.score_all(sequences)
    assert set(all_scores) == set(SCORE_NAMES)
    for name, values in all_scores.items():
        assert values.shape == (10,), name
        assert np.isfinite(values).all(), name
    np.testing.assert_array_equal(fitted.score(sequences), all_scores["mae_i"])
    assert (all_scores["mse"] >= 0).all()
    assert (all_scores["cs"] >= 0).all()
    assert (all_scores["cs"] <= 2).all()


def test_training_loss_goes_down(fitted):
    history = fitted.train_loss_history_
    assert len(history) >= 3
    assert history[-1] < 0.2 * history[0]
    assert len(fitted.validation_loss_history_) == len(history)
    assert fitted.threshold_ == pytest.approx(np.quantile(fitted.train_scores_, 0.9))


def test_early_stopping_keeps_best_weights():
    sequences = smooth_sequences(40, seed=4)
    # Without input noise a tiny training set is soon fitted better than its validation split.
    detector = IAEDetector(noise_std=0.0, max_epochs=300, seed=1).fit(sequences)
    epochs = len(detector.train_loss_history_)
    assert epochs < 300
    validation = np.array(detector.validation_loss_history_)
    train = np.array(detector.train_loss_history_)
    assert (validation[-2:] > train[-2:]).all(), "stopped without two epochs of validation above training"
    assert detector.best_epoch_ == int(np.argmin(validation))


def test_seeded_fit_is_deterministic():
    sequences = smooth_sequences(60, seed=8)
    first = IAEDetector(max_epochs=5, seed=3).fit(sequences)
    second = IAEDetector(max_epochs=5, seed=3).fit(sequences)
    np.testing.assert_array_equal(first.train_scores_, second.train_scores_)


def test_save_load_round_trip(fitted, tmp_path):
    sequences = smooth_sequences(20, seed=9)
    fitted.save(tmp_path / "model")
    assert (tmp_path / "model" / "network.safetensors").is_file()
    description = json.loads((tmp_path / "model" / "detector.json").read_text())
    assert description["fitted"]["sequence_length_"] == LENGTH

    loaded = load_detector(tmp_path / "model")
    assert isinstance(loaded, IAEDetector)
    for name, values in fitted.score_all(sequences).items():
        np.testing.assert_array_equal(loaded.score_all(sequences)[name], values, err_msg=name)
    assert loaded.threshold_ == fitted.threshold_


def test_wrong_shapes_are_input_errors(fitted):
    with pytest.raises(DetectInputError, match="dimension 12 but the model was fitted on 16"):
        fitted.score(np.zeros((3, LENGTH, 12), dtype=np.float32))
    with pytest.raises(DetectInputError, match="5 segments but the model was fitted on 8"):
        fitted.score(np.zeros((3, 5, DIMENSION), dtype=np.float32))
    with pytest.raises(DetectInputError, match="3-D array"):
        fitted.score(np.zeros((3, DIMENSION), dtype=np.float32))
    with pytest.raises(DetectInputError, match="at least 3 segments"):
        IAEDetector().fit(np.zeros((10, 2, DIMENSION), dtype=np.float32))
    nan_sequences = smooth_sequences(3, seed=1)
    nan_sequences[1, 2, 0] = np.nan
    with pytest.raises(DetectInputError, match="NaN"):
        fitted.score(nan_sequences)


def test_score_before_fit_is_input_error():
    with pytest.raises(DetectInputError, match="not fitted"):
        IAEDetector().score(smooth_sequences(2, seed=1))


def test_invalid_settings_are_input_errors():
    with pytest.raises(DetectInputError, match="score_name"):
        IAEDetector(score_name="psnr")
    with pytest.raises(DetectInputError, match="validation"):
        IAEDetector().fit(smooth_sequences(2, seed=1))


# ---- sequences of clips and the command line


def _clip(video: str, index: int, label: int | None = None) -> dict:
    return {
        "key": f"{video}-{index * 500:07d}",
        "source": f"/videos/{video}.mp4",
        "source_name": f"{video}.mp4",
        "start_s": index * 0.5,
        "end_s": index * 0.5 + 1.0,
        "fps": 10.0,
        "frame_indices": list(range(index * 5, index * 5 + 10)),
        "frame_labels": None if label is None else [label] * 10,
        "label": None,
    }


def test_windows_follow_start_time_per_video():
    meta = [_clip("b", index) for index in range(4)] + [_clip("a", index) for index in (2, 0, 3, 1, 4)]
    meta.append(_clip("short", 0))
    vectors = np.arange(len(meta), dtype=np.float32)[:, None]  # (10, 1): row i contains i
    windows = build_windows(vectors, meta, 3)
    # Video b: rows 0-3 in order; video a in start-time order is rows 5, 7, 4, 6, 8; "short" has no window.
    # Windows are sorted by the row of their centre clip.
    assert windows.rows.tolist() == [[0, 1, 2], [1, 2, 3], [7, 4, 6], [4, 6, 8], [5, 7, 4]]
    centre_keys = [row["key"] for row in windows.meta]
    assert centre_keys == ["b-0000500", "b-0001000", "a-0001000", "a-0001500", "a-0000500"]
    assert windows.sequences.shape == (5, 3, 1)
    np.testing.assert_array_equal(windows.sequences[2, :, 0], [7, 4, 6])
    assert windows.short_videos == 1
    assert windows.unscored_clips == len(meta) - 5


def test_windows_errors():
    meta = [_clip("a", index) for index in range(4)]
    vectors = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(DetectInputError, match="no source video has 5 clips"):
        build_windows(vectors, meta, 5)
    with pytest.raises(DetectInputError, match="at least 3|>= 3"):
        build_windows(vectors, meta, 2)
    del meta[1]["start_s"]
    with pytest.raises(DetectInputError, match="no numeric start_s"):
        build_windows(vectors, meta, 3)


def _video_embeddings(video: str, count: int, seed: int, frozen_span: tuple[int, int] | None = None):
    """Clip embeddings of one video: a point wandering smoothly in 3-D, mapped to D dimensions."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(size=(3, DIMENSION)) / np.sqrt(3)
    velocity = np.cumsum(rng.normal(scale=0.05, size=(count, 3)), axis=0) + rng.normal(scale=0.3, size=3)
    path = np.cumsum(velocity, axis=0) * 0.3  # (count, 3)
    path = np.sin(path)  # bounded, still smooth
    vectors = np.tanh(path @ mixing) + rng.normal(scale=0.02, size=(count, DIMENSION))
    labels = [0] * count
    if frozen_span is not None:
        first, last = frozen_span
        vectors[first:last] = vectors[first - 1]
        labels[first:last] = [1] * (last - first)
    meta = [_clip(video, index, labels[index]) for index in range(count)]
    return vectors.astype(np.float32), meta


def _save_videos(folder, videos):
    vectors = np.concatenate([video[0] for video in videos])
    meta = [row for video in videos for row in video[1]]
    header = {"encoder": "synthetic", "checkpoint": "none", "modality": "joint"}
    return save_embeddings(folder, vectors, meta, header)


def test_fit_score_evaluate_command(tmp_path):
    train = _save_videos(tmp_path / "train", [_video_embeddings(f"walk{i}", 80, seed=i) for i in range(4)])
    test = _save_videos(tmp_path / "test", [_video_embeddings("test", 60, seed=10, frozen_span=(25, 37))])
    model, scores = tmp_path / "model", tmp_path / "scores"

    assert run_detect(["fit", "--method", "iae", "--embeddings", str(train), "--out", str(model),
                       "--sequence-length", "5", "--epochs", "40", "--seed", "1"]) == 0
    description = json.loads((model / "detector.json").read_text())
    assert description["detector"] == "interpolating_autoencoder"
    assert description["fitted"]["sequence_length_"] == 5
    assert description["settings"]["max_epochs"] == 40

    assert run_detect(["score", "--model", str(model), "--embeddings", str(test), "--out", str(scores)]) == 0
    rows = [json.loads(line) for line in (scores / "scores.jsonl").read_text().splitlines()]
    assert [row["key"] for row in rows] == [f"test-{index * 500:07d}" for index in range(2, 58)]
    header = json.loads((scores / "header.json").read_text())
    assert header["sequence_length"] == 5
    assert header["unscored_clips"] == 4
    frozen_scores = [row["score"] for row in rows if row["frame_labels"][0] == 1]
    normal_scores = [row["score"] for row in rows if row["frame_labels"][0] == 0]
    assert np.mean(frozen_scores) > np.mean(normal_scores)

    assert run_detect(["evaluate", "--scores", str(scores), "--out", str(tmp_path / "evaluation")]) == 0
    assert (tmp_path / "evaluation" / "metrics.json").is_file()

    # Embeddings of another dimension are an input error (exit status 2), not a traceback.
    other_video = (np.zeros((6, 4), dtype=np.float32), [_clip("o", index) for index in range(6)])
    other = _save_videos(tmp_path / "other", [other_video])
    assert run_detect(["score", "--model", str(model), "--embeddings", str(other),
                       "--out", str(tmp_path / "other_scores")]) == 2


def run_detect(argv: list[str]) -> int:
    """Run `latentwatch detect ...` in this process the way the dispatcher does: input errors exit 2."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def test_fit_command_rejects_misplaced_options(tmp_path):
    train = _save_videos(tmp_path / "train", [_video_embeddings("walk", 20, seed=0)])
    assert run_detect(["fit", "--method", "knn", "--embeddings", str(train), "--out", str(tmp_path / "a"),
                       "--sequence-length", "4"]) == 2
    assert run_detect(["fit", "--method", "knn", "--embeddings", str(train), "--out", str(tmp_path / "b"),
                       "--epochs", "4"]) == 2
    assert not (tmp_path / "a").exists()
    assert run_detect(["fit", "--method", "iae", "--embeddings", str(train), "--out", str(tmp_path / "c"),
                       "--sequence-length", "30"]) == 2
