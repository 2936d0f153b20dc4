"""A full disk during a write, simulated with a per-process file-size limit (RLIMIT_FSIZE).

Past the limit every write fails with "File too large" (EFBIG), as it would with ENOSPC on a full disk,
without needing a small filesystem mounted. Each command must report it in one line, exit non-zero, leave
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


def test_full_disk_keeps_shard_set(tmp_path):
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


def test_full_disk_keeps_detector_outputs(tmp_path, embeddings):
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


PRETRAIN_CONFIG = {
    "data": {"modality": "video", "num_frames": 4, "crop_size": 32, "num_workers": 1, "shuffle_buffer": 4},
    "model": {"video_width": 8, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"projector_hidden_dim": 32, "projector_dim": 16, "predictor_hidden_dim": 32},
    "optim": {"batch_size": 2, "total_steps": 60, "warmup_steps": 2, "lr": 0.003},
    "run": {"seed": 0, "log_every": 1, "checkpoint_every": 3, "wandb_mode": "disabled"},
}


@pytest.mark.slow
def test_full_disk_keeps_last_checkpoint(tmp_path):
    import os
    import signal
    import time

    import yaml

    from pretrain.checkpoint import load_checkpoint

    video = write_video(tmp_path / "walk.mp4", seconds=5, size=(160, 120))
    shards = tmp_path / "shards"
    built = subprocess.run([str(LATENTWATCH), "shards", "build", str(video), "--out", str(shards),
                            "--clips-per-shard", "2"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    config = {**PRETRAIN_CONFIG, "data": {**PRETRAIN_CONFIG["data"], "shards": str(shards)}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "pretrain.py"),
               "--config", str(tmp_path / "config.yaml"), f"run.out_dir={run}"]
    environment = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}

    # Train until the step-3 checkpoint exists and step 4 is logged, then kill the run.
    partial = tmp_path / "run.partial"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    deadline = time.monotonic() + 240
    while not (partial / "log.jsonl").is_file() or '"step": 4,' not in (partial / "log.jsonl").read_text():
        assert process.poll() is None, "training stopped before step 4"
        assert time.monotonic() < deadline, "training never reached step 4"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    checkpoint = partial / "checkpoints" / "last.pt"
    saved = checkpoint.read_bytes()
    saved_step = load_checkpoint(checkpoint)["step"]
    assert saved_step % 3 == 0
    assert saved_step < 60

    # Resume with files limited below a checkpoint's size: the next save fails.
    limit = len(saved) // 2

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=environment,
                          preexec_fn=limit_file_size, timeout=300)
    assert full.returncode == 1, full.stderr[-2000:]
    assert "Traceback" not in full.stderr, full.stderr[-2000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("pretrain.py: error:")]
    assert len(errors) == 1, full.stderr[-2000:]
    assert "File too large" in errors[0]
    assert checkpoint.read_bytes() == saved
    assert load_checkpoint(checkpoint)["step"] == saved_step

    # With room again, the same command finishes the run.
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=environment,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 60
