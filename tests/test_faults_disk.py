"""A full disk during a write, simulated with a per-process file-size limit (RLIMIT_FSIZE).

Past the limit every write fails with "File too large" (EFBIG), as it would with ENOSPC on a full disk,
without needing a small filesystem mounted. Each command must say so in one line, exit non-zero, leave
no partial output that looks finished, and keep what was written before intact.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detect.embeddings import save_embeddings
from fault_media import write_video

LATENTWATCH = Path(sys.executable).with_name("latentwatch")


def run_limited(arguments: list[str], limit_bytes: int) -> subprocess.CompletedProcess:
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [str(LATENTWATCH), *arguments], capture_output=True, text=True, timeout=300,
        preexec_fn=limit_file_size,
    )


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def assert_one_line_about_size(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("latentwatch: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "File too large" in errors[0] or "disk is probably full" in errors[0]


def visible_entries(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir() if not path.name.startswith(".")}


def test_shard_build_on_a_full_disk_keeps_the_previous_set(tmp_path):
    video = write_video(tmp_path / "walk.mp4", seconds=6, size=(160, 120), audio_rate=16000)
    out = tmp_path / "shards"
    first = subprocess.run(
        [str(LATENTWATCH), "shards", "build", str(video), "--out", str(out)], capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-2000:]
    before = folder_digest(out)

    result = run_limited(
        ["shards", "build", str(video), "--out", str(out), "--overwrite", "--clips-per-shard", "1"], 20_000
    )
    assert_one_line_about_size(result)
    assert folder_digest(out) == before
    assert visible_entries(tmp_path) == {"walk.mp4", "shards"}


@pytest.fixture
def embeddings(tmp_path):
    rng = np.random.default_rng(0)
    meta = [{"key": f"clip-{index:07d}", "source": "walk.mp4", "start_s": float(index), "end_s": index + 1.0}
            for index in range(400)]
    normal = save_embeddings(tmp_path / "normal", rng.normal(size=(400, 32)).astype(np.float32), meta,
                             {"encoder": "test", "checkpoint": None, "modality": "joint"})
    return normal


def test_detector_fit_and_score_on_a_full_disk_keep_earlier_outputs(tmp_path, embeddings):
    model = tmp_path / "model"
    fitted = subprocess.run(
        [str(LATENTWATCH), "detect", "fit", "--embeddings", str(embeddings), "--out", str(model)],
        capture_output=True, text=True,
    )
    assert fitted.returncode == 0, fitted.stderr[-2000:]
    scores = tmp_path / "scores"
    scored = subprocess.run(
        [str(LATENTWATCH), "detect", "score", "--model", str(model), "--embeddings", str(embeddings),
         "--out", str(scores)], capture_output=True, text=True,
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    model_before, scores_before = folder_digest(model), folder_digest(scores)

    refit = run_limited(["detect", "fit", "--embeddings", str(embeddings), "--out", str(model)], 4_000)
    assert_one_line_about_size(refit)
    rescore = run_limited(
        ["detect", "score", "--model", str(model), "--embeddings", str(embeddings), "--out", str(scores)], 4_000
    )
    assert_one_line_about_size(rescore)

    assert folder_digest(model) == model_before
    assert folder_digest(scores) == scores_before
    assert visible_entries(tmp_path) == {"normal", "model", "scores"}
    json.loads((scores / "header.json").read_text())
