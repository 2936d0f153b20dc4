"""Input mistakes through the `latentwatch` entry point: each gives exactly one error line and status 2.

The cases run in this process through `shards.cli.main` (the function the installed command calls), so
the table stays fast. `test_faults_media.py` and `test_faults_disk.py` run the installed command itself.
Every case also checks that the output path it names was not created.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detect.embeddings import save_embeddings
from fault_media import random_bytes, write_video
from shards.cli import main

ROWS, DIMENSION = 60, 16


def clip_meta(index: int) -> dict:
    return {"key": f"walk-{index * 1000:07d}", "source": "walk.mp4", "start_s": float(index),
            "end_s": index + 1.0, "label": "walk" if index % 2 else "run"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Valid embeddings and a fitted model, and the bad variants the cases point at."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    header = {"encoder": "test", "checkpoint": None, "modality": "joint"}
    vectors = rng.normal(size=(ROWS, DIMENSION)).astype(np.float32)
    meta = [clip_meta(index) for index in range(ROWS)]
    save_embeddings(root / "normal", vectors, meta, header)
    save_embeddings(root / "narrow", vectors[:, :8], meta, header)
    save_embeddings(root / "byol", vectors, meta, {**header, "checkpoint": "/runs/byol/last.pt"})
    save_embeddings(root / "shift", vectors, meta, {**header, "checkpoint": "/runs/audio_shift/last.pt"})
    assert main(["detect", "fit", "--embeddings", str(root / "byol"), "--out", str(root / "byol_model")]) == 0
    assert main(["detect", "fit", "--embeddings", str(root / "normal"), "--out", str(root / "model")]) == 0

    # Folders that a loader must refuse, written by hand because the library refuses to write them.
    for name, array, rows in [
        ("nan_rows", np.where(np.arange(ROWS)[:, None] == 7, np.nan, vectors).astype(np.float32), meta),
        ("integer_rows", np.ones((ROWS, DIMENSION), np.int64), meta),
        ("short_meta", vectors, meta[:-3]),
        ("empty", np.zeros((0, DIMENSION), np.float32), []),
    ]:
        folder = root / name
        folder.mkdir()
        np.save(folder / "embeddings.npy", array, allow_pickle=False)
        (folder / "meta.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        header_json = json.loads((root / "normal" / "header.json").read_text())
        header_json.update(count=int(array.shape[0]), dtype=str(array.dtype))
        (folder / "header.json").write_text(json.dumps(header_json))

    unlabelled = [{key: value for key, value in row.items() if key != "label"} for row in meta]
    save_embeddings(root / "unlabelled", vectors, unlabelled, header)

    future = root / "future_model"
    future.mkdir()
    for path in (root / "model").iterdir():
        future.joinpath(path.name).write_bytes(path.read_bytes())
    settings = json.loads((future / "detector.json").read_text())
    settings["format_version"] = 99
    (future / "detector.json").write_text(json.dumps(settings))

    (root / "corrupt.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    torch.save({"model": print}, root / "code.pt")  # unpickling it would need a global: refused
    write_video(root / "walk.mp4", seconds=2)
    assert main(["shards", "build", str(root / "walk.mp4"), "--out", str(root / "walk_shards")]) == 0
    random_bytes(root / "random.mp4")
    return root


CASES = {
    # name: (arguments with {root} for the workspace, a phrase the error line contains)
    "knn: negative k": ("detect fit --embeddings {root}/normal --out {root}/out --k -1", "k must be"),
    "knn: k larger than the normal set": ("detect fit --embeddings {root}/normal --out {root}/out --k 500",
                                          "normal clips"),
    "knn: contamination out of range": (
        "detect fit --embeddings {root}/normal --out {root}/out --contamination 2", "contamination"),
    "conflicting flags: sequence length for knn": (
        "detect fit --embeddings {root}/normal --out {root}/out --sequence-length 5", "--sequence-length"),
    "conflicting flags: epochs for knn": (
        "detect fit --embeddings {root}/normal --out {root}/out --epochs 3", "--epochs"),
    "conflicting flags: calibration rows for iae": (
        "detect fit --method iae --embeddings {root}/normal --out {root}/out --calibration-rows 10",
        "--calibration-rows"),
    "knn: negative calibration rows": (
        "detect fit --embeddings {root}/normal --out {root}/out --calibration-rows -5", "calibration"),
    "embeddings: NaN row": ("detect fit --embeddings {root}/nan_rows --out {root}/out", "rows 7"),
    "embeddings: integer dtype": ("detect fit --embeddings {root}/integer_rows --out {root}/out", "int64"),
    "embeddings: meta.jsonl shorter than the array": (
        "detect fit --embeddings {root}/short_meta --out {root}/out", "meta"),
    "embeddings: empty normal set": ("detect fit --embeddings {root}/empty --out {root}/out", "empty"),
    "embeddings: folder missing": ("detect fit --embeddings {root}/nowhere --out {root}/out", "nowhere"),
    "score: dimension differs from the fitted one": (
        "detect score --model {root}/model --embeddings {root}/narrow --out {root}/out", "dimension"),
    "score: embeddings of another encoder with the same dimension": (
        "detect score --model {root}/byol_model --embeddings {root}/shift --out {root}/out", "--allow-other-encoder"),
    "score: model folder from a future version": (
        "detect score --model {root}/future_model --embeddings {root}/normal --out {root}/out", "version"),
    "score: an embeddings folder given as the model": (
        "detect score --model {root}/normal --embeddings {root}/normal --out {root}/out", "detector.json"),
    "evaluate: scores folder missing": ("detect evaluate --scores {root}/nowhere --out {root}/out", "nowhere"),
    "evaluate: an embeddings folder given as scores": (
        "detect evaluate --scores {root}/normal --out {root}/out", "scores.jsonl"),
    "probe: labels missing": (
        "probe linear --train {root}/unlabelled --test {root}/unlabelled --out {root}/out", "label"),
    "embed: corrupt checkpoint": (
        "embed --checkpoint {root}/corrupt.pt --shards {root}/walk_shards --out {root}/out", "corrupt.pt"),
    "embed: checkpoint that would run code": (
        "embed --checkpoint {root}/code.pt --shards {root}/walk_shards --out {root}/out", "weights_only"),
    "embed: checkpoint missing": (
        "embed --checkpoint {root}/none.pt --shards {root}/walk_shards --out {root}/out", "none.pt"),
    "shards: negative clip length": ("shards build {root}/walk.mp4 --out {root}/out --clip-seconds -1",
                                     "--clip-seconds"),
    "shards: clip longer than the video": (
        "shards build {root}/walk.mp4 --out {root}/out --clip-seconds 100", "shorter than one clip"),
    "shards: input missing": ("shards build {root}/none.mp4 --out {root}/out", "none.mp4"),
    "shards: only a random-bytes file": ("shards build {root}/random.mp4 --out {root}/out", "random.mp4"),
    "shards: output exists without --overwrite": ("shards build {root}/walk.mp4 --out {root}/model",
                                                  "already exists"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_input_mistake_one_error_line(workspace, capsys, case):
    template, phrase = CASES[case]
    arguments = template.format(root=workspace).split()

    status = main(arguments)

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("latentwatch: error:")]
    assert status == 2, case
    assert len(errors) == 1, errors
    assert phrase in errors[0], errors[0]
    assert not (workspace / "out").exists()
