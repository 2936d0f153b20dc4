"""The demo pipeline end to end on the real walkway footage, with pretraining cut to two steps.

`tools/demo.py` runs every user-facing command as a subprocess (footage rule, shards build, accelerate
launch pretrain.py, embed, detect fit/score/evaluate/explain), so this test covers the commands exactly as
README shows them. Only the number of training steps and the batch size differ from the demo.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Loads the alarm report and the run report in iframes, waits until every <video> and <audio> has its
# metadata or an error, then writes what loaded into the page, where `chromium --dump-dom` prints it.
# --allow-file-access-from-files lets the file:// page read the file:// iframes' documents.
BROWSER_CHECK_PAGE = """<!doctype html><html><body>
<iframe id="alarms" src="{report_url}" width="1280" height="900"></iframe>
<iframe id="run" src="{run_report_url}" width="1280" height="900"></iframe>
<pre id="result">pending</pre>
<script>
function describe(doc) {{
  const images = Array.from(doc.images);
  const media = Array.from(doc.querySelectorAll("video, audio"));
  const topAlarm = doc.getElementById("alarm-1");
  return {{
    images: images.length,
    broken: images.filter(image => !(image.complete && image.naturalWidth > 0))
      .map(image => image.getAttribute("src")),
    media: media.length,
    media_failed: media.filter(item => item.error || item.readyState < 1)
      .map(item => item.getAttribute("src")),
    timeline_links: doc.querySelectorAll("svg a").length,
    top_alarm: topAlarm ? topAlarm.innerText : null,
    text: doc.body.innerText,
  }};
}}
function settled(doc) {{
  return Array.from(doc.querySelectorAll("video, audio")).every(item => item.error || item.readyState >= 1);
}}
let attempts = 0;
function report() {{
  const docs = ["alarms", "run"].map(id => document.getElementById(id).contentDocument);
  attempts += 1;
  if (docs.some(doc => !doc || doc.readyState !== "complete" || !settled(doc)) && attempts < 100) {{
    setTimeout(report, 100);
    return;
  }}
  document.getElementById("result").textContent = "RESULT " + JSON.stringify({{
    alarms: describe(docs[0]), run: describe(docs[1]), attempts: attempts,
  }});
}}
window.addEventListener("load", report);
</script></body></html>
"""
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("end_to_end") / "demo"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/demo.py"), "--out", str(out),
         "optim.total_steps=2", "optim.batch_size=4", "optim.warmup_steps=1", "run.log_every=1"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_demo_runs_every_command(demo: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, result = demo

    # Both encoders were evaluated on the same frames, with valid metrics.
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"pretrained", "random_init"}
    for encoder, metrics in summary.items():
        micro = metrics["frame"]["micro"]
        for name in ("auroc", "eer", "auprc", "ap"):
            assert 0.0 <= micro[name] <= 1.0, (encoder, name, micro[name])
    assert "AUROC" in result.stdout
    assert str(out / "report" / "index.html") in result.stdout

    # The run folder contains what README promises.
    run = out / "run"
    for name in ("config.yaml", "log.jsonl", "checkpoints/init.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    log_rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["loss"]) for row in log_rows if "loss" in row)

    # Pretraining changed the encoder: the two embeddings of the same clips differ.
    pretrained = np.load(out / "embeddings/pretrained/test/embeddings.npy")
    random_init = np.load(out / "embeddings/random_init/test/embeddings.npy")
    assert pretrained.shape == random_init.shape
    assert not np.allclose(pretrained, random_init)

    # Every image of the report exists and decodes.
    page = (out / "report" / "index.html").read_text()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert sources, "the report shows no image"
    for source in sources:
        with Image.open(out / "report" / source) as image:
            image.verify()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_reports_load_in_chromium(demo: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    out, _ = demo
    run_report = out / "run" / "report" / "index.html"
    assert run_report.is_file(), "the demo should draw the pretraining curves with `latentwatch report`"
    report = out / "report" / "index.html"
    check_page = tmp_path / "check.html"
    check_page.write_text(
        BROWSER_CHECK_PAGE.format(report_url=report.as_uri(), run_report_url=run_report.as_uri())
    )
    result = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=20000", "--dump-dom", check_page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r"RESULT (\{.*\})", result.stdout)
    assert match, f"the reports never loaded: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    loaded = json.loads(match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))

    alarms = loaded["alarms"]
    assert alarms["images"] > 0
    assert alarms["broken"] == []
    assert alarms["media"] > 0, "no video excerpt in the report"
    assert alarms["media_failed"] == []
    assert alarms["timeline_links"] > 0, "no timeline peak links to an alarm"
    assert "Top" in alarms["text"]
    assert alarms["top_alarm"] is not None
    assert "walkway_normal-" in alarms["top_alarm"], "the top alarm shows no normal neighbour"
    assert loaded["run"]["images"] >= 5
    assert loaded["run"]["broken"] == []

    # The reports have no scripts, so any console message that Chromium logs for a report's folder
    # is an error.
    report_folders = (report.parent.as_uri(), run_report.parent.as_uri())
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert [line for line in console if any(folder in line for folder in report_folders)] == []

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
         "--virtual-time-budget=5000", f"--screenshot={screenshot}", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
    print(f"screenshot of the alarm report: {screenshot}")
