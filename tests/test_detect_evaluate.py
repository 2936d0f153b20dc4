"""`detect evaluate`: per-video normalisation, several seeds with mean ± std, and the stated macro rule."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from detect.cli import register
from detect.evaluate import evaluate_scores, format_table
from detect.metrics import compute_metrics
from detect.scores import read_scores, write_scores

FRAMES = 5


def run_detect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def _rows(seed: int, *, clips: int = 20, offsets=(0.0, 5.0, 0.0)) -> list[dict]:
    """Clips of three videos; the second has scores shifted up, the third is all normal (single class)."""
    rng = np.random.default_rng(seed)
    rows = []
    for video, offset in enumerate(offsets):
        for index in range(clips):
            anomalous = int(video < 2 and index >= clips - 5)
            rows.append({
                "key": f"v{video}-{index * 1000:07d}", "score": float(offset + rng.normal() + 2.0 * anomalous),
                "source": f"/videos/v{video}.mp4", "source_name": f"v{video}.mp4", "fps": 5.0,
                "frame_indices": list(range(index * FRAMES, (index + 1) * FRAMES)),
                "frame_labels": [anomalous] * FRAMES, "label": None,
            })
    return rows


def _write(folder: Path, seed: int, **kwargs) -> Path:
    header = {"detector": "interpolating_autoencoder", "settings": {"seed": seed}, "threshold": 1.0}
    return write_scores(folder, _rows(seed, **kwargs), header)


def test_normalise_per_video_changes_micro_only(tmp_path):
    scores = read_scores(_write(tmp_path / "s", seed=1))
    plain = evaluate_scores(scores).metrics
    normalised = evaluate_scores(scores, normalise_per_video=True).metrics

    assert plain["normalisation"] is None
    assert normalised["normalisation"]["uses_test_statistics"] is True
    # Video 1's scores sit 5 higher, which hurts pooled (micro) ranking until each video is z-scored.
    assert normalised["frame"]["micro"]["auroc"] > plain["frame"]["micro"]["auroc"] + 0.05
    for name in ("auroc", "eer", "auprc", "ap"):
        assert normalised["frame"]["macro"][name] == pytest.approx(plain["frame"]["macro"][name])

    # The z-scored frame scores of each video have mean 0 and standard deviation 1.
    for rows in (scores.rows[:20], scores.rows[20:40]):
        values = np.repeat([row["score"] for row in rows], FRAMES)
        labels = np.repeat([row["frame_labels"][0] for row in rows], FRAMES)
        expected = compute_metrics(labels, (values - values.mean()) / values.std())
        assert expected["auroc"] == pytest.approx(compute_metrics(labels, values)["auroc"])

    table = format_table(normalised)
    assert "normalisation: per-video z-score" in table
    assert "normalisation: none" in format_table(plain)


def test_macro_rule_is_stated(tmp_path):
    metrics = evaluate_scores(read_scores(_write(tmp_path / "s", seed=2))).metrics
    macro = metrics["frame"]["macro"]
    assert macro["videos_evaluated"] == 2
    assert macro["videos_skipped_single_class"] == 1
    assert macro["skipped_videos"] == ["/videos/v2.mp4"]
    assert "single-class videos are skipped" in format_table(metrics)
    assert "skipped" in macro["rule"]
    assert "all normal or all anomalous" in macro["rule"]


def test_several_seeds_give_mean_and_std(tmp_path, capsys):
    folders = [_write(tmp_path / f"seed{seed}", seed=seed) for seed in (3, 4, 5)]
    argv = ["evaluate", "--scores", *map(str, folders), "--out", str(tmp_path / "ev"), "--normalise-per-video"]
    assert run_detect(argv) == 0
    printed = capsys.readouterr().out

    combined = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert [run["seed"] for run in combined["runs"]] == [3, 4, 5]
    assert combined["normalisation"]["kind"] == "per_video_z_score"
    per_run = []
    for run in combined["runs"]:
        run_metrics = json.loads((tmp_path / "ev" / run["evaluation"]).read_text())
        assert (tmp_path / "ev" / Path(run["evaluation"]).parent / "roc.png").is_file()
        per_run.append(run_metrics["frame"]["micro"]["auroc"])
    summary = combined["summary"]["frame"]["micro"]["auroc"]
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(np.mean(per_run))
    assert summary["std"] == pytest.approx(np.std(per_run, ddof=1))
    assert f"{np.mean(per_run):.3f} ± {np.std(per_run, ddof=1):.3f} (n=3)" in printed
    assert "seeds (pretraining/detector): -/3, -/4, -/5" in printed
    assert combined["summary"]["frame"]["macro"]["eer"]["n"] == 3
    assert "centre_frame" in combined["summary"]


def test_several_seeds_input_errors(tmp_path):
    first = _write(tmp_path / "a", seed=1)
    other_test_set = _write(tmp_path / "b", seed=2, clips=15)
    assert run_detect(["evaluate", "--scores", str(first), str(other_test_set), "--out", str(tmp_path / "ev")]) == 2
    assert not (tmp_path / "ev").exists()
    assert run_detect(["evaluate", "--scores", str(first), str(first), "--out", str(tmp_path / "ev")]) == 2
    assert run_detect(["evaluate", "--scores", str(first), str(_write(tmp_path / "c", seed=3))]) == 2
