"""The kNN probe: the weighted vote itself, and the trainer's optional online probe on real footage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pretrain.config import ConfigError, PretrainConfig, config_from_dict
from pretrain.knn_probe import clip_probe_label, knn_top1
from shards.build import build_shards
from shards.build_options import BuildOptions

REPO = Path(__file__).resolve().parent.parent
FOOTAGE = REPO / "tools" / "footage"


def test_knn_vote_weights_by_similarity() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = ["a", "a", "b"]
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.6, 0.8]])

    assert knn_top1(bank, labels, queries, ["a", "b", "b"], k=1) == pytest.approx(1.0)
    # With k=3 the third query is closest to the one "b" clip. At a low temperature that clip's weight
    # dominates the vote; at a high one the weights are nearly equal and the two "a" clips win.
    assert knn_top1(bank, labels, queries[2:], ["b"], k=3, temperature=0.07) == pytest.approx(1.0)
    assert knn_top1(bank, labels, queries[2:], ["b"], k=3, temperature=10.0) == pytest.approx(0.0)


def test_probe_label_falls_back_to_source() -> None:
    assert clip_probe_label({"label": "walking", "source_name": "a.mp4"}) == "walking"
    assert clip_probe_label({"label": None, "source_name": "a.mp4"}) == "a.mp4"


def test_probe_needs_both_shard_sets() -> None:
    with pytest.raises(ConfigError, match="probe.bank_shards and probe.query_shards"):
        config_from_dict(PretrainConfig, {"data": {"shards": "x"}, "probe": {"every": 5, "bank_shards": "x"}})


@pytest.mark.slow
def test_trainer_logs_online_probe(tmp_path: Path) -> None:
    # Bank and queries come from the same two recordings, cut into clips of other lengths and strides.
    sources = [FOOTAGE / "vtest.avi", FOOTAGE / "bikes.mp4"]
    bank_options = BuildOptions(clip_seconds=1.0, stride_seconds=4.0, max_side=64, clips_per_shard=8, workers=1)
    query_options = BuildOptions(clip_seconds=1.5, stride_seconds=5.0, max_side=64, clips_per_shard=8, workers=1)
    build_shards(sources, tmp_path / "bank", bank_options)
    build_shards(sources, tmp_path / "query", query_options)
    bank_count = json.loads((tmp_path / "bank" / "index.json").read_text())["num_clips"]
    query_count = json.loads((tmp_path / "query" / "index.json").read_text())["num_clips"]
    config = {
        "data": {"shards": str(tmp_path / "bank"), "modality": "video", "num_frames": 4, "crop_size": 32,
                 "num_workers": 0, "shuffle_buffer": 4},
        "model": {"video_width": 8, "fusion_hidden_dim": 32, "joint_dim": 16},
        "method": {"projector_hidden_dim": 32, "projector_dim": 16, "predictor_hidden_dim": 32},
        "optim": {"batch_size": 2, "total_steps": 4, "warmup_steps": 1},
        "run": {"out_dir": str(tmp_path / "run"), "log_every": 1, "checkpoint_every": 4, "wandb_mode": "disabled"},
        "probe": {"every": 2, "bank_shards": str(tmp_path / "bank"), "query_shards": str(tmp_path / "query"), "k": 3},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(REPO / "pretrain.py"), "--config", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    probed = {record["step"]: record["probe/knn_top1"] for record in log if "probe/knn_top1" in record}
    assert sorted(probed) == [2, 4]
    for accuracy in probed.values():
        assert 0.0 <= accuracy <= 1.0
        assert accuracy * query_count == pytest.approx(round(accuracy * query_count), abs=1e-4)
    assert f"kNN probe every 2 steps: {bank_count} bank and {query_count} query clips, 2 classes" in result.stderr
