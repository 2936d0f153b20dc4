"""DINO: loss, centring, teacher temperature, multi-crop views, and two trainer steps on a real shard set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pretrain.config import ConfigError, PretrainConfig, config_from_dict
from pretrain.data import TwoViewClips
from pretrain.embed import load_encoder
from pretrain.losses import dino_loss
from pretrain.methods import build_method
from pretrain.methods.dino import DINO, next_center, teacher_temperature

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "bigbuckbunny.mp4"

SMALL = {
    "data": {"shards": "unused", "num_frames": 4, "crop_size": 32, "local_views": 2, "local_crop_size": 16},
    "model": {"video_width": 4, "audio_width": 4, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"name": "dino", "head_hidden_dim": 32, "head_bottleneck_dim": 16, "head_out_dim": 64},
}


def small_config(modality: str = "audio_video", **method: object) -> PretrainConfig:
    data = {**SMALL["data"], "modality": modality}
    return config_from_dict(PretrainConfig, {**SMALL, "data": data, "method": {**SMALL["method"], **method}})


def multi_crop_batch(batch_size: int = 4, local_views: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "video": torch.randn(2, batch_size, 3, 4, 32, 32, generator=generator),
        "audio": torch.randn(2, batch_size, 1, 64, 40, generator=generator),
        "video_local": torch.randn(local_views, batch_size, 3, 4, 16, 16, generator=generator),
        "audio_local": torch.randn(local_views, batch_size, 1, 64, 20, generator=generator),
    }


def test_dino_loss_matches_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 8, generator=generator) for _ in range(3)]
    teacher = [torch.randn(3, 8, generator=generator) for _ in range(2)]
    center = torch.randn(1, 8, generator=generator)

    def cross_entropy(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        target = F.softmax((t - center) / 0.05, dim=-1)
        return -(target * F.log_softmax(s / 0.1, dim=-1)).sum(-1).mean()

    # Teacher view i is never paired with student view i: 2 teachers x 3 students - 2 = 4 pairs.
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(cross_entropy(teacher[t], student[s]) for t, s in pairs) / len(pairs)
    actual = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.05)
    assert torch.allclose(actual, expected, atol=1e-6)


def test_dino_loss_sends_no_gradient_to_teacher() -> None:
    student = [torch.randn(2, 8, requires_grad=True) for _ in range(2)]
    teacher = [torch.randn(2, 8, requires_grad=True) for _ in range(2)]
    dino_loss(student, teacher, torch.zeros(1, 8), 0.1, 0.04).backward()
    assert student[0].grad is not None
    assert teacher[0].grad is None


def test_teacher_temperature_warmup() -> None:
    assert teacher_temperature(0, 0.04, 0.07, 10) == pytest.approx(0.04)
    assert teacher_temperature(5, 0.04, 0.07, 10) == pytest.approx(0.055)
    assert teacher_temperature(10, 0.04, 0.07, 10) == pytest.approx(0.07)
    assert teacher_temperature(500, 0.04, 0.07, 10) == pytest.approx(0.07)
    assert teacher_temperature(0, 0.04, 0.07, 0) == pytest.approx(0.07)


def test_method_uses_scheduled_teacher_temperature() -> None:
    torch.manual_seed(0)
    config = small_config(teacher_temp_start=0.04, teacher_temp=0.08, teacher_temp_warmup_steps=4)
    method = DINO.from_config(config)
    temperatures = []
    for step in (0, 2, 4):
        method.set_step(step)
        _, logs = method(multi_crop_batch())
        temperatures.append(logs["teacher_temp"])
    assert temperatures == pytest.approx([0.04, 0.06, 0.08])


def test_next_center_follows_momentum() -> None:
    center = torch.tensor([[1.0, -2.0, 0.5]])
    logits = torch.tensor([[3.0, 0.0, 1.0], [1.0, 2.0, -1.0]])
    expected = 0.9 * center + 0.1 * torch.tensor([[2.0, 1.0, 0.0]])
    assert torch.allclose(next_center(center, logits, 0.9), expected, atol=1e-7)


def test_forward_updates_center_by_momentum() -> None:
    torch.manual_seed(0)
    method = DINO.from_config(small_config(center_momentum=0.9))
    method.center.fill_(0.25)
    batch = multi_crop_batch()

    # The teacher runs in train mode, so the same input gives the same batch-norm statistics and output.
    with torch.no_grad():
        video, audio = batch["video"].flatten(0, 1), batch["audio"].flatten(0, 1)  # (2B, ...)
        teacher_joint = method.target["encoder"](video=video, audio=audio)
        teacher_output = method.target["head"](teacher_joint["joint"])  # (2B, K)
    method(batch)

    expected = 0.9 * 0.25 + 0.1 * teacher_output.mean(dim=0, keepdim=True)
    assert torch.allclose(method.center, expected, atol=1e-6)


def test_eval_forward_keeps_center() -> None:
    method = DINO.from_config(small_config()).eval()
    method(multi_crop_batch())
    assert torch.count_nonzero(method.center) == 0


def test_teacher_sees_only_global_views() -> None:
    torch.manual_seed(0)
    method = DINO.from_config(small_config())
    seen: dict[str, list[tuple[int, ...]]] = {"teacher": [], "student": []}
    method.target["encoder"].video.register_forward_hook(
        lambda module, inputs, output: seen["teacher"].append(tuple(inputs[0].shape))
    )
    method.online["encoder"].video.register_forward_hook(
        lambda module, inputs, output: seen["student"].append(tuple(inputs[0].shape))
    )
    method(multi_crop_batch(batch_size=4, local_views=3))

    assert seen["teacher"] == [(8, 3, 4, 32, 32)]
    assert sorted(seen["student"]) == [(8, 3, 4, 32, 32), (12, 3, 4, 16, 16)]


def test_local_views_change_only_student_side() -> None:
    torch.manual_seed(0)
    method = DINO.from_config(small_config())
    batch = multi_crop_batch()
    other = {**batch, "video_local": torch.randn_like(batch["video_local"])}
    method.eval()
    _, logs = method(batch)
    _, other_logs = method(other)
    assert logs["teacher_entropy"] == pytest.approx(other_logs["teacher_entropy"])
    assert logs["dino_loss"] != pytest.approx(other_logs["dino_loss"])


@pytest.mark.parametrize("modality", ["video", "audio", "audio_video"])
def test_dino_loss_decreases_on_fixed_batch(modality: str) -> None:
    torch.manual_seed(0)
    method = build_method(small_config(modality))
    batch = {
        name: value
        for name, value in multi_crop_batch().items()
        if name.split("_")[0] in modality.split("_")
    }
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(6):
        # A fixed centre keeps the teacher's targets fixed, so only the student's fit can change the loss.
        method.center.zero_()
        loss, logs = method(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert 0.0 <= logs["teacher_entropy"] <= np.log(64) + 1e-4
        assert logs["teacher_kl_uniform"] >= -1e-5
    assert losses[-1] < losses[0]


def test_local_views_need_dino() -> None:
    with pytest.raises(ConfigError, match="data.local_views"):
        config_from_dict(
            PretrainConfig, {"data": {"shards": "unused", "local_views": 2}, "method": {"name": "byol"}}
        )


def test_two_view_clips_make_local_views() -> None:
    config = small_config()
    dataset = TwoViewClips(["unused"], config.data, seed=0)
    rng = np.random.default_rng(0)
    clip = SimpleNamespace(
        key="clip",
        frames=rng.integers(0, 255, (10, 40, 48, 3), dtype=np.uint8),
        audio=rng.uniform(-0.5, 0.5, 16000).astype(np.float32),
    )
    sample = dataset.make_views(clip, torch.Generator().manual_seed(0))

    assert sample["video"].shape == (2, 3, 4, 32, 32)
    assert sample["video_local"].shape == (2, 3, 4, 16, 16)
    assert sample["audio_local"].shape[:3] == (2, 1, 64)
    assert sample["audio_local"].shape[-1] == round(sample["audio"].shape[-1] / 2)


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dino")
    result = subprocess.run(
        [str(BIN / "latentwatch"), "shards", "build", str(FOOTAGE), "--out", str(folder / "shards"),
         "--clip-seconds", "1", "--stride-seconds", "0.5", "--max-side", "64", "--clips-per-shard", "16"],
        capture_output=True, text=True, cwd=folder, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "shards"


def test_two_trainer_steps_on_real_shards(shard_set: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = {
        **SMALL,
        "data": {**SMALL["data"], "shards": str(shard_set), "modality": "audio_video", "num_workers": 0,
                 "shuffle_buffer": 4},
        "method": {**SMALL["method"], "teacher_temp_warmup_steps": 2, "tau_base": 0.996},
        "optim": {"batch_size": 3, "total_steps": 2, "warmup_steps": 1},
        "run": {"seed": 0, "log_every": 1, "checkpoint_every": 2, "wandb_mode": "disabled", "out_dir": str(run)},
    }
    (tmp_path / "dino.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(REPO / "pretrain.py"), "--config", str(tmp_path / "dino.yaml")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 2]
    assert [record["teacher_temp"] for record in log] == pytest.approx([0.04, 0.055])
    for record in log:
        assert {"dino_loss", "teacher_entropy", "teacher_kl_uniform", "embedding_std"} <= set(record)
        assert np.isfinite(record["loss"])

    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["method"] == "dino"
    assert torch.count_nonzero(checkpoint["model"]["center"]) > 0
    encoder, _, _ = load_encoder(run / "checkpoints" / "last.pt")
    assert encoder.dims["joint"] == 16
