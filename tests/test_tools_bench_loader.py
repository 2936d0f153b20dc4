"""`tools/bench_loader.py --quick` runs end to end and reports every figure."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_loader_quick(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_loader.py"), "--quick", "--workers", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "shards / decode ceiling" in result.stdout
    results = json.loads(out.read_text())
    assert results["clips"] == 12
    assert all(rate > 0 for rate in results["clips_per_s"].values())
    assert results["bytes_per_clip_second"]["shards"] > 0
    forms = {form["form"]: form for form in results["storage_forms"]}
    assert set(forms) == {
        "frames: JPEG quality 90", "frames: JPEG quality 75", "frames: H.264 segment (crf 23)",
        "audio: WAV int16", "audio: FLAC",
    }
    assert forms["frames: JPEG quality 75"]["bytes_per_clip_second"] < forms["frames: JPEG quality 90"]["bytes_per_clip_second"]
    assert forms["audio: FLAC"]["bytes_per_clip_second"] < forms["audio: WAV int16"]["bytes_per_clip_second"]
