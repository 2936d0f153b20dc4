"""Audio-shift energy model: shifted audio without padding, the sync loss, the energy, trainer runs, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pretrain.checkpoint import load_checkpoint
from pretrain.config import ConfigError, PretrainConfig, config_from_dict
from pretrain.embed import load_encoder
from pretrain.losses import sync_energy_loss
from pretrain.methods import build_method
from pretrain.methods.audio_shift import AudioShift
from pretrain.shifted_audio import ShiftedAudioPairer, covered_length
from shards.audio import LogMel
from shards.augment import video_eval_tensor
from shards.cli import main as latentwatch_main
from shards.decode import VideoFile, decode_audio
from shards.read import Clip, iter_clips

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "bigbuckbunny.mp4"
SILENT_FOOTAGE = REPO / "tools" / "footage" / "bikes.mp4"
RATE = 1000  # samples per second of the synthetic sources, small so the tests stay fast

SMALL = {
    "data": {"shards": "unused", "modality": "audio_video", "num_frames": 4, "crop_size": 32},
    "model": {"video_width": 4, "audio_width": 4, "fusion_hidden_dim": 32, "joint_dim": 16},
    "method": {"name": "audio_shift"},
}


def synthetic_clips(
    waveform: np.ndarray, clip_s: float, stride_s: float, source: str = "a.mp4", rate: int = RATE
) -> list[Clip]:
    """Cut clips from `waveform` as the shard builder does: each clip contains exactly its own span."""
    length = round(clip_s * rate)
    clips = []
    start_s = 0.0
    index = 0
    while round(start_s * rate) + length <= len(waveform):
        first = round(start_s * rate)
        meta = {"source": source, "start_s": start_s, "sample_rate": rate}
        frames = np.zeros((1, 2, 2, 3), np.uint8)
        clips.append(Clip(f"{source}-{index}", frames, waveform[first : first + length], meta))
        index += 1
        start_s = round(index * stride_s, 6)
    return clips


def nonzero_waveform(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.1, 1.0, round(seconds * RATE))
    return (magnitude * rng.choice([-1.0, 1.0], len(magnitude))).astype(np.float32)


def test_shifted_audio_is_real_stretch_of_source() -> None:
    waveform = nonzero_waveform(12.0)
    pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(0))
    pairs = list(pairer(synthetic_clips(waveform, clip_s=1.0, stride_s=0.5)))

    assert len(pairs) == 23
    assert pairer.skipped == 0
    for pair in pairs:
        first = round(pair.clip.meta["start_s"] * RATE)
        start = first + pair.shift_samples
        assert 500 <= abs(pair.shift_samples) <= 2500
        assert start >= 0
        assert start + 1000 <= len(waveform)
        np.testing.assert_array_equal(pair.shifted_audio, waveform[start : start + 1000])
        assert np.count_nonzero(pair.shifted_audio) == 1000
    shifts = np.array([pair.shift_samples for pair in pairs])
    assert (shifts < 0).any()
    assert (shifts > 0).any()


def test_shift_never_bridges_gap_between_clips() -> None:
    # Clips of 1 s every 2 s leave 1 s gaps, so the only fully covered shifts are whole clips away.
    waveform = nonzero_waveform(10.0)
    pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(0))
    pairs = list(pairer(synthetic_clips(waveform, clip_s=1.0, stride_s=2.0)))

    assert len(pairs) == 5
    assert {abs(pair.shift_samples) for pair in pairs} == {2000}


def test_shift_skips_clip_without_neighbours(caplog: pytest.LogCaptureFixture) -> None:
    lone = synthetic_clips(nonzero_waveform(1.0), clip_s=1.0, stride_s=1.0, source="lone.mp4")
    other = synthetic_clips(nonzero_waveform(4.0, seed=1), clip_s=1.0, stride_s=1.0, source="other.mp4")
    pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(0))
    pairs = list(pairer(lone + other))

    assert pairer.skipped == 1
    assert "lone.mp4-0" in caplog.text
    assert {pair.clip.meta["source"] for pair in pairs} == {"other.mp4"}


def test_shift_starts_new_window_when_shard_repeats() -> None:
    # The resampled stream may read the same shard twice in a row, and the second read must start a new window.
    waveform = nonzero_waveform(4.0)
    clips = synthetic_clips(waveform, clip_s=1.0, stride_s=0.5)
    pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(0))
    pairs = list(pairer(clips + clips))
    assert len(pairs) == 2 * len(clips)
    for pair in pairs:
        start = round(pair.clip.meta["start_s"] * RATE) + pair.shift_samples
        np.testing.assert_array_equal(pair.shifted_audio, waveform[start : start + 1000])


def test_zero_padding_at_source_end_is_not_used() -> None:
    waveform = nonzero_waveform(3.5)
    clips = synthetic_clips(np.concatenate([waveform, np.zeros(500, np.float32)]), clip_s=1.0, stride_s=0.5)
    assert covered_length(clips[-1].audio) == 500
    pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(0))
    for pair in pairer(clips):
        assert np.count_nonzero(pair.shifted_audio) == len(pair.shifted_audio)


def test_pairer_is_seeded() -> None:
    clips = synthetic_clips(nonzero_waveform(8.0), clip_s=1.0, stride_s=0.5)

    def shifts(seed: int) -> list[int]:
        pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(seed))
        return [pair.shift_samples for pair in pairer(clips)]

    assert shifts(3) == shifts(3)
    assert shifts(3) != shifts(4)


def test_sync_energy_loss_prefers_low_energy_in_sync() -> None:
    in_sync = torch.tensor([1.0, 1.0, 0.0, 0.0])
    good = sync_energy_loss(torch.tensor([-3.0, -3.0, 3.0, 3.0]), in_sync)
    bad = sync_energy_loss(torch.tensor([3.0, 3.0, -3.0, -3.0]), in_sync)
    assert good < 0.1 < bad


def shift_batch(batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "video": torch.randn(1, batch_size, 3, 4, 32, 32, generator=generator),
        "audio": torch.randn(2, batch_size, 1, 64, 40, generator=generator),
    }


def test_sync_loss_decreases_on_fixed_batch() -> None:
    torch.manual_seed(0)
    method = build_method(config_from_dict(PretrainConfig, SMALL))
    batch = shift_batch()
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss, logs = method(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert 0.0 <= logs["sync_accuracy"] <= 1.0
    assert losses[-1] < losses[0]


def test_energy_matches_training_forward() -> None:
    torch.manual_seed(0)
    method = AudioShift.from_config(config_from_dict(PretrainConfig, SMALL)).eval()
    batch = shift_batch()
    with torch.no_grad():
        _, logs = method(batch)
        in_sync = method.energy(batch["video"][0], batch["audio"][0])  # (B,)
        shifted = method.energy(batch["video"][0], batch["audio"][1])  # (B,)
    assert in_sync.shape == (4,)
    assert logs["energy_in_sync"] == pytest.approx(in_sync.mean().item(), abs=1e-5)
    assert logs["energy_shifted"] == pytest.approx(shifted.mean().item(), abs=1e-5)


def test_audio_shift_needs_audio_video() -> None:
    with pytest.raises(ConfigError, match="audio_video"):
        config_from_dict(PretrainConfig, {**SMALL, "data": {**SMALL["data"], "modality": "video"}})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audio_shift")
    builds = ((FOOTAGE, "shards", "32"), (SILENT_FOOTAGE, "silent", "32"), (FOOTAGE, "one_clip_shards", "1"))
    for footage, name, clips_per_shard in builds:
        result = subprocess.run(
            [str(BIN / "latentwatch"), "shards", "build", str(footage), "--out", str(folder / name),
             "--clip-seconds", "1", "--stride-seconds", "0.5", "--max-side", "64",
             "--clips-per-shard", clips_per_shard],
            capture_output=True, text=True, cwd=folder, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_real_shard_shift_matches_source_audio(workspace: Path) -> None:
    track = decode_audio(FOOTAGE, video_start_s=VideoFile(FOOTAGE).video_start_s).samples  # (S,)
    clips = list(iter_clips(workspace / "shards"))
    pairer = ShiftedAudioPairer(0.5, 2.5, torch.Generator().manual_seed(0))
    pairs = list(pairer(clips))

    assert len(pairs) == len(clips) == 9
    # The shard stores 16-bit PCM, so a stored sample is within half a quantisation step of the source.
    tolerance = 1.0 / 32767
    for pair in pairs:
        start = round(pair.clip.meta["start_s"] * 16000) + pair.shift_samples
        assert 8000 <= abs(pair.shift_samples) <= 40000
        np.testing.assert_allclose(pair.shifted_audio, track[start : start + 16000], atol=tolerance)


def write_config(workspace: Path, run: Path, shards: str) -> Path:
    config = {
        **SMALL,
        "data": {**SMALL["data"], "shards": str(workspace / shards), "num_workers": 0, "shuffle_buffer": 4},
        "optim": {"batch_size": 3, "total_steps": 2, "warmup_steps": 1},
        "run": {"seed": 0, "log_every": 1, "checkpoint_every": 2, "wandb_mode": "disabled", "out_dir": str(run)},
    }
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def pretrain(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "pretrain.py"), "--config", str(config)],
        capture_output=True, text=True, cwd=config.parent, timeout=300,
        env={**os.environ, "WANDB_SILENT": "true"},
    )


def test_two_trainer_steps_and_energy_from_checkpoint(workspace: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = pretrain(write_config(workspace, run, "shards"))
    assert result.returncode == 0, result.stderr[-3000:]

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 2]
    for record in log:
        assert {"sync_loss", "sync_accuracy", "energy_in_sync", "energy_shifted", "embedding_std"} <= set(record)

    # The energy is readable later as an anomaly score: rebuild the model from the checkpoint alone.
    payload = load_checkpoint(run / "checkpoints" / "last.pt", expected_method="audio_shift")
    config = config_from_dict(PretrainConfig, payload["config"])
    method = AudioShift.from_config(config)
    method.load_state_dict(payload["model"])
    method.eval()
    clip = next(iter(iter_clips(workspace / "shards")))
    video = torch.randn(2, 3, 4, 32, 32)
    waveforms = torch.from_numpy(np.stack([clip.audio, clip.audio]))  # (2, S)
    audio = LogMel(n_mels=config.data.n_mels)(waveforms)  # (2, 1, M, F)
    with torch.no_grad():
        energy = method.energy(video, audio)
    assert energy.shape == (2,)
    assert torch.isfinite(energy).all()

    encoder, _, _ = load_encoder(run / "checkpoints" / "last.pt")
    assert encoder.modality == "audio_video"

    check_embed_writes_energy(workspace, run, method, config)


def check_embed_writes_energy(workspace: Path, run: Path, method: AudioShift, config: PretrainConfig) -> None:
    """`latentwatch embed` of an audio-shift checkpoint writes energy.npy aligned with meta.jsonl."""
    out = run.parent / "embeddings"
    status = latentwatch_main(
        ["embed", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--shards", str(workspace / "shards"),
         "--out", str(out), "--batch-size", "4"]
    )
    assert status == 0
    energy = np.load(out / "energy.npy", allow_pickle=False)
    meta = [json.loads(line) for line in (out / "meta.jsonl").read_text().splitlines()]
    assert energy.dtype == np.float32
    assert energy.shape == (len(meta),)
    assert np.isfinite(energy).all()

    # Row i is clip i's energy with its own audio, computed from the same deterministic inputs.
    clips = {clip.key: clip for clip in iter_clips(workspace / "shards")}
    logmel = LogMel(n_mels=config.data.n_mels)
    for row in (0, len(meta) - 1):
        clip = clips[meta[row]["key"]]
        video = video_eval_tensor(clip.frames, num_frames=config.data.num_frames, short_side=config.data.crop_size)
        audio = logmel(torch.from_numpy(clip.audio)[None])  # (1, 1, M, F)
        with torch.no_grad():
            expected = method.energy(video[None], audio)
        assert energy[row] == pytest.approx(float(expected[0]), rel=1e-4, abs=1e-5)

    video_out = run.parent / "embeddings_video"
    status = latentwatch_main(
        ["embed", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--shards", str(workspace / "shards"),
         "--out", str(video_out), "--modality", "video"]
    )
    assert status == 0
    assert not (video_out / "energy.npy").exists()


def test_shards_without_audio_give_one_error_line(workspace: Path, tmp_path: Path) -> None:
    result = pretrain(write_config(workspace, tmp_path / "silent_run", "silent"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "needs audio" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "silent_run").exists()


def test_shards_without_neighbours_give_one_error_line(workspace: Path, tmp_path: Path) -> None:
    result = pretrain(write_config(workspace, tmp_path / "one_clip_run", "one_clip_shards"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--clips-per-shard" in lines[0]
    assert not (tmp_path / "one_clip_run").exists()
