"""Every input mistake of `latentwatch detect` ends in one DetectInputError whose message names the cause."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from detect.cli import register
from detect.cnc import CnCDetector
from detect.embeddings import save_embeddings
from detect.errors import DetectInputError
from detect.iae import IAEDetector
from detect.knn import KNNDetector

DIMENSION = 6


def run_detect(argv: list[str]) -> str:
    """Run `latentwatch detect ...` in this process and return the input error's message (or fail)."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    assert input_errors == (DetectInputError,)
    with pytest.raises(DetectInputError) as raised:
        args.handler(args)
    message = str(raised.value)
    assert "\n" not in message
    return message


def _embeddings(folder: Path, count: int, *, dimension: int = DIMENSION, anomalous: bool = False, seed: int = 0) -> Path:
    meta = [{"key": f"{folder.name}-{index:07d}", "source": f"/v/{folder.name}.mp4", "start_s": float(index),
             "frame_indices": [index], "frame_labels": [int(anomalous)]} for index in range(count)]
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return save_embeddings(folder, vectors, meta, {"encoder": "test", "checkpoint": "none", "modality": "joint"})


def _corrupt_rows(folder: Path, rows: list[int], value: float) -> None:
    # save_embeddings rejects NaN, so the array is rewritten after the folder exists.
    vectors = np.load(folder / "embeddings.npy")
    vectors[rows, 1] = value
    np.save(folder / "embeddings.npy", vectors)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("input_errors")
    folder = _embeddings(root / "train", 12)
    out = root / "model"
    parser = argparse.ArgumentParser(prog="latentwatch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", "fit", "--embeddings", str(folder), "--out", str(out), "--k", "3"])
    assert args.handler(args) == 0
    return out


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_rows_named_by_index(tmp_path, model, value):
    folder = _embeddings(tmp_path / "bad", 10)
    _corrupt_rows(folder, [2, 7], value)
    for argv in (["fit", "--embeddings", str(folder), "--out", str(tmp_path / "m")],
                 ["score", "--model", str(model), "--embeddings", str(folder), "--out", str(tmp_path / "s")]):
        message = run_detect(argv)
        assert "2 row(s) with NaN or infinity (rows 2, 7)" in message
    assert not (tmp_path / "m").exists()
    assert not (tmp_path / "s").exists()


def test_dimension_differs_from_fitted(tmp_path, model):
    folder = _embeddings(tmp_path / "wide", 5, dimension=DIMENSION + 2)
    message = run_detect(["score", "--model", str(model), "--embeddings", str(folder), "--out", str(tmp_path / "s")])
    assert message == f"embeddings have dimension {DIMENSION + 2} but the model was fitted on {DIMENSION}"
    with pytest.raises(DetectInputError, match="dimension 8 but the model was fitted on 6"):
        from detect.base import load_detector

        load_detector(model).score(np.zeros((2, DIMENSION + 2), dtype=np.float32) + 1)


def test_empty_normal_set(tmp_path):
    folder = _embeddings(tmp_path / "all_anomalous", 6, anomalous=True)
    message = run_detect(["fit", "--embeddings", str(folder), "--out", str(tmp_path / "m"), "--exclude-anomalous"])
    assert "all 6 clips" in message
    assert "no normal clip is left" in message
    with pytest.raises(DetectInputError, match="non-empty"):
        KNNDetector().fit(np.zeros((0, DIMENSION), dtype=np.float32))


def test_k_larger_than_normal_set(tmp_path):
    folder = _embeddings(tmp_path / "few", 4)
    message = run_detect(["fit", "--embeddings", str(folder), "--out", str(tmp_path / "m"), "--k", "4"])
    assert "k=4 needs at least 5 normal clips" in message
    assert "got 4" in message


def _copy_model(model: Path, target: Path) -> Path:
    target.mkdir()
    for path in model.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_model_folder_of_another_detector(tmp_path, model):
    embeddings = _embeddings(tmp_path / "test", 5)
    other = _copy_model(model, tmp_path / "other")
    description = json.loads((other / "detector.json").read_text())
    description["detector"] = "isolation_forest"
    (other / "detector.json").write_text(json.dumps(description))
    message = run_detect(["score", "--model", str(other), "--embeddings", str(embeddings), "--out", str(tmp_path / "s")])
    assert "unknown detector 'isolation_forest'" in message
    assert "knn" in message

    # A folder of another kind (an embeddings folder) has no detector.json.
    message = run_detect(["score", "--model", str(embeddings), "--embeddings", str(embeddings),
                          "--out", str(tmp_path / "s")])
    assert "detector description not found" in message

    # Loading a kNN folder as another detector class names both.
    with pytest.raises(DetectInputError, match="contains a 'knn' detector, not a 'clear_and_concise' detector"):
        CnCDetector.load(model)
    with pytest.raises(DetectInputError, match="not a 'interpolating_autoencoder' detector"):
        IAEDetector.load(model)


def test_model_folder_from_future_version(tmp_path, model):
    embeddings = _embeddings(tmp_path / "test", 5)
    future = _copy_model(model, tmp_path / "future")
    description = json.loads((future / "detector.json").read_text())
    description["format_version"] = 2
    (future / "detector.json").write_text(json.dumps(description))
    message = run_detect(["score", "--model", str(future), "--embeddings", str(embeddings), "--out", str(tmp_path / "s")])
    assert "has format_version 2 but this version of latentwatch reads format_version 1" in message


def test_energy_length_differs_from_meta(tmp_path):
    folder = _embeddings(tmp_path / "shift", 5)
    np.save(folder / "energy.npy", np.zeros(7, dtype=np.float32))
    message = run_detect(["score", "--method", "energy", "--embeddings", str(folder), "--out", str(tmp_path / "s")])
    assert "has 7 energies but meta.jsonl has 5 rows" in message


@pytest.mark.parametrize(
    ("detector_class", "arguments", "message"),
    [
        (IAEDetector, {"hidden_dim": 0}, "hidden_dim must be a positive integer, got 0"),
        (CnCDetector, {"hidden_dim": True}, "hidden_dim must be a positive integer, got True"),
        (IAEDetector, {"learning_rate": float("nan")}, "learning_rate must be > 0"),
        (CnCDetector, {"learning_rate": -1.0}, "learning_rate must be > 0"),
        (IAEDetector, {"seed": 1.5}, "seed must be an integer"),
        (CnCDetector, {"lambda_skip": -0.1}, "lambda_skip must be >= 0"),
        (IAEDetector, {"noise_std": -0.1}, "noise_std must be >= 0"),
        (CnCDetector, {"score_name": "psnr"}, "score_name must be one of codelength, reconstruction, combined"),
        (KNNDetector, {"k": 0}, "k must be a positive integer"),
        (KNNDetector, {"metric": "manhattan"}, "metric must be one of cosine, l2"),
    ],
)
def test_constructor_settings_rejected(detector_class, arguments, message):
    with pytest.raises(DetectInputError, match=message):
        detector_class(**arguments)
