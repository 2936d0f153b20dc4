"""Scoring and report writing killed with SIGKILL at seeded moments: no partial output may look finished,
and a rerun completes.

The kill lands wherever the process is (importing, fitting, scoring, writing), several times in a row on
the same output path, as when a cluster job is preempted repeatedly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import yaml

from detect.embeddings import save_embeddings
from detect.scores import read_scores

LATENTWATCH = Path(sys.executable).with_name("latentwatch")
ROWS, DIMENSION = 20_000, 64


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    rng = np.random.default_rng(0)
    meta = [{"key": f"walk-{index * 500:07d}", "source": "walk.mp4", "start_s": index / 2,
             "end_s": index / 2 + 1.0} for index in range(ROWS)]
    return save_embeddings(root / "embeddings", rng.normal(size=(ROWS, DIMENSION)).astype(np.float32), meta,
                           {"encoder": "test", "checkpoint": None, "modality": "joint"})


def hidden_entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.slow
def test_killed_scoring_leaves_no_output(embeddings, tmp_path, exhaustive):
    model = tmp_path / "model"
    fit = subprocess.run([str(LATENTWATCH), "detect", "fit", "--embeddings", str(embeddings), "--out",
                          str(model)], capture_output=True, text=True)
    assert fit.returncode == 0, fit.stderr[-2000:]
    command = [str(LATENTWATCH), "detect", "score", "--model", str(model), "--embeddings", str(embeddings),
               "--out", str(tmp_path / "scores")]

    # Time a complete run, then kill runs at seeded fractions of it.
    started = time.monotonic()
    complete = subprocess.run(command, capture_output=True, text=True)
    assert complete.returncode == 0, complete.stderr[-2000:]
    duration = time.monotonic() - started
    expected = read_scores(tmp_path / "scores")

    outputs_seen = 0
    for fraction in np.random.default_rng(0).uniform(0.3, 1.1, size=8 if exhaustive else 2):
        (tmp_path / "scores").rename(tmp_path / f"done-{outputs_seen}") if (tmp_path / "scores").exists() else None
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * fraction)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if (tmp_path / "scores").exists():
            # The process finished before the kill: the folder must then be whole and equal.
            assert read_scores(tmp_path / "scores").rows == expected.rows
            outputs_seen += 1

    # A rerun after the last kill completes, cleans what the killed writers left, and gives the same scores.
    if (tmp_path / "scores").exists():
        (tmp_path / "scores").rename(tmp_path / "done-last")
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert read_scores(tmp_path / "scores").rows == expected.rows
    assert hidden_entries(tmp_path) == []


def test_dead_writer_leftovers_removed(tmp_path):
    from detect.atomic import atomic_folder

    dead = tmp_path / ".scores.999999999.x1.partial"
    retired = tmp_path / ".scores.999999999.ab12cd34.old"
    live = tmp_path / f".scores.{os.getpid()}.x2.partial"
    unrelated = tmp_path / ".scores.notes.partial"
    for folder in (dead, retired, live, unrelated):
        folder.mkdir()

    with atomic_folder(tmp_path / "scores", marker="scores.jsonl") as temporary:
        (temporary / "scores.jsonl").write_text("")

    assert hidden_entries(tmp_path) == sorted([live.name, unrelated.name])


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A finished-looking run folder with a long log, so that drawing its curves takes a few seconds."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/pretrain/byol_tiny.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(0)
    rows = [{"step": step, "loss": float(2 * np.exp(-step / 3000) + rng.normal(0, 0.05)), "lr": 1e-3,
             "tau": 0.99, "grad_norm": float(rng.uniform(0.5, 2)), "samples_per_s": 20.0,
             "embedding_std": 0.1, "skipped_steps": 0} for step in range(1, 20_001)]
    (run / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


@pytest.mark.slow
def test_killed_run_report_leaves_no_output(run_folder, exhaustive):
    command = [str(LATENTWATCH), "report", str(run_folder)]
    started = time.monotonic()
    complete = subprocess.run(command, capture_output=True, text=True)
    assert complete.returncode == 0, complete.stderr[-2000:]
    duration = time.monotonic() - started
    pages = sorted(path.name for path in (run_folder / "report").iterdir())

    for fraction in np.random.default_rng(1).uniform(0.3, 1.1, size=8 if exhaustive else 2):
        (run_folder / "report").rename(run_folder / f"report-{time.monotonic_ns()}")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * fraction)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        if (run_folder / "report").exists():
            assert sorted(path.name for path in (run_folder / "report").iterdir()) == pages
        else:
            rerun = subprocess.run(command, capture_output=True, text=True)
            assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert sorted(path.name for path in (run_folder / "report").iterdir()) == pages
        assert hidden_entries(run_folder) == []
