"""Run latentwatch end to end on the bundled walkway footage and report what pretraining bought.

Every step is the real command a user would type, run as a subprocess:

1. `tools/make_demo_footage.py`: normal training video and a test video with planted, labelled anomalies;
2. `latentwatch shards build`: one shard set for each;
3. `accelerate launch pretrain.py`: BYOL on the normal clips (video only: the footage has no audio), then
   `latentwatch report` draws the run's training curves;
4. `latentwatch embed`: embeddings of both shard sets from the pretrained encoder and from the same encoder
   at initialisation (`checkpoints/init.pt`: same architecture and seed, no training);
5. `latentwatch detect fit / score / evaluate` for each encoder;
6. `latentwatch detect explain`: the HTML report of the pretrained encoder's alarms.

It ends by printing both encoders' metrics side by side and the paths of both report pages, and writes the same
numbers to `OUT/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENCODERS = {"pretrained": "last.pt", "random_init": "init.pt"}


def run_step(title: str, command: list[str]) -> None:
    """Run one command with its output shown, and stop the demo if it fails."""
    print(f"\n==> {title}\n    $ {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"demo: step '{title}' failed with exit status {result.returncode} after {elapsed:.0f} s")
    print(f"    done in {elapsed:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo", help="output folder (default: ./demo)")
    parser.add_argument("--config", type=Path, default=REPO / "configs/pretrain/byol_tiny.yaml",
                        help="pretraining config")
    parser.add_argument("--clip-seconds", type=float, default=1.0, help="clip length in seconds")
    parser.add_argument("--stride-seconds", type=float, default=0.5,
                        help="start-to-start distance of consecutive clips in seconds")
    parser.add_argument("--k", type=int, default=5, help="neighbours of the kNN detector")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="pretraining config overrides, e.g. optim.total_steps=2")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    if out.exists():
        sys.exit(f"demo: {out} already exists; remove it or pass --out to a new folder")
    out.mkdir(parents=True)
    latentwatch = str(BIN / "latentwatch")
    started = time.perf_counter()

    footage = out / "footage"
    run_step("make the demo footage", [sys.executable, str(REPO / "tools/make_demo_footage.py"),
                                       "--out", str(footage)])

    shards = {split: out / "shards" / split for split in ("train", "test")}
    for split, video_dir in (("train", footage / "train"), ("test", footage / "test")):
        run_step(f"build {split} shards", [latentwatch, "shards", "build", str(video_dir), "--out", str(shards[split]),
                                            "--clip-seconds", str(args.clip_seconds),
                                            "--stride-seconds", str(args.stride_seconds)])

    run_dir = out / "run"
    # --quiet: an input error in pretrain.py prints its one line without accelerate's launcher traceback.
    launch = [str(BIN / "accelerate"), "launch", "--quiet", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    run_step("pretrain (BYOL)", launch + [str(REPO / "pretrain.py"), "--config", str(args.config),
                                          f"data.shards={shards['train']}", f"run.out_dir={run_dir}",
                                          *args.overrides])
    run_step("draw the pretraining curves", [latentwatch, "report", str(run_dir)])

    summary: dict[str, dict] = {}
    for encoder, checkpoint_name in ENCODERS.items():
        checkpoint = run_dir / "checkpoints" / checkpoint_name
        embeddings = {split: out / "embeddings" / encoder / split for split in shards}
        for split in shards:
            run_step(f"embed {split} clips ({encoder})", [latentwatch, "embed", "--checkpoint", str(checkpoint),
                                                          "--shards", str(shards[split]),
                                                          "--out", str(embeddings[split])])
        model = out / "detectors" / encoder
        scores = out / "scores" / encoder
        evaluation = out / "evaluation" / encoder
        run_step(f"fit kNN on normal clips ({encoder})", [latentwatch, "detect", "fit", "--method", "knn",
                                                          "--embeddings", str(embeddings["train"]),
                                                          "--out", str(model), "--k", str(args.k)])
        run_step(f"score test clips ({encoder})", [latentwatch, "detect", "score", "--model", str(model),
                                                   "--embeddings", str(embeddings["test"]),
                                                   "--out", str(scores)])
        run_step(f"evaluate ({encoder})", [latentwatch, "detect", "evaluate", "--scores", str(scores),
                                           "--out", str(evaluation)])
        summary[encoder] = json.loads((evaluation / "metrics.json").read_text())

    report = out / "report"
    run_step("explain the pretrained encoder's alarms",
             [latentwatch, "detect", "explain", "--scores", str(out / "scores" / "pretrained"),
              "--shards", str(shards["test"]), str(shards["train"]), "--out", str(report),
              "--metrics", str(out / "evaluation" / "pretrained" / "metrics.json")])

    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    curves = run_dir / "report" / "index.html"
    print_summary(summary, time.perf_counter() - started, report / "index.html", curves)
    return 0


def print_summary(summary: dict[str, dict], seconds: float, report_page: Path, curves_page: Path) -> None:
    """Print frame-level metrics of each encoder side by side."""
    print(f"\nkNN detector on the walkway test video, frame level (micro: all frames pooled), {seconds / 60:.1f} min")
    names = list(summary)
    print(f"{'metric':<8}" + "".join(f"{name:>14}" for name in names))
    for metric in ("auroc", "eer", "auprc", "ap"):
        values = [summary[name]["frame"]["micro"][metric] for name in names]
        print(f"{metric.upper():<8}" + "".join(f"{value:>14.3f}" for value in values))
    print(f"\nalarm report: {report_page}")
    print(f"pretraining curves: {curves_page}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
