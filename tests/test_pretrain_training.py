"""End to end on a tiny shard set cut from 3 s of tools/footage/vtest.avi: train, resume, embed, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from shards.cli import main as latentwatch_main

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "vtest.avi"

pytestmark = pytest.mark.slow

TINY_CONFIG = {
    "data": {"modality": "video", "num_frames": 4, "crop_size": 32, "num_workers": 1, "shuffle_buffer": 4},
    "model": {"video_width": 16, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"projector_hidden_dim": 32, "projector_dim": 16, "predictor_hidden_dim": 32},
    "optim": {"batch_size": 2, "total_steps": 3, "warmup_steps": 1, "lr": 0.001},
    "run": {"seed": 3, "log_every": 1, "checkpoint_every": 2, "wandb_mode": "offline"},
}
LOG_KEYS = {"step", "loss", "lr", "tau", "grad_norm", "samples_per_s", "embedding_std"}


def load_pretrain_script():
    """Import pretrain.py as a module, so error cases run in this process instead of paying for a new one."""
    spec = importlib.util.spec_from_file_location("pretrain_script", REPO / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_command(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=environment, timeout=300)


def cut_footage(source: Path, destination: Path, seconds: float) -> None:
    """Re-encode the first `seconds` of `source` at 320x240 so the test shard set stays small."""
    with av.open(str(source)) as reader, av.open(str(destination), "w") as writer:
        stream = reader.streams.video[0]
        fps = round(float(stream.average_rate))
        output = writer.add_stream("mpeg4", rate=fps)
        output.width, output.height, output.pix_fmt = 320, 240, "yuv420p"
        for index, frame in enumerate(reader.decode(stream)):
            if index >= seconds * fps:
                break
            for packet in output.encode(frame.reformat(width=320, height=240, format="yuv420p")):
                writer.mux(packet)
        for packet in output.encode():
            writer.mux(packet)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    video = folder / "walkway.mp4"
    cut_footage(FOOTAGE, video, seconds=3.0)
    result = run_command(
        [str(BIN / "latentwatch"), "shards", "build", str(video), "--out", str(folder / "shards"),
         "--clip-seconds", "1", "--stride-seconds", "0.5", "--clips-per-shard", "3"],
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    config = {**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "shards": str(folder / "shards")}}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    return folder


def pretrain(workspace: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "pretrain.py"), "--config", str(workspace / "tiny.yaml"), *arguments]
    return run_command(command, cwd=workspace)


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(workspace: Path) -> Path:
    run = workspace / "run"
    result = pretrain(workspace, f"run.out_dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run


def test_trainer_writes_run_folder(trained_run: Path) -> None:
    assert (trained_run / "checkpoints" / "init.pt").is_file()
    assert (trained_run / "checkpoints" / "last.pt").is_file()
    assert (trained_run / "wandb").is_dir()
    assert not Path(str(trained_run) + ".partial").exists()

    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["run"]["seed"] == 3
    assert config["optim"]["total_steps"] == 3

    log = read_log(trained_run)
    assert [record["step"] for record in log] == [1, 2, 3]
    for record in log:
        assert LOG_KEYS <= set(record)
        assert 0.0 <= record["loss"] <= 4.0
        assert 0.99 <= record["tau"] <= 1.0


def test_checkpoints_load_weights_only(trained_run: Path) -> None:
    init = torch.load(trained_run / "checkpoints" / "init.pt", weights_only=True)
    last = torch.load(trained_run / "checkpoints" / "last.pt", weights_only=True)
    assert init["step"] == 0
    assert last["step"] == 3
    assert last["method"] == "byol"
    assert {"optimizer", "scheduler", "rng"} <= set(last)
    name = "online.encoder.fusion.0.weight"
    assert not torch.equal(init["model"][name], last["model"][name])


def test_resume_continues_from_saved_step(workspace: Path, trained_run: Path) -> None:
    result = pretrain(workspace, f"run.out_dir={trained_run}", "optim.total_steps=5", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]

    assert [record["step"] for record in read_log(trained_run)] == [1, 2, 3, 4, 5]
    last = torch.load(trained_run / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 5
    adam_steps = {float(state["step"]) for state in last["optimizer"]["state"].values()}
    assert adam_steps == {5.0}
    assert yaml.safe_load((trained_run / "config.yaml").read_text())["optim"]["total_steps"] == 5


def test_embed_writes_rows_with_matching_meta(workspace: Path, trained_run: Path) -> None:
    out = workspace / "embeddings"
    result = run_command(
        [str(BIN / "latentwatch"), "embed", "--checkpoint", str(trained_run / "checkpoints" / "last.pt"),
         "--shards", str(workspace / "shards"), "--out", str(out), "--batch-size", "2"],
        cwd=workspace,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    embeddings = np.load(out / "embeddings.npy", allow_pickle=False)
    meta = [json.loads(line) for line in (out / "meta.jsonl").read_text().splitlines()]
    header = json.loads((out / "header.json").read_text())
    index = json.loads((workspace / "shards" / "index.json").read_text())
    assert embeddings.shape == (index["num_clips"], 16)
    assert embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    assert len(meta) == len(embeddings)
    assert [row["key"] for row in meta] == sorted(row["key"] for row in meta)
    assert set(meta[0]) == {"key", "source", "source_name", "start_s", "end_s", "fps", "frame_indices",
                            "frame_labels", "label"}
    assert header["format_version"] == 1
    assert header["modality"] == "joint"
    assert (header["dimension"], header["count"], header["dtype"]) == (16, len(meta), "float32")


def test_embed_video_branch_float16(workspace: Path, trained_run: Path) -> None:
    out = workspace / "embeddings_video"
    status = latentwatch_main(
        ["embed", "--checkpoint", str(trained_run / "checkpoints" / "init.pt"), "--shards",
         str(workspace / "shards"), "--out", str(out), "--modality", "video", "--dtype", "float16"]
    )
    assert status == 0
    embeddings = np.load(out / "embeddings.npy", allow_pickle=False)
    assert embeddings.dtype == np.float16
    assert embeddings.shape[1] == 8 * TINY_CONFIG["model"]["video_width"]


def test_embed_input_errors(workspace: Path, trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    corrupt = workspace / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    last = str(trained_run / "checkpoints" / "last.pt")
    shards = str(workspace / "shards")
    cases = [
        (["--checkpoint", str(workspace / "none.pt"), "--shards", shards], "checkpoint not found"),
        (["--checkpoint", str(corrupt), "--shards", shards], "is corrupt or not a latentwatch checkpoint"),
        (["--checkpoint", last, "--shards", str(workspace / "nowhere")], "not a shard set"),
        (["--checkpoint", last, "--shards", shards, "--modality", "audio"], "has no audio embedding"),
    ]
    for index, (arguments, expected) in enumerate(cases):
        capsys.readouterr()
        status = latentwatch_main(["embed", *arguments, "--out", str(workspace / f"bad{index}")])
        error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("latentwatch:")]
        assert status == 2
        assert len(error_lines) == 1
        assert error_lines[0].startswith("latentwatch: error: ")
        assert expected in error_lines[0]
        assert not (workspace / f"bad{index}").exists()


def test_trainer_input_errors(workspace: Path, trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    script = load_pretrain_script()
    cases = [
        ([f"run.out_dir={trained_run}"], "already exists; pass --resume"),
        ([f"run.out_dir={workspace / 'new'}", f"data.shards={workspace / 'nowhere'}"], "not a shard set"),
        ([f"run.out_dir={workspace / 'new'}", "data.modality=audio_video"], "needs audio, but none of the"),
        ([f"run.out_dir={workspace / 'never'}", "--resume"], "nothing to resume"),
        ([f"run.out_dir={trained_run}", "model.joint_dim=8", "optim.total_steps=9", "--resume"],
         "the config changes model.joint_dim"),
    ]
    for arguments, expected in cases:
        capsys.readouterr()
        status = script.main(["--config", str(workspace / "tiny.yaml"), "run.wandb_mode=disabled", *arguments])
        error_lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2
        assert error_lines[-1].startswith("pretrain.py: error: ")
        assert expected in error_lines[-1]
    assert not (workspace / "new").exists()
    assert trained_run.is_dir()
    assert not Path(str(trained_run) + ".partial").exists()
