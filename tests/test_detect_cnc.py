"""CnC detector: causal codelength estimator, theta_clear fit, planted anomalies, save and load, errors."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from detect.base import load_detector
from detect.cnc import (
    SCORE_NAMES,
    CausalFeatureConvolutions,
    CnCDetector,
    binary_mask,
    fit_exponential_decay,
)
from detect.cli import register
from detect.embeddings import save_embeddings
from detect.errors import DetectInputError
from detect.metrics import auroc

LENGTH = 8
DIMENSION = 16
SETTINGS = {"learning_rate": 3e-3, "warmup_epochs": 20, "epochs": 60, "seed": 0}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the tiny networks on one thread: on a shared 2-core machine, more threads only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def smooth_sequences(count: int, seed: int) -> np.ndarray:
    """Make normal sequences (M, N, D): a point moving at steady speed in 2-D, mapped nonlinearly to D."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(size=(2, DIMENSION)) / np.sqrt(2)
    start = rng.normal(scale=0.5, size=(count, 1, 2))
    direction = rng.normal(size=(count, 1, 2))
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    velocity = direction * rng.uniform(0.4, 0.8, size=(count, 1, 1))
    curvature = rng.normal(scale=0.01, size=(count, 1, 2))
    steps = np.arange(LENGTH)[None, :, None]
    path = start + velocity * steps + curvature * steps**2  # (M, N, 2)
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


def flat(sequences: np.ndarray) -> np.ndarray:
    return sequences.reshape(sequences.shape[0], -1)  # (M, N * D)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    return CnCDetector(**SETTINGS).fit(flat(smooth_sequences(600, seed=0)))


@pytest.mark.parametrize("code_dim", [5, 16, 40])
def test_estimator_mask_is_causal(code_dim):
    torch.manual_seed(0)
    estimator = CausalFeatureConvolutions(code_dim, channels=8)
    codes = torch.randn(3, code_dim, requires_grad=True)
    mask = estimator(codes)  # (3, K)
    assert mask.shape == (3, code_dim)
    assert ((mask >= 0) & (mask <= 1)).all()
    for feature in range(code_dim):
        (gradient,) = torch.autograd.grad(mask[:, feature].sum(), codes, retain_graph=True)
        assert (gradient[:, feature + 1 :] == 0).all(), f"mask {feature} sees later features"
        assert (gradient[:, : feature + 1] != 0).any(), f"mask {feature} sees none of features 0..{feature}"
    # The receptive field covers the whole code: the last mask depends on the first feature.
    (gradient,) = torch.autograd.grad(mask[:, -1].sum(), codes)
    assert (gradient[:, 0] != 0).all()


def test_binary_mask_straight_through():
    soft = torch.tensor([[0.2, 0.7, 0.9], [0.5, 0.1, 0.6]], requires_grad=True)
    thresholds = torch.tensor([[0.5], [0.55]])
    mask = binary_mask(soft, thresholds)
    torch.testing.assert_close(mask, torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]))
    (gradient,) = torch.autograd.grad((mask * torch.tensor([1.0, 2.0, 3.0])).sum(), soft)
    torch.testing.assert_close(gradient, torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))


def test_exponential_fit_recovers_curve():
    epochs = np.arange(1, 16)
    losses = 0.05 + np.exp(0.3 - 0.4 * epochs)
    floor, intercept, rate = fit_exponential_decay(losses.tolist())
    assert rate == pytest.approx(0.4, rel=0.1)
    assert floor == pytest.approx(0.05, abs=0.01)
    fitted_curve = floor + np.exp(intercept - rate * epochs)
    np.testing.assert_allclose(fitted_curve, losses, rtol=0.05)
    # A rising curve gives a constant target, never a growing one.
    assert fit_exponential_decay([1.0, 1.1, 1.3, 1.6])[2] == 0.0


@pytest.mark.parametrize("plant", [out_of_order, frozen])
def test_separates_planted_anomalies(fitted, plant):
    normal = smooth_sequences(200, seed=5)
    anomalous = plant(smooth_sequences(200, seed=6), seed=7)
    labels = np.r_[np.zeros(200), np.ones(200)]
    scores = fitted.score(flat(np.concatenate([normal, anomalous])))
    assert auroc(labels, scores) >= 0.9


def test_training_reduces_losses_and_codelength(fitted):
    warmup = fitted.warmup_loss_history_
    assert len(warmup) == SETTINGS["warmup_epochs"]
    assert warmup[-1] < 0.2 * warmup[0]
    assert fitted.theta_decay_ > 0
    clear = fitted.clear_loss_history_
    assert len(clear) == SETTINGS["epochs"]
    assert min(clear[-5:]) < 0.5 * clear[0]
    # Concision pressure removes code features that the fully open mask of early training used.
    assert fitted.codelength_history_[-1] < max(fitted.codelength_history_) - 0.2


def test_combined_is_sum_of_standardised_scores(fitted):
    rows = flat(smooth_sequences(30, seed=3))
    scores = fitted.score_all(rows)
    assert set(scores) == set(SCORE_NAMES)
    expected = sum(
        (scores[name] - fitted.score_mean_[name]) / fitted.score_std_[name]
        for name in ("codelength", "reconstruction")
    )
    np.testing.assert_allclose(scores["combined"], expected)
    assert ((scores["codelength"] >= 0) & (scores["codelength"] <= fitted.code_dim)).all()
    # On the normal training rows, the combined score has mean 0 by construction.
    assert abs(float(fitted.train_scores_.mean())) < 1e-6
    assert fitted.threshold_ == pytest.approx(np.quantile(fitted.train_scores_, 0.9))


def test_seeded_fit_is_deterministic():
    rows = flat(smooth_sequences(50, seed=8))
    settings = {"warmup_epochs": 3, "epochs": 3, "seed": 2}
    first = CnCDetector(**settings).fit(rows)
    second = CnCDetector(**settings).fit(rows)
    np.testing.assert_array_equal(first.train_scores_, second.train_scores_)


def test_save_load_round_trip(fitted, tmp_path):
    rows = flat(smooth_sequences(20, seed=9))
    fitted.save(tmp_path / "model")
    description = json.loads((tmp_path / "model" / "detector.json").read_text())
    assert description["detector"] == "clear_and_concise"
    assert math.isfinite(description["fitted"]["theta_floor_"])

    loaded = load_detector(tmp_path / "model")
    assert isinstance(loaded, CnCDetector)
    for name, values in fitted.score_all(rows).items():
        np.testing.assert_array_equal(loaded.score_all(rows)[name], values, err_msg=name)
    np.testing.assert_array_equal(loaded.predict(rows), fitted.predict(rows))


def test_input_errors(fitted, tmp_path):
    with pytest.raises(DetectInputError, match="dimension 7 but the model was fitted on 128"):
        fitted.score(np.zeros((3, 7), dtype=np.float32))
    with pytest.raises(DetectInputError, match="not fitted"):
        CnCDetector().score(np.zeros((3, 7), dtype=np.float32))
    with pytest.raises(DetectInputError, match="score_name"):
        CnCDetector(score_name="psnr")
    with pytest.raises(DetectInputError, match="at least 2 normal rows"):
        CnCDetector().fit(np.zeros((1, 7), dtype=np.float32))

    fitted.save(tmp_path / "model")
    (tmp_path / "model" / "network.safetensors").unlink()
    with pytest.raises(DetectInputError, match="missing network.safetensors"):
        load_detector(tmp_path / "model")


def run_detect(argv: list[str]) -> int:
    """Run `latentwatch detect ...` in this process the way the dispatcher does: input errors exit 2."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def _save_clips(folder, vectors, video):
    meta = [
        {"key": f"{video}-{index * 1000:07d}", "source": f"/videos/{video}.mp4",
         "source_name": f"{video}.mp4", "start_s": float(index), "end_s": index + 1.0, "fps": 10.0,
         "frame_indices": list(range(index * 10, index * 10 + 10)), "frame_labels": [0] * 10, "label": None}
        for index in range(len(vectors))
    ]
    header = {"encoder": "synthetic", "checkpoint": "none", "modality": "joint"}
    return save_embeddings(folder, vectors, meta, header)


def test_fit_score_command(tmp_path):
    train = _save_clips(tmp_path / "train", flat(smooth_sequences(120, seed=0)), "train")
    test = _save_clips(tmp_path / "test", flat(frozen(smooth_sequences(30, seed=1), seed=2)), "test")
    model, scores = tmp_path / "model", tmp_path / "scores"
    assert run_detect(["fit", "--method", "cnc", "--embeddings", str(train), "--out", str(model),
                       "--epochs", "3", "--seed", "4"]) == 0
    description = json.loads((model / "detector.json").read_text())
    assert description["settings"]["epochs"] == 3
    assert description["settings"]["seed"] == 4

    assert run_detect(["score", "--model", str(model), "--embeddings", str(test), "--out", str(scores)]) == 0
    rows = [json.loads(line) for line in (scores / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert all(np.isfinite(row["score"]) for row in rows)
    assert run_detect(["score", "--model", str(model), "--embeddings", str(tmp_path / "missing"),
                       "--out", str(tmp_path / "other")]) == 2


def test_constant_codelength_scale_floor():
    from detect.cnc import _score_scale

    # Every normal clip keeps exactly 9 features: the codelength is standardised in whole features.
    assert _score_scale("codelength", np.full(50, 9.0)) == 1.0
    assert _score_scale("codelength", np.array([6.0, 9.0, 12.0])) == pytest.approx(np.std([6.0, 9.0, 12.0]))
    errors = np.full(50, 0.02)
    assert _score_scale("reconstruction", errors) == pytest.approx(2e-5)
