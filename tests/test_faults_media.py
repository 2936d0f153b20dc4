"""Broken and unusual media through the real `latentwatch shards build` command.

One folder contains every case; one build must finish, keep every usable clip, and list each unusable input in
`index.json` with its reason. Each case states its outcome: the clips it gives (and whether they carry
audio), or the reason it is skipped. README's "What latentwatch survives" table is this catalogue.
"""

from __future__ import annotations

import fractions
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fault_media import FOOTAGE, random_bytes, truncated_copy, write_video

LATENTWATCH = Path(sys.executable).with_name("latentwatch")


@dataclass(frozen=True)
class Outcome:
    clips: int = 0
    """Clips the input gives (1 s clips, no overlap); 0 means it is skipped."""
    has_audio: bool | None = None
    skip_reason: str | None = None
    """A phrase the logged and indexed reason contains."""


def make_catalogue(folder: Path) -> dict[str, Outcome]:
    """Write every case into `folder` and return its expected outcome, keyed by file name."""
    expected: dict[str, Outcome] = {}

    (folder / "empty.mp4").write_bytes(b"")
    expected["empty.mp4"] = Outcome(skip_reason="empty")
    random_bytes(folder / "random bytes.mp4")
    expected["random bytes.mp4"] = Outcome(skip_reason="not a readable video")

    # mp4 keeps its index at the end, so any cut makes it unreadable; avi keeps frames readable up to the cut.
    whole_mp4 = write_video(folder / "whole.mp4", seconds=3, audio_rate=44100)
    expected["whole.mp4"] = Outcome(clips=3, has_audio=True)
    for percent in (10, 50, 90):
        truncated_copy(whole_mp4, folder / f"cut_mp4_{percent}.mp4", percent / 100)
        expected[f"cut_mp4_{percent}.mp4"] = Outcome(skip_reason="not a readable video")
    whole_avi = write_video(folder / "whole_avi.avi", seconds=3)
    expected["whole_avi.avi"] = Outcome(clips=3, has_audio=False)
    for percent in (10, 50):
        truncated_copy(whole_avi, folder / f"cut_avi_{percent}.avi", percent / 100)
        expected[f"cut_avi_{percent}.avi"] = Outcome(skip_reason="not a readable video")
    truncated_copy(whole_avi, folder / "cut_avi_90.avi", 0.9)
    expected["cut_avi_90.avi"] = Outcome(clips=2, has_audio=False)

    # A real film whose second audio packet is corrupt: the packet is skipped, the rest of the audio kept.
    shutil.copy(FOOTAGE / "Megamind.avi", folder / "corrupt_audio_packet.avi")
    expected["corrupt_audio_packet.avi"] = Outcome(clips=11, has_audio=True)
    write_video(folder / "no_audio.mp4", seconds=2)
    expected["no_audio.mp4"] = Outcome(clips=2, has_audio=False)
    write_video(folder / "silent.mp4", seconds=2, audio_rate=44100, audio_level=0.0)
    expected["silent.mp4"] = Outcome(clips=2, has_audio=True)

    write_video(folder / "one_frame.mp4", seconds=0.1)
    expected["one_frame.mp4"] = Outcome(skip_reason="shorter than one clip")
    write_video(folder / "one_pixel.mov", seconds=2, size=(1, 1), codec="png", pix_fmt="rgb24")
    expected["one_pixel.mov"] = Outcome(skip_reason="frames are 1x1 pixels")
    write_video(folder / "uhd.mp4", seconds=1, fps=2, size=(3840, 2160))
    expected["uhd.mp4"] = Outcome(clips=1, has_audio=False)

    # Variable frame rate: frames 30 to 140 ms apart; clips follow the container's timestamps.
    gaps = np.random.default_rng(0).integers(30, 140, 40)
    stamps = [int(stamp) for stamp in np.cumsum(gaps) - gaps[0]]
    millisecond = fractions.Fraction(1, 1000)
    write_video(folder / "variable_rate.mkv", frame_pts=stamps, time_base=millisecond)
    expected["variable_rate.mkv"] = Outcome(clips=int((stamps[-1] / 1000 + 0.1) // 1), has_audio=False)
    # A 3 s jump in the timestamps: such timestamps are not trusted, frames are placed at index / fps.
    jump = list(range(0, 1000, 100)) + list(range(4000, 5000, 100))
    write_video(folder / "timestamp_jump.mkv", frame_pts=jump, time_base=millisecond)
    expected["timestamp_jump.mkv"] = Outcome(clips=2, has_audio=False)

    for layout in ("mono", "stereo", "5.1"):
        for rate in (8000, 22050, 44100, 48000):
            name = f"audio_{layout.replace('.', '_')}_{rate}.mp4"
            write_video(folder / name, seconds=2, audio_rate=rate, audio_layout=layout)
            expected[name] = Outcome(clips=2, has_audio=True)

    write_video(folder / "walk way é ü.mp4", seconds=2)
    expected["walk way é ü.mp4"] = Outcome(clips=2, has_audio=False)
    return expected


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    inputs = folder / "inputs"
    inputs.mkdir()
    expected = make_catalogue(inputs)
    out = folder / "shards"
    result = subprocess.run(
        [str(LATENTWATCH), "shards", "build", str(inputs), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    return expected, out, result


def test_build_survives_bad_inputs(built):
    expected, out, result = built
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["num_clips"] == sum(outcome.clips for outcome in expected.values())


def test_inputs_have_stated_outcomes(built):
    expected, out, _ = built
    index = json.loads((out / "index.json").read_text())
    sources = {Path(source["path"]).name: source for source in index["sources"]}
    skipped = {Path(entry["path"]).name: entry["reason"] for entry in index["skipped"]}

    for name, outcome in expected.items():
        if outcome.skip_reason is not None:
            assert name in skipped, f"{name} should be skipped"
            assert outcome.skip_reason in skipped[name], (name, skipped[name])
        else:
            assert name in sources, f"{name} should give clips; skipped: {skipped.get(name)}"
            assert sources[name]["num_clips"] == outcome.clips, name
            assert sources[name]["has_audio"] == outcome.has_audio, name
    assert sources["corrupt_audio_packet.avi"]["skipped_audio_packets"] >= 1


def test_audio_is_exact_16k_mono(built):
    from shards.read import iter_clips

    _, out, _ = built
    lengths = {
        clip.key: len(clip.audio)
        for clip in iter_clips(out)
        if clip.key.startswith("audio_")
    }
    assert len(lengths) == 24
    assert set(lengths.values()) == {16000}


@pytest.mark.parametrize("case", ["empty.mp4", "random bytes.mp4", "one_frame.mp4"])
def test_nothing_usable_one_error(built, tmp_path, case):
    _, out, _ = built
    source = out.parent / "inputs" / case
    result = subprocess.run(
        [str(LATENTWATCH), "shards", "build", str(source), "--out", str(tmp_path / "shards")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("latentwatch: error:")]
    assert len(errors) == 1, result.stderr
    assert not (tmp_path / "shards").exists()
