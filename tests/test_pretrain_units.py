"""Representation-layer units on tensors: losses, EMA, schedules, encoders, BYOL, checkpoints, views."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pretrain.checkpoint import CHECKPOINT_FORMAT_VERSION, load_checkpoint, save_checkpoint
from pretrain.collapse import normalized_embedding_std
from pretrain.config import PretrainConfig, config_to_dict, load_config
from pretrain.clip_stream import assign_shards
from pretrain.data import TwoViewClips, stack_views
from pretrain.ema import EMA, cosine_momentum
from pretrain.encoders import AudioEncoder, AVEncoder, VideoEncoder, build_encoder
from pretrain.errors import CheckpointError
from pretrain.losses import byol_loss, symmetric_byol_loss
from pretrain.methods import METHODS, build_method
from pretrain.methods.byol import BYOL
from pretrain.schedule import WarmupCosine

SMALL = [
    "data.shards=unused",
    "data.crop_size=32",
    "data.num_frames=4",
    "data.n_mels=32",
    "model.video_width=8",
    "model.audio_width=8",
    "model.fusion_hidden_dim=32",
    "model.joint_dim=16",
    "method.projector_hidden_dim=32",
    "method.projector_dim=16",
    "method.predictor_hidden_dim=32",
]


def small_config(*overrides: str) -> PretrainConfig:
    return load_config(PretrainConfig, None, [*SMALL, *overrides])


def view_batch(modality: str, batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    batch = {}
    if modality in ("video", "audio_video"):
        batch["video"] = torch.randn(2, batch_size, 3, 4, 32, 32, generator=generator)
    if modality in ("audio", "audio_video"):
        batch["audio"] = torch.randn(2, batch_size, 1, 32, 50, generator=generator)
    return batch


# losses and monitors


def test_byol_loss_bounds() -> None:
    vectors = torch.randn(5, 8)
    assert byol_loss(vectors, vectors).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(vectors, -vectors).item() == pytest.approx(4.0, abs=1e-5)
    assert byol_loss(vectors, 3.0 * vectors).item() == pytest.approx(0.0, abs=1e-6)


def test_byol_loss_matches_formula() -> None:
    prediction, target = torch.randn(6, 10), torch.randn(6, 10)
    expected = (2 - 2 * torch.nn.functional.cosine_similarity(prediction, target, dim=1)).mean()
    assert byol_loss(prediction, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_symmetric_loss_pairs_views_crosswise() -> None:
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    # Each prediction equals the other view's target, so the loss is zero only with crosswise pairing.
    assert symmetric_byol_loss((a, b), (b, a)).item() == pytest.approx(0.0, abs=1e-6)
    assert symmetric_byol_loss((a, b), (a, b)).item() > 0.1


def test_collapse_monitor() -> None:
    collapsed = torch.ones(16, 32)
    assert normalized_embedding_std(collapsed) == pytest.approx(0.0, abs=1e-6)
    spread = torch.randn(4096, 32, generator=torch.Generator().manual_seed(0))
    assert normalized_embedding_std(spread) == pytest.approx(1 / math.sqrt(32), rel=0.05)


# schedules and EMA


def test_cosine_momentum_endpoints() -> None:
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(500, 100, 0.99) == pytest.approx(1.0)
    values = [cosine_momentum(step, 100, 0.9) for step in range(101)]
    assert all(later >= earlier for earlier, later in zip(values, values[1:]))


def test_ema_moves_target_by_schedule() -> None:
    torch.manual_seed(0)
    online = torch.nn.Linear(4, 3)
    target = torch.nn.Linear(4, 3)
    before = {name: parameter.detach().clone() for name, parameter in target.named_parameters()}
    tau = cosine_momentum(10, 100, 0.99)

    EMA().update(online, target, tau)

    for name, parameter in target.named_parameters():
        expected = tau * before[name] + (1 - tau) * dict(online.named_parameters())[name].detach()
        torch.testing.assert_close(parameter.detach(), expected, rtol=0, atol=1e-7)
        distance_before = (before[name] - dict(online.named_parameters())[name]).detach().norm()
        distance_after = (parameter - dict(online.named_parameters())[name]).detach().norm().item()
        assert distance_after == pytest.approx(tau * distance_before.item(), rel=1e-5)


def test_ema_rejects_different_structures() -> None:
    with pytest.raises(ValueError, match="differ in parameters"):
        EMA().update(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.99)


def test_warmup_cosine_schedule() -> None:
    schedule = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert schedule(0) == pytest.approx(1 / 11)
    assert schedule(9) == pytest.approx(10 / 11)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.55)
    assert schedule(110) == pytest.approx(0.1)
    assert schedule(500) == pytest.approx(0.1)


# encoders


@pytest.mark.parametrize("modality", ["video", "audio", "audio_video"])
def test_av_encoder_output_keys_and_shapes(modality: str) -> None:
    encoder = build_encoder(small_config().model, modality)
    batch = view_batch(modality, batch_size=3)
    inputs = {name: tensor[0] for name, tensor in batch.items()}

    outputs = encoder(**inputs)

    expected_keys = {"joint", *batch}
    assert set(outputs) == expected_keys
    assert outputs["joint"].shape == (3, 16)
    if "video" in outputs:
        assert outputs["video"].shape == (3, 64)
    if "audio" in outputs:
        assert outputs["audio"].shape == (3, 64)
    assert encoder.dims == {key: value.shape[1] for key, value in outputs.items()}


def test_encoder_requires_its_inputs() -> None:
    encoder = build_encoder(small_config().model, "audio_video")
    with pytest.raises(ValueError, match="needs an audio input"):
        encoder(video=torch.randn(2, 3, 4, 32, 32))


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_torchvision_video_encoders(arch: str) -> None:
    encoder = VideoEncoder(arch).eval()
    with torch.no_grad():
        output = encoder(torch.randn(1, 3, 2, 32, 32))
    assert output.shape == (1, 512)
    assert encoder.out_dim == 512


def test_audio_encoder_accepts_any_length() -> None:
    encoder = AudioEncoder(width=8).eval()
    for frames in (17, 101):
        assert encoder(torch.randn(2, 1, 64, frames)).shape == (2, 64)


def test_video_encoder_rejects_wrong_layout() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        VideoEncoder("narrow", 8)(torch.randn(2, 4, 3, 32, 32))


# BYOL


def test_byol_loss_decreases_on_fixed_batch() -> None:
    torch.manual_seed(0)
    method = build_method(small_config())
    batch = view_batch("video", batch_size=8)
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    ema = EMA()

    losses = []
    for step in range(8):
        loss, logs = method(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(method.online, method.target, cosine_momentum(step, 8, 0.99))
        losses.append(logs["loss"])

    assert losses[-1] < 0.7 * losses[0], losses
    assert logs["embedding_std"] > 0.0


def test_byol_target_gets_no_gradient() -> None:
    method = build_method(small_config())
    loss, _ = method(view_batch("video"))
    loss.backward()
    assert all(parameter.grad is None for parameter in method.target.parameters())
    assert all(not parameter.requires_grad for parameter in method.target.parameters())
    assert method.online["encoder"].fusion[0].weight.grad is not None


def test_byol_cross_modal_term() -> None:
    method = build_method(small_config("data.modality=audio_video", "method.cross_modal_weight=0.5"))
    loss, logs = method(view_batch("audio_video"))
    assert {"loss", "byol_loss", "cross_modal_loss", "embedding_std", "projection_std"} <= set(logs)
    assert logs["loss"] == pytest.approx(logs["byol_loss"] + 0.5 * logs["cross_modal_loss"], rel=1e-5)
    loss.backward()
    assert method.predictors["video"][0].weight.grad is not None


def test_cross_modal_needs_both_modalities() -> None:
    encoder = AVEncoder(VideoEncoder("narrow", 8), None, fusion_hidden_dim=8, joint_dim=8)
    with pytest.raises(ValueError, match="cross-modal term needs an audio_video encoder"):
        BYOL(encoder, 8, 8, 8, cross_modal_weight=1.0)


def test_method_registry() -> None:
    assert METHODS["byol"] is BYOL
    assert isinstance(build_method(small_config()), BYOL)


# checkpoints


def test_checkpoint_round_trip_weights_only(tmp_path: Path) -> None:
    config = small_config()
    method = build_method(config)
    path = tmp_path / "checkpoints" / "last.pt"
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "method": "byol",
        "step": 3,
        "seed": 0,
        "config": config_to_dict(config),
        "model": method.state_dict(),
    }
    save_checkpoint(path, payload)

    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 3
    loaded = load_checkpoint(path, expected_method="byol")
    restored = build_method(config)
    restored.load_state_dict(loaded["model"])
    for name, tensor in method.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], tensor)
    assert list(path.parent.iterdir()) == [path]


def test_corrupt_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"format_version": 1, "method": "byol", "step": 0, "config": {}, "model": {}}, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupt or not a latentwatch checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"weights": torch.zeros(1)}, "lacks some of"),
        ({"format_version": 99, "method": "byol", "step": 0, "config": {}, "model": {}}, "format_version 99"),
        ({"format_version": 1, "method": "dino", "step": 0, "config": {}, "model": {}}, "method 'dino', not 'byol'"),
    ],
)
def test_foreign_checkpoints_rejected(tmp_path: Path, payload: dict, expected: str) -> None:
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path, expected_method="byol")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


# training views


def fake_clip(key: str, with_audio: bool) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(10, 48, 64, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, size=16000).astype(np.float32) if with_audio else None
    meta = {"audio_missing_reason": None if with_audio else "no audio stream"}
    return SimpleNamespace(key=key, frames=frames, audio=audio, meta=meta)


def test_two_views_skip_clips_without_audio(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clips = [fake_clip("a", True), fake_clip("b", False), fake_clip("c", True)]
    monkeypatch.setattr("pretrain.data.numbered_clips", lambda *args, **kwargs: enumerate(clips))
    config = small_config("data.modality=audio_video")
    dataset = TwoViewClips(["unused.tar"], config.data, seed=0)

    samples = list(dataset)

    assert [sample["key"] for sample in samples] == ["a", "c"]
    assert dataset.skipped_without_audio == 1
    assert "skipped clip b" in caplog.text
    assert samples[0]["video"].shape == (2, 3, 4, 32, 32)
    assert samples[0]["audio"].shape[:3] == (2, 1, 32)
    assert not torch.equal(samples[0]["video"][0], samples[0]["video"][1])

    batch = stack_views(samples)
    assert batch["video"].shape == (2, 2, 3, 4, 32, 32)
    assert batch["key"] == ["a", "c"]
    assert batch["position"] == [0, 2]
    assert batch["worker"] == 0


def test_two_views_are_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pretrain.data.numbered_clips", lambda *args, **kwargs: enumerate([fake_clip("a", False)]))
    config = small_config()

    def first_view(seed: int, rank: int) -> torch.Tensor:
        return next(iter(TwoViewClips(["unused.tar"], config.data, seed=seed, rank=rank)))["video"]

    torch.testing.assert_close(first_view(0, 0), first_view(0, 0))
    assert not torch.equal(first_view(0, 0), first_view(0, 1))


def test_views_depend_on_position_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # A resumed stream starts at a later position; its clips must get the augmentations they got before.
    clips = [fake_clip("a", False), fake_clip("b", False), fake_clip("c", False)]
    monkeypatch.setattr(
        "pretrain.data.numbered_clips", lambda *args, start, **kwargs: list(enumerate(clips))[start:]
    )
    config = small_config()
    whole = list(TwoViewClips(["unused.tar"], config.data, seed=0))
    resumed = list(TwoViewClips(["unused.tar"], config.data, seed=0, start_positions={0: 2}))

    assert [sample["position"] for sample in resumed] == [2]
    torch.testing.assert_close(resumed[0]["video"], whole[2]["video"])
    assert not torch.equal(whole[1]["video"], whole[2]["video"])


def test_shards_dealt_to_streams_without_overlap() -> None:
    urls = [f"shard-{index}.tar" for index in range(10)]
    shares = [
        assign_shards(urls, rank=rank, world_size=2, worker=worker, num_workers=2)
        for rank in range(2)
        for worker in range(2)
    ]
    assert sorted(url for share in shares for url in share) == sorted(urls)
    assert all(len(share) in (2, 3) for share in shares)
    assert assign_shards(urls[:3], rank=1, world_size=2, worker=0, num_workers=2) == urls[:3]
