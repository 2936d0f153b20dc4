"""`latentwatch detect score --method energy`: audio-shift energies from energy.npy become a scores folder."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from detect.cli import register
from detect.embeddings import save_embeddings
from detect.energy import read_energy
from detect.embeddings import load_embeddings
from detect.errors import DetectInputError

FRAMES_PER_CLIP = 4


def run_detect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def _embeddings_with_energy(folder: Path, energy: np.ndarray | None, count: int = 12) -> Path:
    meta = []
    for index in range(count):
        anomalous = int(index >= count - 4)
        meta.append({
            "key": f"street-{index * 1000:07d}", "source": "/videos/street.mp4", "source_name": "street.mp4",
            "start_s": float(index), "end_s": float(index + 1), "fps": 4.0,
            "frame_indices": list(range(index * FRAMES_PER_CLIP, (index + 1) * FRAMES_PER_CLIP)),
            "frame_labels": [anomalous] * FRAMES_PER_CLIP, "label": None,
        })
    vectors = np.random.default_rng(0).normal(size=(count, 8)).astype(np.float32)
    save_embeddings(folder, vectors, meta, {"encoder": "audio shift", "checkpoint": "/runs/shift/last.pt",
                                            "modality": "joint"})
    if energy is not None:
        np.save(folder / "energy.npy", energy)
    return folder


def test_energy_scores_folder_and_evaluation(tmp_path):
    # Hand-written energies: the last four clips (the anomalous ones) are the least in sync.
    energy = np.array([-2.0, -1.5, -1.8, -2.2, -1.0, -1.9, -2.1, -1.7, 0.5, 1.0, 0.8, 1.2], dtype=np.float32)
    folder = _embeddings_with_energy(tmp_path / "emb", energy)

    assert run_detect(["score", "--method", "energy", "--embeddings", str(folder), "--out", str(tmp_path / "s")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s" / "scores.jsonl").read_text().splitlines()]
    assert [row["score"] for row in rows] == pytest.approx(energy.tolist())
    assert [row["key"] for row in rows][:2] == ["street-0000000", "street-0001000"]
    assert all("neighbours" not in row for row in rows)
    assert rows[3]["frame_labels"] == [0] * FRAMES_PER_CLIP
    header = json.loads((tmp_path / "s" / "header.json").read_text())
    assert header["detector"] == "audio_shift_energy"
    assert header["threshold"] is None
    assert header["model"] == "/runs/shift/last.pt"

    # Evaluation accepts rows without neighbours; the energies separate the classes perfectly.
    assert run_detect(["evaluate", "--scores", str(tmp_path / "s"), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["frame"]["micro"]["auroc"] == pytest.approx(1.0)
    assert metrics["detector"] == "audio_shift_energy"


@pytest.mark.parametrize(
    ("energy", "message"),
    [
        (np.zeros(11, dtype=np.float32), "has 11 energies but meta.jsonl has 12 rows"),
        (np.array([0.0] * 5 + [np.nan] + [0.0] * 6, dtype=np.float32), "rows 5"),
        (np.zeros((12, 2), dtype=np.float32), "must be 1-D"),
        (np.arange(12), "expected float32"),
        (None, "energy.npy not found"),
    ],
)
def test_energy_input_errors(tmp_path, energy, message):
    folder = _embeddings_with_energy(tmp_path / "emb", energy)
    with pytest.raises(DetectInputError, match=message):
        read_energy(folder, load_embeddings(folder))
    assert run_detect(["score", "--method", "energy", "--embeddings", str(folder), "--out", str(tmp_path / "s")]) == 2
    assert not (tmp_path / "s").exists()


def test_energy_method_rejects_model_and_detector_needs_model(tmp_path):
    folder = _embeddings_with_energy(tmp_path / "emb", np.zeros(12, dtype=np.float32))
    assert run_detect(["score", "--method", "energy", "--model", str(tmp_path), "--embeddings", str(folder),
                       "--out", str(tmp_path / "s")]) == 2
    assert run_detect(["score", "--embeddings", str(folder), "--out", str(tmp_path / "s")]) == 2


def test_energy_pickled_file_rejected(tmp_path):
    folder = _embeddings_with_energy(tmp_path / "emb", None)
    np.save(folder / "energy.npy", np.array([{"a": 1}] * 12, dtype=object), allow_pickle=True)
    with pytest.raises(DetectInputError, match="without pickle"):
        read_energy(folder, load_embeddings(folder))
