"""`latentwatch detect` end to end on synthetic embeddings and a synthetic shard tar."""

import argparse
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.cli import register
from detect.embeddings import save_embeddings
from detect.errors import DetectInputError

LATENTWATCH = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "latentwatch"
DIMENSION = 16
FRAMES_PER_CLIP = 10
MISSING_KEY = "test-0029000"
CORRUPT_KEY = "test-0028000"


def run_detect(argv: list[str]) -> int:
    """Run `latentwatch detect ...` in this process the way the dispatcher does: input errors exit 2."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def _clip_meta(stem: str, index: int, labels: list[int] | None) -> dict:
    start_ms = index * 1000
    return {
        "key": f"{stem}-{start_ms:07d}",
        "source": f"/videos/{stem}.mp4",
        "source_name": f"{stem}.mp4",
        "start_s": index * 1.0,
        "end_s": index * 1.0 + 1.0,
        "fps": 10.0,
        "frame_indices": list(range(index * FRAMES_PER_CLIP, (index + 1) * FRAMES_PER_CLIP)),
        "frame_labels": labels,
        "label": None,
    }


def _write_embeddings(folder: Path, *, anomalous: int, count: int, stem: str, seed: int, dimension=DIMENSION):
    rng = np.random.default_rng(seed)
    centre = np.zeros(dimension)
    centre[0] = 10.0
    shift = np.zeros(dimension)
    shift[1:4] = 6.0
    vectors = centre + rng.normal(size=(count, dimension))
    vectors[count - anomalous:] += shift
    meta = [
        _clip_meta(stem, index, [int(index >= count - anomalous)] * FRAMES_PER_CLIP)
        for index in range(count)
    ]
    header = {"encoder": "synthetic", "checkpoint": "none", "modality": "joint"}
    return save_embeddings(folder, vectors.astype(np.float32), meta, header)


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _write_shards(folder: Path, metas: list[dict]) -> None:
    folder.mkdir()
    with tarfile.open(folder / "shard-000000.tar", "w") as archive:
        for meta in metas:
            if meta["key"] == MISSING_KEY:
                continue
            _add_member(archive, f"{meta['key']}.json", json.dumps({**meta, "format_version": 1}).encode())
            for frame in range(3):
                data = b"not a jpeg" if meta["key"] == CORRUPT_KEY and frame == 1 else _jpeg((frame * 80, 40, 120))
                _add_member(archive, f"{meta['key']}.{frame:03d}.jpg", data)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect_cli")
    train = _write_embeddings(root / "train", anomalous=0, count=40, stem="train", seed=1)
    test = _write_embeddings(root / "test", anomalous=10, count=30, stem="test", seed=2)
    metas = [json.loads(line) for folder in (train, test) for line in (folder / "meta.jsonl").read_text().splitlines()]
    _write_shards(root / "shards", metas)
    return root


@pytest.mark.slow
def test_fit_score_evaluate_explain(workspace):
    root = workspace
    assert run_detect(["fit", "--method", "knn", "--embeddings", str(root / "train"), "--out", str(root / "model"),
                       "--k", "3"]) == 0
    assert (root / "model" / "detector.json").is_file()

    assert run_detect(["score", "--model", str(root / "model"), "--embeddings", str(root / "test"),
                       "--out", str(root / "scores")]) == 0
    rows = [json.loads(line) for line in (root / "scores" / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert all(len(row["neighbours"]) == 3 for row in rows)
    assert rows[0]["neighbours"][0]["key"].startswith("train-")
    assert rows[0]["source_name"] == "test.mp4"
    header = json.loads((root / "scores" / "header.json").read_text())
    assert header["dimension"] == DIMENSION
    assert header["reference_quantile"] == 0.99
    assert header["nearest_distance_reference"] > 0

    assert run_detect(["evaluate", "--scores", str(root / "scores"), "--out", str(root / "evaluation"),
                       "--smooth-sigma", "2"]) == 0
    metrics = json.loads((root / "evaluation" / "metrics.json").read_text())
    assert metrics["frame"]["micro"]["auroc"] >= 0.95
    assert metrics["smoothing"]["sigma_frames"] == 2.0
    for name in ("roc.png", "pr.png", metrics["plots"]["timelines"][0]["file"]):
        assert (root / "evaluation" / name).stat().st_size > 1000

    assert run_detect(["explain", "--scores", str(root / "scores"), "--shards", str(root / "shards"),
                       "--out", str(root / "report"), "--top", "12",
                       "--metrics", str(root / "evaluation" / "metrics.json")]) == 0
    page = (root / "report" / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) > 12
    for source in sources:
        assert not source.startswith(("http", "/")), source
        assert (root / "report" / source).is_file(), source
    assert "<script" not in page
    assert MISSING_KEY in page
    assert "clip not found in the given shard folders" in page
    assert f"frame {CORRUPT_KEY}.001.jpg failed to decode" in page
    assert "Nothing normal is near" in page
    assert "train.mp4, " in page, "neighbour source and span are shown"


@pytest.mark.slow
def test_evaluate_without_labels_fails(workspace, tmp_path):
    root = workspace
    folder = tmp_path / "unlabelled"
    meta = [{**_clip_meta("u", index, None)} for index in range(8)]
    save_embeddings(folder, np.random.default_rng(3).normal(size=(8, DIMENSION)).astype(np.float32), meta, {})
    if not (root / "model").exists():
        assert run_detect(["fit", "--embeddings", str(root / "train"), "--out", str(root / "model"), "--k", "3"]) == 0
    assert run_detect(["score", "--model", str(root / "model"), "--embeddings", str(folder),
                       "--out", str(tmp_path / "scores")]) == 0
    with pytest.raises(DetectInputError, match="no labels"):
        from detect.evaluate import evaluate_scores
        from detect.scores import read_scores

        evaluate_scores(read_scores(tmp_path / "scores"))
    assert run_detect(["evaluate", "--scores", str(tmp_path / "scores")]) == 2


def test_fit_refuses_anomalous_clips(workspace, tmp_path):
    assert run_detect(["fit", "--embeddings", str(workspace / "test"), "--out", str(tmp_path / "m")]) == 2
    assert run_detect(["fit", "--embeddings", str(workspace / "test"), "--out", str(tmp_path / "m"),
                       "--exclude-anomalous"]) == 0
    description = json.loads((tmp_path / "m" / "detector.json").read_text())
    assert description["fitted"]["normal_count"] == 20


@pytest.mark.slow
def test_command_errors_are_one_line(workspace, tmp_path):
    root = workspace
    if not (root / "model").exists():
        assert run_detect(["fit", "--embeddings", str(root / "train"), "--out", str(root / "model"), "--k", "3"]) == 0
    narrow = _write_embeddings(tmp_path / "narrow", anomalous=0, count=6, stem="narrow", seed=4, dimension=8)

    cases = [
        (["score", "--model", str(root / "model"), "--embeddings", str(narrow), "--out", str(tmp_path / "s")],
         "embeddings have dimension 8 but the model was fitted on 16"),
        (["score", "--model", str(tmp_path / "missing"), "--embeddings", str(narrow), "--out", str(tmp_path / "s")],
         "detector folder not found"),
        (["fit", "--embeddings", str(tmp_path / "missing"), "--out", str(tmp_path / "m")],
         "embeddings folder not found"),
    ]
    for argv, message in cases:
        result = subprocess.run([str(LATENTWATCH), "detect", *argv], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("latentwatch: error: ")
        assert message in lines[0]
    assert not (tmp_path / "s").exists()
