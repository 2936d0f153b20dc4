"""Two CPU processes under `accelerate launch` (gloo): disjoint shards, identical weights, exact resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pretrain.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "vtest.avi"
ENVIRONMENT = {
    **os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
    "ACCELERATE_USE_CPU": "true",
}

pytestmark = pytest.mark.slow

TOTAL_STEPS = 8
CONFIG = {
    "data": {"modality": "video", "num_frames": 4, "crop_size": 32, "num_workers": 1, "shuffle_buffer": 4},
    "model": {"video_width": 8, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"projector_hidden_dim": 32, "projector_dim": 16, "predictor_hidden_dim": 32},
    "optim": {"batch_size": 2, "total_steps": TOTAL_STEPS, "warmup_steps": 2, "lr": 0.003},
    "run": {"seed": 1, "log_every": 1, "checkpoint_every": 3, "wandb_mode": "disabled"},
}
SHARDS_LINE = re.compile(r"rank (\d) worker 0 reads \d+ shard\(s\) from position \d+: (.*)$")
KEYS_LINE = re.compile(r"rank (\d) step (\d+) worker 0 positions \[[\d, ]+\] keys (.*)$")
CHECKSUM_LINE = re.compile(r"rank (\d) step (\d+) parameter checksum (\S+)$")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    # 40 one-second clips 2 s apart in 10 shards: each process gets 5 shards of its own.
    result = subprocess.run(
        [str(BIN / "latentwatch"), "shards", "build", str(FOOTAGE), "--out", str(folder / "shards"),
         "--clip-seconds", "1", "--stride-seconds", "2", "--clips-per-shard", "4", "--max-side", "64"],
        capture_output=True, text=True, cwd=folder, env=ENVIRONMENT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = {**CONFIG, "data": {**CONFIG["data"], "shards": str(folder / "shards")}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def launch_command(workspace: Path, run: Path, *arguments: str) -> list[str]:
    return [
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "pretrain.py"),
        "--config", str(workspace / "config.yaml"), f"run.out_dir={run}", "-v", *arguments,
    ]


def descendants(pid: int) -> list[int]:
    """Return the ids of every process below `pid`, read from /proc (torch's launcher gives workers new sessions)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def read_log(run: Path) -> dict[int, dict]:
    return {record["step"]: record for record in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def uninterrupted(workspace: Path) -> tuple[Path, str]:
    run = workspace / "run"
    result = subprocess.run(
        launch_command(workspace, run), capture_output=True, text=True, env=ENVIRONMENT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result.stderr


def test_ranks_read_own_shards_and_stay_identical(uninterrupted: tuple[Path, str]) -> None:
    run, stderr = uninterrupted
    shards: dict[int, set[str]] = {}
    keys: dict[int, set[str]] = {0: set(), 1: set()}
    checksums: dict[tuple[int, int], str] = {}
    for line in stderr.splitlines():
        if match := SHARDS_LINE.search(line):
            shards[int(match.group(1))] = set(match.group(2).split(", "))
        elif match := KEYS_LINE.search(line):
            keys[int(match.group(1))].update(match.group(3).split())
        elif match := CHECKSUM_LINE.search(line):
            checksums[int(match.group(1)), int(match.group(2))] = match.group(3)

    assert set(shards) == {0, 1}
    assert len(shards[0]) == len(shards[1]) == 5
    assert not shards[0] & shards[1]
    assert keys[0] and keys[1]
    assert not keys[0] & keys[1]
    for step in range(1, TOTAL_STEPS + 1):
        assert checksums[0, step] == checksums[1, step], step
    assert len({checksums[0, step] for step in range(1, TOTAL_STEPS + 1)}) == TOTAL_STEPS

    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert len(checkpoint["ranks"]) == 2
    assert sorted(read_log(run)) == list(range(1, TOTAL_STEPS + 1))


def test_two_process_run_resumes_exactly(workspace: Path, uninterrupted: tuple[Path, str]) -> None:
    run = workspace / "killed"
    partial = Path(f"{run}.partial")
    process = subprocess.Popen(
        launch_command(workspace, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENVIRONMENT
    )
    try:
        deadline = time.monotonic() + 240
        while not (partial / "log.jsonl").is_file() or len((partial / "log.jsonl").read_text().splitlines()) < 4:
            assert process.poll() is None, "the launcher exited before step 4"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        # Workers first, so none outlives the launcher and finishes the run.
        for pid in [*descendants(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=60)

    resumed_from = load_checkpoint(partial / "checkpoints" / "last.pt")["step"]
    assert resumed_from in (3, 6)
    result = subprocess.run(
        launch_command(workspace, run, "--resume"), capture_output=True, text=True, env=ENVIRONMENT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]

    reference = read_log(uninterrupted[0])
    resumed = read_log(run)
    for step in range(resumed_from + 1, TOTAL_STEPS + 1):
        for name in ("loss", "grad_norm", "embedding_std"):
            assert resumed[step][name] == pytest.approx(reference[step][name], rel=1e-5, abs=1e-6), (step, name)
