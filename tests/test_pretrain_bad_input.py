"""Bad checkpoints given to `pretrain.py --resume` and `latentwatch embed`: one error line, nothing run or overwritten."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pretrain.checkpoint import load_checkpoint, save_checkpoint
from pretrain.config import PretrainConfig, config_from_dict, config_to_dict
from pretrain.errors import CheckpointError
from pretrain.methods import build_method
from pretrain.train import TrainState, build_optimizer, checkpoint_payload
from shards.cli import main as latentwatch_main

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "vtest.avi"

SMALL = {
    "data": {"modality": "video", "num_frames": 4, "crop_size": 32, "num_workers": 0, "shuffle_buffer": 4},
    "model": {"video_width": 8, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"projector_hidden_dim": 32, "projector_dim": 16, "predictor_hidden_dim": 32, "head_hidden_dim": 32,
               "head_bottleneck_dim": 16, "head_out_dim": 32},
    "optim": {"batch_size": 2, "total_steps": 4, "warmup_steps": 1},
    "run": {"seed": 0, "log_every": 1, "checkpoint_every": 2, "wandb_mode": "disabled"},
}


class RunsCode:
    """An object whose unpickling would create a file: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def load_pretrain_script():
    spec = importlib.util.spec_from_file_location("pretrain_script", REPO / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad_input")
    result = subprocess.run(
        [str(BIN / "latentwatch"), "shards", "build", str(FOOTAGE), "--out", str(folder / "shards"),
         "--clip-seconds", "1", "--stride-seconds", "10", "--max-side", "64"],
        capture_output=True, text=True, cwd=folder, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "shards"


def make_config(shards: Path, out_dir: Path, **sections: dict) -> PretrainConfig:
    raw = {name: {**values, **sections.get(name, {})} for name, values in SMALL.items()}
    raw["data"]["shards"] = str(shards)
    raw["run"]["out_dir"] = str(out_dir)
    return config_from_dict(PretrainConfig, raw)


def write_training_checkpoint(config: PretrainConfig, path: Path, step: int = 2) -> None:
    """Save a training checkpoint of `config`'s untrained method, as the trainer would at `step`."""
    method = build_method(config)
    optimizer = build_optimizer(method, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    payload = checkpoint_payload(
        method, config_to_dict(config), step=step, optimizer=optimizer, scheduler=scheduler,
        state=TrainState(step=step),
    )
    save_checkpoint(path, payload)


def resume_error(config_path: Path, run: Path, capsys: pytest.CaptureFixture) -> str:
    """Run `pretrain.py --resume` in this process and return its one error line; check nothing changed."""
    last = Path(f"{run}.partial") / "checkpoints" / "last.pt"
    before = last.read_bytes()
    capsys.readouterr()
    status = load_pretrain_script().main(["--config", str(config_path), f"run.out_dir={run}", "--resume"])
    error = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in error
    lines = [line for line in error.splitlines() if line.startswith("pretrain.py:")]
    assert len(lines) == 1
    assert last.read_bytes() == before
    assert not run.exists()
    return lines[0]


def prepare_run(shards: Path, tmp_path: Path, **sections: dict) -> tuple[Path, Path]:
    """Write a BYOL config and an empty partial run folder for it; return the config file and the run."""
    run = tmp_path / "run"
    config = make_config(shards, run)
    config_path = tmp_path / "byol.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(config)))
    (Path(f"{run}.partial") / "checkpoints").mkdir(parents=True)
    return config_path, run


def test_resume_rejects_other_method(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config_path, run = prepare_run(shards, tmp_path)
    dino = make_config(shards, run, method={"name": "dino"})
    write_training_checkpoint(dino, Path(f"{run}.partial") / "checkpoints" / "last.pt")
    assert "was written by method 'dino', not 'byol'" in resume_error(config_path, run, capsys)


def test_resume_rejects_other_size(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config_path, run = prepare_run(shards, tmp_path)
    larger = make_config(shards, run, model={"joint_dim": 32})
    write_training_checkpoint(larger, Path(f"{run}.partial") / "checkpoints" / "last.pt")
    assert "the config changes model.joint_dim" in resume_error(config_path, run, capsys)


def test_resume_rejects_corrupt_checkpoint(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config_path, run = prepare_run(shards, tmp_path)
    last = Path(f"{run}.partial") / "checkpoints" / "last.pt"
    write_training_checkpoint(make_config(shards, run), last)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert "is corrupt or not a latentwatch checkpoint" in resume_error(config_path, run, capsys)


def test_resume_rejects_code_in_checkpoint(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config_path, run = prepare_run(shards, tmp_path)
    marker = tmp_path / "code_ran"
    torch.save({"format_version": 1, "method": "byol", "model": RunsCode(marker)},
               Path(f"{run}.partial") / "checkpoints" / "last.pt")
    assert "safe loading (weights_only=True) rejected it" in resume_error(config_path, run, capsys)
    assert not marker.exists()


def embed_error(arguments: list[str], out: Path, capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    status = latentwatch_main(["embed", *arguments, "--out", str(out)])
    error = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in error
    lines = [line for line in error.splitlines() if line.startswith("latentwatch:")]
    assert len(lines) == 1
    assert not out.exists()
    return lines[0]


def test_embed_rejects_code_in_checkpoint(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "code_ran"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "method": "byol", "model": RunsCode(marker)}, checkpoint)
    line = embed_error(["--checkpoint", str(checkpoint), "--shards", str(shards)], tmp_path / "out", capsys)
    assert "safe loading (weights_only=True) rejected it" in line
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_embed_rejects_weights_of_other_size(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # The checkpoint claims a small model but holds the weights of a larger one.
    checkpoint = tmp_path / "mixed.pt"
    write_training_checkpoint(make_config(shards, tmp_path / "run", model={"joint_dim": 32}), checkpoint)
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"] = config_to_dict(make_config(shards, tmp_path / "run"))
    torch.save(payload, checkpoint)
    line = embed_error(["--checkpoint", str(checkpoint), "--shards", str(shards)], tmp_path / "out", capsys)
    assert "weights do not match its stored config" in line


def test_embed_rejects_unknown_method(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = tmp_path / "other.pt"
    write_training_checkpoint(make_config(shards, tmp_path / "run"), checkpoint)
    payload = torch.load(checkpoint, weights_only=True)
    payload["method"] = "simclr"
    torch.save(payload, checkpoint)
    line = embed_error(["--checkpoint", str(checkpoint), "--shards", str(shards)], tmp_path / "out", capsys)
    assert "method 'simclr', which this version does not know" in line


def test_embed_refuses_existing_folder(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = tmp_path / "last.pt"
    write_training_checkpoint(make_config(shards, tmp_path / "run"), checkpoint)
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("kept")
    capsys.readouterr()
    status = latentwatch_main(["embed", "--checkpoint", str(checkpoint), "--shards", str(shards), "--out", str(out)])
    assert status == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "kept"
