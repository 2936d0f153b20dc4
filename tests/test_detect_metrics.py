"""Metrics on hand-computed cases, and the mapping of clip scores to frames."""

import numpy as np
import pytest

from detect.errors import DetectInputError
from detect.evaluate import evaluate_scores, format_table
from detect.frame_scores import centre_frame_items, frames_of_videos, smooth_frame_scores
from detect.metrics import auprc, auroc, average_precision, compute_metrics, equal_error_rate
from detect.scores import Scores


def test_perfect_ranking():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    assert auroc(labels, scores) == 1.0
    assert equal_error_rate(labels, scores) == 0.0
    assert average_precision(labels, scores) == 1.0
    assert auprc(labels, scores) == pytest.approx(1.0)


def test_reversed_ranking():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    assert auroc(labels, scores) == 0.0
    assert equal_error_rate(labels, scores) == 1.0


def test_known_equal_error_rate():
    # One of four normal items (0.8) outscores one of two anomalous items (0.7): at the threshold between
    # them FPR = 1/4, and FNR falls from 1/2 to 0, so the interpolated crossing is at 0.25.
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.7, 0.9])
    assert equal_error_rate(labels, scores) == pytest.approx(0.25)
    assert auroc(labels, scores) == pytest.approx(7 / 8)


def test_interpolated_equal_error_rate_between_thresholds():
    # Tied scores make one ROC step from (FPR 0, TPR 0) to (1, 1); FPR = FNR at the midpoint 0.5.
    assert equal_error_rate(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_precision_recall_metrics_by_hand():
    # Ranking by score: 0.8 (anomalous), 0.4 (normal), 0.35 (anomalous), 0.1 (normal).
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # AP = sum over recall steps of precision: 0.5 * 1 + 0.5 * 2/3.
    assert average_precision(labels, scores) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Trapezoids of the PR curve (recall, precision): (0, 1)-(0.5, 1) and (0.5, 0.5)-(1, 2/3).
    assert auprc(labels, scores) == pytest.approx(0.5 * 1.0 + 0.5 * (0.5 + 2 / 3) / 2)
    assert compute_metrics(labels, scores)["anomalous"] == 2


def test_single_class_is_an_error():
    with pytest.raises(DetectInputError, match="both normal and anomalous"):
        auroc(np.zeros(4), np.arange(4.0))


def _clip(key, source, frames, labels, score, **extra):
    return {"key": key, "source": source, "source_name": source, "fps": 10.0, "frame_indices": frames,
            "frame_labels": labels, "score": score, "neighbours": [], **extra}


def test_frame_score_is_max_of_covering_clips():
    # Clips overlap by two frames; frames 2-3 are covered by both clips and take the larger score.
    rows = [
        _clip("a-0", "a.mp4", [0, 1, 2, 3], [0, 0, 0, 1], 0.2),
        _clip("a-1", "a.mp4", [2, 3, 4, 5], [0, 1, 1, 1], 0.7),
        _clip("a-2", "a.mp4", [8, 9], [0, 0], 0.1),
    ]
    videos, missing = frames_of_videos(rows)
    assert missing == 0
    assert len(videos) == 1
    video = videos[0]
    assert video.frame_indices.tolist() == [0, 1, 2, 3, 4, 5, 8, 9]
    assert video.scores.tolist() == [0.2, 0.2, 0.7, 0.7, 0.7, 0.7, 0.1, 0.1]
    assert video.labels.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def test_conflicting_frame_labels_count_as_anomalous():
    rows = [_clip("a-0", "a.mp4", [0, 1], [0, 1], 0.2), _clip("a-1", "a.mp4", [1, 2], [0, 0], 0.3)]
    video = frames_of_videos(rows)[0][0]
    assert video.labels.tolist() == [0, 1, 0]
    assert video.label_conflicts == 1


def test_smoothing_keeps_constant_scores_and_spreads_peaks():
    rows = [_clip("a-0", "a.mp4", list(range(20)), [0] * 20, 1.0)]
    video = frames_of_videos(rows)[0][0]
    np.testing.assert_allclose(smooth_frame_scores(video, 3.0).scores, 1.0)

    peak = video.scores.copy()
    peak[:] = 0.0
    peak[10] = 1.0
    video.scores = peak
    smoothed = smooth_frame_scores(video, 1.0).scores
    assert smoothed[10] < 1.0
    assert smoothed[9] == pytest.approx(smoothed[11])
    assert smoothed[9] > smoothed[8] > 0
    assert smoothed.sum() == pytest.approx(1.0, rel=1e-6)


def test_centre_frame_rule():
    rows = [_clip("a-0", "a.mp4", [0, 1, 2, 3, 4], [0, 0, 1, 0, 0], 0.5), _clip("a-1", "a.mp4", [5, 6], [0, 1], 0.1)]
    labels, scores = centre_frame_items(rows)
    assert labels.tolist() == [1, 1]  # centre of 5 frames is index 2; of 2 frames, index 1
    assert scores.tolist() == [0.5, 0.1]


def test_macro_skips_single_class_videos():
    rows = [
        _clip("a-0", "a.mp4", [0, 1], [0, 0], 0.1),
        _clip("a-1", "a.mp4", [2, 3], [1, 1], 0.9),
        _clip("b-0", "b.mp4", [0, 1], [0, 0], 0.3),
        _clip("c-0", "c.mp4", [0, 1], [0, 0], 0.2),
        _clip("c-1", "c.mp4", [2, 3], [1, 1], 0.25),
    ]
    metrics = evaluate_scores(Scores(rows=rows, header={})).metrics
    assert metrics["level"] == "frame"
    macro = metrics["frame"]["macro"]
    assert macro["videos_evaluated"] == 2
    assert macro["videos_skipped_single_class"] == 1
    assert macro["skipped_videos"] == ["b.mp4"]
    assert macro["auroc"] == 1.0
    # Pooled, video b's normal frames (0.3) outscore video c's anomalous ones (0.25).
    assert metrics["frame"]["micro"]["auroc"] < 1.0
    assert metrics["frame"]["micro"]["items"] == 10
    assert "skipped (single class)" in format_table(metrics)


def test_smoothing_sigma_is_recorded():
    rows = [_clip("a-0", "a.mp4", [0, 1, 2], [0, 0, 0], 0.1), _clip("a-1", "a.mp4", [3, 4, 5], [1, 1, 1], 0.9)]
    metrics = evaluate_scores(Scores(rows=rows, header={}), smooth_sigma=1.5).metrics
    assert metrics["smoothing"]["sigma_frames"] == 1.5
    assert "sigma 1.5 frames" in format_table(metrics)


def test_clip_label_fallback():
    rows = [
        {"key": "x-0", "source_name": "x.mp4", "score": 0.1, "label": "normal", "frame_labels": None},
        {"key": "x-1", "source_name": "x.mp4", "score": 0.9, "label": "fighting", "frame_labels": None},
        {"key": "y-0", "source_name": "y.mp4", "score": 0.2, "label": "Normal", "frame_labels": None},
        {"key": "y-1", "source_name": "y.mp4", "score": 0.3, "label": None, "frame_labels": None},
    ]
    metrics = evaluate_scores(Scores(rows=rows, header={})).metrics
    assert metrics["level"] == "clip"
    assert metrics["clip"]["micro"]["auroc"] == 1.0
    assert metrics["clip"]["micro"]["items"] == 3
    assert metrics["clip"]["clips_without_label"] == 1


def test_no_labels_is_an_error():
    rows = [{"key": "x-0", "source_name": "x.mp4", "score": 0.1, "label": None, "frame_labels": None}]
    with pytest.raises(DetectInputError, match="no labels"):
        evaluate_scores(Scores(rows=rows, header={}))
