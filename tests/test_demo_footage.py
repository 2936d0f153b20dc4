"""End-to-end tests of tools/make_demo_footage.py: run it as a user would, then check its videos and labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import decord
import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "make_demo_footage.py"
FOOTAGE = REPO / "tools" / "footage"

# The rule, restated here so a change to the script's layout shows up as a failing test.
TRAIN_END = 556
TEST_FRAMES = 164
ANOMALOUS = [[25, 40], [68, 93], [121, 136]]
FAST = {(25, 40): (581, 4), (121, 136): (722, 3)}  # output range: (first source frame, step)
CYCLIST = (68, 93, 669)  # output range and its first source frame
NORMAL = [(0, 25, 556), (40, 68, 641), (93, 121, 694), (136, 164, 767)]


def run_script(out: Path, footage: Path = FOOTAGE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--footage", str(footage)],
        capture_output=True, text=True, timeout=120,
    )


def to_grey(frames: np.ndarray, halve: bool = False) -> np.ndarray:
    """Average RGB frames (T, H, W, 3) to grey uint8 (T, H, W), optionally with a 2x2 box downscale.

    The 2x2 box average is the script's documented downscale, computed here without PIL. Integer sums keep
    this fast and small.
    """
    wide = frames.astype(np.uint16)
    total = wide[..., 0] + wide[..., 1] + wide[..., 2]  # (T, H, W)
    count = 3
    if halve:
        total = total[:, 0::2, 0::2] + total[:, 0::2, 1::2] + total[:, 1::2, 0::2] + total[:, 1::2, 1::2]
        count = 12
    return ((total + count // 2) // count).astype(np.uint8)


def read_output(path: Path) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Decode an output video with decord, as latentwatch will: grey frames, frame rate, (height, width)."""
    reader = decord.VideoReader(str(path))
    batches = []
    for start in range(0, len(reader), 64):
        batch = reader.get_batch(list(range(start, min(start + 64, len(reader))))).asnumpy()  # (B, H, W, 3)
        batches.append(to_grey(batch))
    return np.concatenate(batches), reader.get_avg_fps(), batch.shape[1:3]


def read_source(path: Path) -> np.ndarray:
    """Decode vtest.avi with PyAV and downscale it as the rule describes: grey (T, 288, 384)."""
    with av.open(str(path)) as container:
        return np.concatenate(
            [to_grey(frame.to_ndarray(format="rgb24")[None], halve=True) for frame in container.decode(video=0)]
        )


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("footage") / "demo"
    result = run_script(out)
    assert result.returncode == 0, result.stderr
    train, train_fps, train_size = read_output(out / "train" / "walkway_normal.mp4")
    test, test_fps, test_size = read_output(out / "test" / "walkway_test.mp4")
    source = read_source(FOOTAGE / "vtest.avi")
    return {
        "out": out,
        "stdout": result.stdout,
        "train": train,
        "train_fps": train_fps,
        "train_size": train_size,
        "test_size": test_size,
        "test": test,
        "test_fps": test_fps,
        "source": source,  # (795, 288, 384)
        "labels": json.loads((out / "test" / "walkway_test.labels.json").read_text()),
        "rule": json.loads((out / "rule.json").read_text()),
    }


def test_videos_decode_at_10_fps(built: dict) -> None:
    assert len(built["train"]) == TRAIN_END
    assert len(built["test"]) == TEST_FRAMES
    assert built["train_size"] == (288, 384)
    assert built["test_size"] == (288, 384)
    assert built["train_fps"] == pytest.approx(10.0)
    assert built["test_fps"] == pytest.approx(10.0)


def test_output_paths_printed(built: dict) -> None:
    printed = built["stdout"].split()
    for name in ("train/walkway_normal.mp4", "test/walkway_test.mp4", "test/walkway_test.labels.json",
                 "RULE.md"):
        assert str(built["out"] / name) in printed
    assert (built["out"] / "RULE.md").read_text().count("[68, 93) | [669, 694)") == 1


def test_labels_follow_rule(built: dict) -> None:
    labels = built["labels"]
    assert labels == {"num_frames": TEST_FRAMES, "anomalous_frames": ANOMALOUS}
    normal = TEST_FRAMES - sum(end - start for start, end in ANOMALOUS)
    assert normal >= TEST_FRAMES / 3


def test_rule_uses_each_source_frame_once(built: dict) -> None:
    segments = built["rule"]["test"]["segments"]
    used = []
    for segment in segments:
        start, end = segment["source_frames"]
        used.extend(range(start, end, segment["step"]))
    assert len(used) == TEST_FRAMES
    assert len(set(used)) == len(used)
    assert used == sorted(used)
    assert min(used) >= TRAIN_END
    anomalous = [segment["output_frames"] for segment in segments if segment["anomalous"]]
    assert anomalous == ANOMALOUS


def test_train_is_first_70_percent(built: dict) -> None:
    train, source = built["train"], built["source"]
    per_frame = np.array([mean_abs_diff(train[i], source[i]) for i in range(TRAIN_END)])
    assert per_frame.max() < 3.0, per_frame.max()

    # Encoding error is close to the change between neighbouring frames, so pin the alignment by checking
    # that each output frame matches its own source frame better than the source frames on either side.
    best_offsets = []
    for i in range(1, TRAIN_END - 1):
        errors = [mean_abs_diff(train[i], source[i + offset]) for offset in (-1, 0, 1)]
        best_offsets.append(int(np.argmin(errors)) - 1)
    assert np.mean(np.array(best_offsets) == 0) > 0.95


def test_normal_test_frames_are_source(built: dict) -> None:
    test, source = built["test"], built["source"]
    for start, end, first in NORMAL:
        difference = mean_abs_diff(test[start:end], source[first:first + end - start])
        assert difference < 3.0, (start, end, difference)


def test_speed_ups_are_faster(built: dict) -> None:
    test, source = built["test"].astype(np.float32), built["source"]
    step_change = np.abs(np.diff(test, axis=0)).mean(axis=(1, 2))  # change from frame i to i + 1
    normal_steps = np.concatenate([step_change[start:end - 1] for start, end, _ in NORMAL])

    for (start, end), (first, step) in FAST.items():
        expected = source[first:first + step * (end - start):step]
        assert mean_abs_diff(test[start:end], expected) < 3.0
        fast_steps = step_change[start:end - 1]
        assert fast_steps.mean() > 1.8 * normal_steps.mean(), (start, fast_steps.mean(), normal_steps.mean())


def test_cyclist_changes_only_its_box(built: dict) -> None:
    test, source = built["test"].astype(np.float32), built["source"]
    start, end, first = CYCLIST
    pastes = built["rule"]["cyclist"]["pastes"]
    assert [paste["output_frame"] for paste in pastes] == list(range(start, end))

    for paste in pastes:
        frame = paste["output_frame"]
        assert paste["source_frame"] == first + frame - start
        x0, y0, x1, y1 = paste["box"]
        assert 10 <= y1 - y0 <= 60, paste  # about a pedestrian's height in this scene

        difference = np.abs(test[frame] - source[paste["source_frame"]])  # (H, W)
        inside = np.zeros(difference.shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        assert difference[inside].mean() > 15.0, (paste, difference[inside].mean())
        assert difference[~inside].mean() < 3.0, (paste, difference[~inside].mean())

        # A box placed off the cyclist would leave him in this 8-pixel ring; only encoding error may show.
        ring = np.zeros(difference.shape, dtype=bool)
        ring[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = True
        ring &= ~inside
        assert difference[ring].mean() < 6.0, (paste, difference[ring].mean())


def test_cyclist_moves_along_walkway(built: dict) -> None:
    boxes = np.array([paste["box"] for paste in built["rule"]["cyclist"]["pastes"]], dtype=np.float32)
    centres_x = (boxes[:, 0] + boxes[:, 2]) / 2
    assert np.all(np.diff(centres_x) > 0)
    assert centres_x[-1] - centres_x[0] > 150


def test_rerun_gives_same_labels(built: dict, tmp_path: Path) -> None:
    result = run_script(tmp_path / "again")
    assert result.returncode == 0, result.stderr
    again = json.loads((tmp_path / "again" / "test" / "walkway_test.labels.json").read_text())
    assert again == built["labels"]
    assert (tmp_path / "again" / "RULE.md").read_text() == (built["out"] / "RULE.md").read_text()
    assert json.loads((tmp_path / "again" / "rule.json").read_text()) == built["rule"]


def test_missing_footage_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "footage").mkdir()
    result = run_script(tmp_path / "out", footage=tmp_path / "footage")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "footage file not found" in lines[0]
    assert "vtest.avi" in lines[0]
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "footage"]


def test_nonempty_output_folder_rejected(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    result = run_script(out)
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (out / "keep.txt").read_text() == "user data"
