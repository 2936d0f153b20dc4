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

# Loads the report in an iframe, then writes how many images it has and which failed to load into the
# page, where `chromium --dump-dom` prints it. --allow-file-access-from-files lets the file:// page read
# the file:// iframe's document.
BROWSER_CHECK_PAGE = """<!doctype html><html><body>
<iframe id="report" src="{report_url}" width="1280" height="900"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById("report").addEventListener("load", () => {{
  const doc = document.getElementById("report").contentDocument;
  const images = Array.from(doc.images);
  const broken = images.filter(image => !(image.complete && image.naturalWidth > 0));
  document.getElementById("result").textContent = "RESULT " + JSON.stringify({{
    images: images.length,
    broken: broken.map(image => image.getAttribute("src")),
    text: doc.body.innerText,
  }});
}});
</script></body></html>
"""


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
def test_report_loads_in_chromium(demo: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    out, _ = demo
    check_page = tmp_path / "check.html"
    check_page.write_text(BROWSER_CHECK_PAGE.format(report_url=(out / "report" / "index.html").as_uri()))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
         "--virtual-time-budget=10000", "--dump-dom", check_page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r"RESULT (\{.*\})", result.stdout)
    assert match, f"the check page never saw the report load: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    loaded = json.loads(match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert loaded["images"] > 0
    assert loaded["broken"] == []
    assert "Top" in loaded["text"]
    assert "walkway_normal-" in loaded["text"], "no normal neighbour is shown"
