"""The demo pipeline end to end on the real walkway footage, with pretraining cut to two steps.

`tools/demo.py` runs every user-facing command as a subprocess (footage rule, shards build, accelerate
launch pretrain.py, embed, detect fit/score/evaluate/explain), so this test covers the commands exactly as
README shows them. Only the number of training steps and the batch size differ from the demo.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_every_command(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools/demo.py"), "--out", str(out),
         "optim.total_steps=2", "optim.batch_size=4", "optim.warmup_steps=1", "run.log_every=1"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Both encoders were evaluated on the same frames, with valid metrics.
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"pretrained", "random_init"}
    for encoder, metrics in summary.items():
        micro = metrics["frame"]["micro"]
        for name in ("auroc", "eer", "auprc", "ap"):
            assert 0.0 <= micro[name] <= 1.0, (encoder, name, micro[name])
    assert "AUROC" in result.stdout
    assert str(out / "report" / "index.html") in result.stdout

    # The run folder holds what README promises.
    run = out / "run"
    for name in ("config.yaml", "log.jsonl", "checkpoints/init.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    log_rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["loss"]) for row in log_rows if "loss" in row)

    # Pretraining changed the encoder: the two embeddings of the same clips differ.
    import numpy as np

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
