"""Bad inputs through `latentwatch shards build`: each is skipped with its reason, or gives one error line."""

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from shards.read import iter_clips

FOOTAGE = Path(__file__).resolve().parents[1] / "tools" / "footage"
LATENTWATCH = Path(sys.executable).parent / "latentwatch"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LATENTWATCH), *args], capture_output=True, text=True, timeout=300)


def write_video(path: Path, times_s: list[float]) -> None:
    """Write a 64x48 H.264 video whose frames start at `times_s` (milliseconds precision), no audio."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, time_s in enumerate(times_s):
            pixels = np.full((48, 64, 3), (index * 7) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = round(time_s * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "trunc_bikes.mp4").write_bytes((FOOTAGE / "bikes.mp4").read_bytes()[:500_000])  # index at the end
    (folder / "trunc_vtest.avi").write_bytes((FOOTAGE / "vtest.avi").read_bytes()[:3_000_000])
    shutil.copy(FOOTAGE / "Megamind.avi", folder / "megamind.avi")
    write_video(folder / "one_frame.mp4", [0.0])
    # Variable frame rate: gaps alternate between 20 ms and 60 ms, so 25 frames start in every second.
    write_video(folder / "vfr.mp4", [0.08 * (i // 2) + 0.02 * (i % 2) for i in range(100)])
    return folder


@pytest.fixture(scope="module")
def built(bad_folder, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("out") / "set"
    return run_cli("shards", "build", str(bad_folder), "--out", str(out), "--clip-seconds", "1", "--workers", "2"), out


def test_bad_inputs_skipped_with_reasons(built):
    result, out = built
    assert result.returncode == 0, result.stderr
    assert "skipped 4 input(s)" in result.stdout
    index = json.loads((out / "index.json").read_text())
    reasons = {Path(skipped["path"]).name: skipped["reason"] for skipped in index["skipped"]}
    assert sorted(reasons) == ["empty.mp4", "noise.avi", "one_frame.mp4", "trunc_bikes.mp4"]
    assert reasons["empty.mp4"].endswith("file is empty")
    assert "not a readable video" in reasons["noise.avi"]
    assert "not a readable video" in reasons["trunc_bikes.mp4"]
    assert reasons["one_frame.mp4"] == "shorter than one clip (0.040 s < 1.0 s)"


def test_partly_usable_inputs_kept(built):
    _, out = built
    index = json.loads((out / "index.json").read_text())
    sources = {Path(source["path"]).name: source for source in index["sources"]}
    assert sorted(sources) == ["megamind.avi", "trunc_vtest.avi", "vfr.mp4"]

    assert sources["megamind.avi"]["has_audio"] is True
    assert sources["megamind.avi"]["skipped_audio_packets"] == 1
    assert sources["trunc_vtest.avi"]["has_audio"] is False
    assert sources["trunc_vtest.avi"]["audio_missing_reason"] == "no audio stream"
    assert 20 <= sources["trunc_vtest.avi"]["num_clips"] < 79
    assert index["num_clips"] == sum(source["num_clips"] for source in index["sources"])
    assert len(list(iter_clips(out))) == index["num_clips"]


def test_variable_frame_rate_uses_timestamps(built):
    _, out = built
    clips = {clip.key: clip for clip in iter_clips(out) if clip.key.startswith("vfr-")}
    assert sorted(clips) == ["vfr-0000000", "vfr-0001000", "vfr-0002000"]
    # Frames 26 to 49 start in [1, 2) s; index / fps would wrongly give 25 to 49.
    assert clips["vfr-0001000"].meta["frame_indices"] == list(range(26, 50))
    assert len(clips["vfr-0002000"].frames) == 26  # 2.00, 2.02, 2.08, ..., 2.98 s


def test_nothing_usable_one_error_keeps_old_set(bad_folder, tmp_path):
    out = tmp_path / "set"
    first = run_cli("shards", "build", str(FOOTAGE / "bikes.mp4"), "--out", str(out), "--clip-seconds", "5")
    assert first.returncode == 0, first.stderr
    before = (out / "shard-000000.tar").read_bytes()

    inputs = [str(bad_folder / name) for name in ("empty.mp4", "noise.avi", "one_frame.mp4")]
    result = run_cli("shards", "build", *inputs, "--out", str(out), "--overwrite")
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("latentwatch: error:")]
    assert len(error_lines) == 1
    assert "no input gave a clip" in error_lines[0]
    assert "file is empty" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert (out / "shard-000000.tar").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
