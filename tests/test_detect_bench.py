"""tools/bench_detect.py --quick: it runs, writes every ratio to its JSON file and prints them."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "bench_detect.py"
RATIOS = ("pyod_over_ours", "ours_over_lower_bound", "peak_rss_over_file", "peak_rss_above_imports_over_file")


def test_bench_quick_writes_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                               capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr

    result = json.loads(out.read_text())
    for name in RATIOS:
        value = result["ratios"][name]
        assert isinstance(value, float), (name, value)
        assert math.isfinite(value), (name, value)
        assert value >= 0, (name, value)
    assert result["max_score_difference"] <= 1e-5
    assert result["memory"]["scored_rows"] == result["memory"]["rows"]
    assert result["memory"]["peak_rss_bytes"] >= result["memory"]["rss_after_imports_bytes"] > 0
    assert result["memory"]["rss_after_load_bytes"] > 0
    # Scoring with a kNN detector needs neither torch nor the detectors that use it.
    assert result["memory"]["torch_imported"] is False
    # --quick calibrates on 500 of its 2000 normal rows, and PyOD scores every query.
    assert result["ours"]["calibrated_rows"] == 500
    assert result["pyod"]["scored_queries"] == result["settings"]["queries"]

    for phrase in ("speed-up over PyOD", "time over the lower bound", "peak memory", "max |ours - PyOD|"):
        assert phrase in completed.stdout
