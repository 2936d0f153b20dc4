"""Resume determinism on real shards: a run killed with SIGKILL and resumed logs what an uninterrupted run logs.

Also: a SIGKILL during a checkpoint save leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
import torch
import yaml

from pretrain.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "vtest.avi"
ENVIRONMENT = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow

# Compared steps after the checkpoint the resumed run starts from.
COMPARED_STEPS = 5
CONFIG = {
    "data": {"modality": "video", "num_frames": 4, "crop_size": 32, "num_workers": 1, "shuffle_buffer": 4},
    "model": {"video_width": 8, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"projector_hidden_dim": 32, "projector_dim": 16, "predictor_hidden_dim": 32},
    "optim": {"batch_size": 2, "total_steps": 12, "warmup_steps": 2, "lr": 0.003},
    "run": {"seed": 5, "log_every": 1, "checkpoint_every": 3, "wandb_mode": "disabled"},
}


def cut_footage(source: Path, destination: Path, seconds: float) -> None:
    """Re-encode the first `seconds` of `source` at 160x120 so the shard set stays small."""
    with av.open(str(source)) as reader, av.open(str(destination), "w") as writer:
        stream = reader.streams.video[0]
        fps = round(float(stream.average_rate))
        output = writer.add_stream("mpeg4", rate=fps)
        output.width, output.height, output.pix_fmt = 160, 120, "yuv420p"
        for index, frame in enumerate(reader.decode(stream)):
            if index >= seconds * fps:
                break
            for packet in output.encode(frame.reformat(width=160, height=120, format="yuv420p")):
                writer.mux(packet)
        for packet in output.encode():
            writer.mux(packet)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    video = folder / "walkway.mp4"
    cut_footage(FOOTAGE, video, seconds=4.0)
    result = subprocess.run(
        [str(BIN / "latentwatch"), "shards", "build", str(video), "--out", str(folder / "shards"),
         "--clip-seconds", "1", "--stride-seconds", "0.5", "--clips-per-shard", "2"],
        capture_output=True, text=True, cwd=folder, env=ENVIRONMENT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = {**CONFIG, "data": {**CONFIG["data"], "shards": str(folder / "shards")}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def pretrain_command(workspace: Path, run: Path, *arguments: str) -> list[str]:
    return [
        sys.executable, str(REPO / "pretrain.py"), "--config", str(workspace / "config.yaml"),
        f"run.out_dir={run}", *arguments,
    ]


def read_log(run: Path) -> dict[int, dict]:
    return {record["step"]: record for record in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def logged_steps(log_path: Path) -> int:
    """Return the last step in a log.jsonl that may be being written, or 0."""
    if not log_path.is_file():
        return 0
    steps = [0]
    for line in log_path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            pass
    return max(steps)


@pytest.fixture(scope="module")
def uninterrupted(workspace: Path) -> dict[int, dict]:
    run = workspace / "uninterrupted"
    result = subprocess.run(
        pretrain_command(workspace, run), capture_output=True, text=True, env=ENVIRONMENT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_log(run)


def kill_after_step(command: list[str], log_path: Path, step: int) -> None:
    """Start a training process and SIGKILL it as soon as its log shows `step` (a checkpoint lies before it)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENVIRONMENT)
    try:
        deadline = time.monotonic() + 240
        while logged_steps(log_path) < step:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "training never reached the step to kill it at"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()


@pytest.mark.parametrize("kill_at", [4, 7])
def test_killed_run_resumes_to_same_losses(workspace: Path, uninterrupted: dict[int, dict], kill_at: int) -> None:
    run = workspace / f"killed_{kill_at}"
    partial = Path(f"{run}.partial")
    kill_after_step(pretrain_command(workspace, run), partial / "log.jsonl", kill_at)

    assert partial.is_dir()
    assert not run.exists()
    resumed_from = load_checkpoint(partial / "checkpoints" / "last.pt")["step"]
    assert resumed_from % CONFIG["run"]["checkpoint_every"] == 0
    assert 3 <= resumed_from <= CONFIG["optim"]["total_steps"] - COMPARED_STEPS

    result = subprocess.run(
        pretrain_command(workspace, run, "--resume"), capture_output=True, text=True, env=ENVIRONMENT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]

    resumed = read_log(run)
    assert sorted(resumed) == list(range(1, CONFIG["optim"]["total_steps"] + 1))
    for step in range(resumed_from + 1, resumed_from + COMPARED_STEPS + 1):
        for name in ("loss", "lr", "tau", "grad_norm", "embedding_std", "projection_std"):
            assert resumed[step][name] == pytest.approx(uninterrupted[step][name], rel=1e-5, abs=1e-6), (step, name)


def test_resume_restores_every_part_of_the_state(workspace: Path, uninterrupted: dict[int, dict]) -> None:
    # The last checkpoints of the uninterrupted and of a resumed run agree in weights, optimiser and streams.
    resumed = load_checkpoint(workspace / "killed_4" / "checkpoints" / "last.pt")
    reference = load_checkpoint(workspace / "uninterrupted" / "checkpoints" / "last.pt")

    for name, tensor in reference["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    assert resumed["ranks"][0]["data_positions"] == reference["ranks"][0]["data_positions"]
    assert resumed["scheduler"]["last_epoch"] == reference["scheduler"]["last_epoch"]
    torch.testing.assert_close(resumed["ranks"][0]["rng"]["torch"], reference["ranks"][0]["rng"]["torch"])


SAVE_LOOP = """
import sys, torch
from pretrain.checkpoint import save_checkpoint
path = sys.argv[1]
save_checkpoint(path, {"generation": 0, "weights": torch.zeros(4)})
print("first", flush=True)
generation = 0
while True:
    generation += 1
    save_checkpoint(path, {"generation": generation, "weights": torch.full((4_000_000,), float(generation))})
"""


def test_kill_during_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    for delay in (0.05, 0.3, 0.7):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(path)], stdout=subprocess.PIPE, text=True, env=ENVIRONMENT
        )
        assert process.stdout.readline().strip() == "first"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        process.stdout.close()

        payload = torch.load(path, weights_only=True)
        expected = torch.full_like(payload["weights"], float(payload["generation"]))
        torch.testing.assert_close(payload["weights"], expected)
