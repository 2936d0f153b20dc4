"""Linear and kNN probes: accuracy on separable data, chance on shuffled labels, the probe command."""

import argparse
import json

import numpy as np
import pytest

from detect.cli import register
from detect.embeddings import save_embeddings
from detect.errors import DetectInputError
from detect.probe import knn_probe, linear_probe, read_labels

CLASSES = 10
DIMENSION = 32


def run_latentwatch(argv: list[str]) -> int:
    """Run a `latentwatch` command in this process the way the dispatcher does: input errors exit 2."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def clustered(count_per_class: int, seed: int, spread: float = 0.6) -> tuple[np.ndarray, list[str]]:
    """Gaussian clusters around fixed class centres; the centres do not depend on `seed`."""
    centres = np.random.default_rng(100).normal(size=(CLASSES, DIMENSION))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), count_per_class)
    vectors = centres[labels] + spread * rng.normal(size=(labels.size, DIMENSION))
    return vectors.astype(np.float32), [f"class{label}" for label in labels]


@pytest.mark.parametrize("probe", [linear_probe, knn_probe])
def test_probe_separable_classes(probe):
    train_vectors, train_labels = clustered(40, seed=1)
    test_vectors, test_labels = clustered(20, seed=2)
    result = probe(train_vectors, train_labels, test_vectors, test_labels)
    assert result.top1 >= 0.95
    assert result.top5 >= result.top1
    assert result.top_k == 5
    assert result.class_count == CLASSES
    assert result.test_count == 200


@pytest.mark.parametrize("probe", [linear_probe, knn_probe])
def test_probe_shuffled_labels_near_chance(probe):
    train_vectors, train_labels = clustered(40, seed=1)
    test_vectors, test_labels = clustered(20, seed=2)
    shuffled = list(np.random.default_rng(3).permutation(train_labels))
    result = probe(train_vectors, shuffled, test_vectors, test_labels)
    # Chance is 0.1 for top-1 and 0.5 for top-5 with ten balanced classes.
    assert result.top1 <= 0.22
    assert result.top5 <= 0.7


def test_knn_probe_weights_votes_by_similarity():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]], dtype=np.float32)
    labels = ["a", "b", "b"]
    query = np.array([[1.0, 0.05]], dtype=np.float32)
    # Two "b" votes at similarity ~0.15 lose to one "a" vote at ~1.0, because exp(sim / 0.07) is steep.
    result = knn_probe(train, labels, query, ["a"], k=3)
    assert result.top1 == 1.0
    # With a flat temperature the two "b" votes win.
    assert knn_probe(train, labels, query, ["a"], k=3, temperature=100.0).top1 == 0.0


def test_unseen_test_label_counts_as_wrong():
    train_vectors, train_labels = clustered(10, seed=1)
    test_vectors, test_labels = clustered(2, seed=2)
    test_labels[0] = "never-seen"
    result = knn_probe(train_vectors, train_labels, test_vectors, test_labels)
    assert result.unseen_test_labels == 1
    assert result.top1 <= 19 / 20


def test_probe_input_errors():
    vectors, labels = clustered(5, seed=1)
    with pytest.raises(DetectInputError, match="at least 2 classes"):
        linear_probe(vectors, ["same"] * len(labels), vectors, labels)
    with pytest.raises(DetectInputError, match="dimension 4"):
        knn_probe(vectors, labels, vectors[:, :4], labels)
    with pytest.raises(DetectInputError, match="labels"):
        knn_probe(vectors, labels[:-1], vectors, labels)
    with pytest.raises(DetectInputError, match="2 of 3 rows without a label in field 'label'"):
        read_labels([{"key": "a", "label": "x"}, {"key": "b", "label": None}, {"key": "c"}], field="label",
                    source="meta.jsonl")


def _save(folder, vectors, labels, *, label_field="label"):
    meta = [
        {"key": f"{folder.name}-{index:07d}", "source": f"/videos/{folder.name}.mp4", "start_s": float(index),
         label_field: label}
        for index, label in enumerate(labels)
    ]
    header = {"encoder": "synthetic", "checkpoint": "none", "modality": "joint"}
    return save_embeddings(folder, vectors, meta, header)


@pytest.mark.parametrize("method", ["linear", "knn"])
def test_probe_command(tmp_path, method, capsys):
    train = _save(tmp_path / "train", *clustered(20, seed=1), label_field="action")
    test = _save(tmp_path / "test", *clustered(10, seed=2), label_field="action")
    out = tmp_path / "results" / "probe.json"
    status = run_latentwatch(["probe", method, "--train", str(train), "--test", str(test),
                              "--label-field", "action", "--out", str(out)])
    assert status == 0
    assert f"{method} probe: top-1" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["method"] == method
    assert result["top1"] >= 0.95
    assert result["label_field"] == "action"


def test_probe_command_missing_labels(tmp_path):
    vectors, labels = clustered(5, seed=1)
    train = _save(tmp_path / "train", vectors, labels)
    test = _save(tmp_path / "test", vectors, [None] * len(labels))
    status = run_latentwatch(["probe", "knn", "--train", str(train), "--test", str(test)])
    assert status == 2
    with pytest.raises(DetectInputError, match="50 of 50 rows without a label"):
        parser = argparse.ArgumentParser(prog="latentwatch")
        register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["probe", "knn", "--train", str(train), "--test", str(test)])
        args.handler(args)
