"""`latentwatch report RUN_DIR`: curves of a real three-step BYOL run, DINO-style logs and bad input."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest
import yaml
from PIL import Image

from pretrain.errors import PretrainError
from pretrain.run_report import add_report_command, write_run_report

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOOTAGE = REPO / "tools" / "footage" / "vtest.avi"

# byol_tiny.yaml cut down so three steps take seconds on a CPU.
TINY_OVERRIDES = [
    "data.num_frames=4", "data.crop_size=32", "data.num_workers=1", "data.shuffle_buffer=4",
    "model.video_width=8", "model.fusion_hidden_dim=32", "model.joint_dim=16",
    "method.projector_hidden_dim=32", "method.projector_dim=16", "method.predictor_hidden_dim=32",
    "optim.batch_size=2", "optim.total_steps=3", "optim.warmup_steps=1", "run.log_every=1",
    "run.checkpoint_every=3", "run.wandb_mode=disabled",
]

DINO_LOG = [
    {"step": 10, "loss": 6.9, "dino_loss": 6.9, "lr": 0.001, "tau": 0.996, "grad_norm": 3.0,
     "samples_per_s": 20.0, "embedding_std": 0.05, "skipped_steps": 0, "teacher_temp": 0.04,
     "teacher_entropy": 6.8, "teacher_kl_uniform": 0.1, "probe_knn_top1_accuracy": 0.2},
    {"step": 20, "loss": 6.5, "dino_loss": 6.5, "lr": 0.0009, "tau": 0.997, "grad_norm": None,
     "samples_per_s": 21.0, "embedding_std": 0.06, "skipped_steps": 1, "teacher_temp": 0.05,
     "teacher_entropy": 6.4, "teacher_kl_uniform": 0.5, "probe_knn_top1_accuracy": 0.3, "new_scalar": 1.5},
]


def run_report_command(argv: list[str]) -> tuple[int, str]:
    """Run `latentwatch report ...` in this process the way the dispatcher does: input errors exit 2."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    add_report_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    try:
        return int(args.handler(args) or 0), ""
    except PretrainError as error:
        return 2, str(error)


def image_sources(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)" alt="([^"]+)"', page.read_text())


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
def byol_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run_report")
    video = folder / "walkway.mp4"
    cut_footage(FOOTAGE, video, seconds=3.0)
    environment = {**os.environ, "WANDB_SILENT": "true"}
    build = subprocess.run(
        [str(BIN / "latentwatch"), "shards", "build", str(video), "--out", str(folder / "shards"),
         "--clip-seconds", "1", "--stride-seconds", "0.5"],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    train = subprocess.run(
        [sys.executable, str(REPO / "pretrain.py"), "--config", str(REPO / "configs/pretrain/byol_tiny.yaml"),
         f"data.shards={folder / 'shards'}", f"run.out_dir={folder / 'run'}", *TINY_OVERRIDES],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    return folder / "run"


@pytest.mark.slow
def test_real_run_gets_every_curve(byol_run: Path) -> None:
    status, _ = run_report_command([str(byol_run)])
    assert status == 0
    index = byol_run / "report" / "index.html"
    sources = dict(image_sources(index))
    for name in ("loss.png", "lr.png", "momentum.png", "grad_norm.png", "collapse.png", "throughput.png"):
        assert name in sources, name
    for name, title in sources.items():
        with Image.open(index.parent / name) as image:
            assert image.size == (640, 360), name
        assert title, name
    page = index.read_text()
    assert "byol" in page
    assert "steps 1 to 3 of 3" in page
    assert "last.pt" in page

    # A second report replaces the first, because the folder is a report.
    assert run_report_command([str(byol_run)])[0] == 0


def test_dino_log_with_probe_and_bad_lines(tmp_path: Path) -> None:
    run = tmp_path / "dino-run"
    (run / "checkpoints").mkdir(parents=True)
    config = {"method": {"name": "dino"}, "model": {"joint_dim": 256}, "optim": {"total_steps": 20}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [json.dumps(record) for record in DINO_LOG] + ["[1, 2]", '{"step": 30, "loss": 6.']
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")

    index = write_run_report(run, tmp_path / "curves")
    names = [name for name, _ in image_sources(index)]
    for name in ("teacher.png", "teacher_temp.png", "accuracy.png", "other_new_scalar.png", "skipped.png"):
        assert name in names, name
    page = index.read_text()
    assert "log lines skipped</th><td>2 " in page
    assert "dino" in page
    assert "grad_norm</th><td>non-finite (logged as null)" in page  # step 20 logged grad_norm as null


def test_log_rows_are_sorted_by_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("\n".join(json.dumps(record) for record in DINO_LOG[::-1]) + "\n")
    index = write_run_report(run)
    assert index == run / "report" / "index.html"
    # Records are sorted by step, so the last logged step is 20, whose grad_norm is null.
    assert "Last logged step (20)" in index.read_text()
    assert "grad_norm</th><td>non-finite (logged as null)" in index.read_text()


def test_missing_run_folder_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "run.partial").mkdir()
    status, message = run_report_command([str(tmp_path / "run")])
    assert status == 2
    assert "still training in" in message


def test_missing_or_empty_log_is_an_input_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert "training log not found" in run_report_command([str(run)])[1]
    (run / "log.jsonl").write_text("not json\n")
    assert "no logged step" in run_report_command([str(run)])[1]
    assert not (run / "report").exists()


def test_out_folder_of_other_data_kept(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps(DINO_LOG[0]) + "\n")
    keep = tmp_path / "data"
    keep.mkdir()
    (keep / "precious.txt").write_text("x")
    status, message = run_report_command([str(run), "--out", str(keep)])
    assert status == 2
    assert "does not contain index.html" in message
    assert (keep / "precious.txt").is_file()
