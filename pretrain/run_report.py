"""`latentwatch report RUN_DIR`: training curves of a pretraining run as PNGs plus one index.html.

It reads only the run folder's files: `log.jsonl` (one JSON object per logged step), `config.yaml` and the
names and sizes of the checkpoints. Every numeric column of the log is drawn. Known ones go in titled
panels with units (loss, learning rate, EMA momentum, gradient norm, collapse monitor, probe or sync
accuracy, throughput, method scalars). Any other column gets a panel of its own, so no logged scalar
is hidden.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pretrain.errors import PretrainError
from pretrain.run_folder import CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE, PARTIAL_SUFFIX
from shards.atomic_folder import atomic_folder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Panel:
    """One figure: the log keys it draws, its title and the y-axis label with the unit."""

    name: str
    keys: tuple[str, ...]
    title: str
    ylabel: str
    log_scale: bool = False


PANELS = (
    Panel("loss", ("loss", "byol_loss", "dino_loss", "sync_loss"), "Training loss",
          "loss (dimensionless, lower is better)"),
    Panel("lr", ("lr",), "Learning rate (warm-up, then cosine decay)", "learning rate (per optimiser step)"),
    Panel("momentum", ("tau",), "EMA momentum of the target network", "momentum tau (dimensionless)"),
    Panel("grad_norm", ("grad_norm",), "Gradient norm", "global L2 norm of the gradients", log_scale=True),
    Panel("collapse", ("embedding_std", "projection_std"),
          "Collapse monitor: spread of normalised embeddings", "per-dimension std on the unit sphere"),
    Panel("teacher", ("teacher_entropy", "teacher_kl_uniform"), "DINO teacher output distribution",
          "nats"),
    Panel("teacher_temp", ("teacher_temp",), "DINO teacher temperature", "temperature (dimensionless)"),
    Panel("accuracy", ("sync_accuracy",), "Accuracy", "accuracy (fraction correct)"),
    Panel("energy", ("energy_in_sync", "energy_shifted"), "Audio-shift energy (low = in sync)",
          "energy (logit, dimensionless)"),
    Panel("throughput", ("samples_per_s",), "Training throughput", "samples per second"),
    Panel("skipped", ("skipped_steps",), "Skipped steps (non-finite loss or gradients)",
          "steps (cumulative)"),
)
# Log keys that name a probe's accuracy are added to the accuracy panel, whatever the method calls them.
ACCURACY_MARKERS = ("accuracy", "probe")


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """Add `latentwatch report RUN_DIR` to the command line."""
    parser = subparsers.add_parser(
        "report",
        help="training curves of a pretraining run folder as PNGs and one HTML page",
        description="Draw every scalar of a run folder's log.jsonl (loss, learning rate, EMA momentum, "
        "gradient norm, collapse monitor, accuracies, throughput) as titled PNG plots and write index.html "
        "beside them. "
        "Works on a finished run folder and on one still training (RUN_DIR.partial).",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run folder written by pretrain.py")
    parser.add_argument(
        "--out", type=Path,
        help="report folder to write (default: RUN_DIR/report); an existing report folder is replaced",
    )
    parser.set_defaults(handler=_run_report_command)


def _run_report_command(args: argparse.Namespace) -> int:
    index = write_run_report(args.run_dir, args.out)
    print(index)
    return 0


def write_run_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the run's curves and index.html into `out_dir` (default `RUN_DIR/report`); return index.html."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        partial = run_dir.with_name(run_dir.name + PARTIAL_SUFFIX)
        hint = f"; the run is still training in {partial}" if partial.is_dir() else ""
        raise PretrainError(f"run folder not found: {run_dir}{hint}")
    records, skipped_lines = read_log(run_dir / LOG_FILE)
    config = _read_config(run_dir / CONFIG_FILE)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "report"

    panels = _panels_for(records)
    with atomic_folder(out_dir, marker="index.html", error=PretrainError) as temporary:
        figures = [(panel, _plot_panel(panel, records, config, temporary)) for panel in panels]
        page = _index_page(run_dir, records, skipped_lines, config, figures)
        (temporary / "index.html").write_text(page, encoding="utf-8")
    logger.info("wrote %d training curves to %s", len(figures), out_dir)
    return out_dir / "index.html"


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read log.jsonl; return the records with a numeric `step` and the number of lines skipped.

    A line that is not a JSON object (such as the last line of a run killed while writing) is skipped,
    counted and logged, because the rest of the curve is still worth drawing.
    """
    if not path.is_file():
        raise PretrainError(f"training log not found: {path}; is this a run folder written by pretrain.py?")
    records, skipped = [], 0
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            logger.warning("skipped %s line %d: not valid JSON (%s)", path, line_number, error)
            skipped += 1
            continue
        if not isinstance(record, dict) or not _is_number(record.get("step")):
            logger.warning("skipped %s line %d: not an object with a numeric 'step'", path, line_number)
            skipped += 1
            continue
        records.append(record)
    if not records:
        raise PretrainError(f"{path} has no logged step to draw ({skipped} lines skipped)")
    records.sort(key=lambda record: record["step"])
    return records, skipped


def _read_config(path: Path) -> dict[str, Any]:
    # The config only adds context (method, sizes); a missing or broken one must not stop the curves.
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        logger.warning("config not read from %s: %s", path, error)
        return {}
    return config if isinstance(config, dict) else {}


def _panels_for(records: list[dict[str, Any]]) -> list[Panel]:
    """Return the known panels that have data, then one panel per remaining numeric key."""
    # Keys that are present but always null (non-finite values are logged as null) still get a panel.
    present = {
        key
        for record in records
        for key, value in record.items()
        if key != "step" and (value is None or _is_number(value) or isinstance(value, float))
    }
    accuracy_extra = tuple(
        sorted(
            key for key in present
            if any(marker in key for marker in ACCURACY_MARKERS) and key != "sync_accuracy"
        )
    )
    panels = []
    used: set[str] = set()
    for panel in PANELS:
        keys = panel.keys + accuracy_extra if panel.name == "accuracy" else panel.keys
        keys = tuple(key for key in keys if key in present)
        if keys:
            panels.append(Panel(panel.name, keys, panel.title, panel.ylabel, panel.log_scale))
            used.update(keys)
    for key in sorted(present - used):
        panels.append(Panel(f"other_{key}", (key,), key, f"{key} (as logged)"))
    return panels


def _plot_panel(panel: Panel, records: list[dict[str, Any]], config: dict[str, Any], folder: Path) -> str:
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    axes = figure.subplots()
    few_points = len(records) <= 20
    all_positive = True
    for key in panel.keys:
        points = [(record["step"], record[key]) for record in records if _is_number(record.get(key))]
        missing = sum(1 for record in records if key in record and not _is_number(record.get(key)))
        label = key if not missing else f"{key} ({missing} non-finite values not drawn)"
        if not points:
            axes.plot([], [], label=f"{key} (no finite value logged)")
            continue
        steps, values = zip(*points)
        all_positive = all_positive and min(values) > 0
        axes.plot(steps, values, marker="o" if few_points else None, markersize=3, linewidth=1.2, label=label)

    for key, reference in _collapse_references(panel, config):
        axes.axhline(reference, color="grey", linestyle="--", linewidth=0.8,
                     label=f"1/sqrt({reference ** -2:.0f}): {key} spread evenly")
    if panel.log_scale and all_positive:
        axes.set_yscale("log")
    axes.set(title=panel.title, xlabel="optimiser step", ylabel=panel.ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    name = f"{panel.name}.png"
    FigureCanvasAgg(figure)
    figure.savefig(folder / name, format="png")
    return name


def _collapse_references(panel: Panel, config: dict[str, Any]) -> list[tuple[str, float]]:
    """Return 1/sqrt(D) for each collapse-monitor key whose dimension D the config names."""
    if panel.name != "collapse":
        return []
    dimensions = {
        "embedding_std": (config.get("model") or {}).get("joint_dim"),
        "projection_std": (config.get("method") or {}).get("projector_dim"),
    }
    return [
        (key, 1.0 / math.sqrt(dimensions[key]))
        for key in panel.keys
        if isinstance(dimensions.get(key), int) and dimensions[key] > 0
    ]


def _index_page(
    run_dir: Path,
    records: list[dict[str, Any]],
    skipped_lines: int,
    config: dict[str, Any],
    figures: list[tuple[Panel, str]],
) -> str:
    last = records[-1]
    method = (config.get("method") or {}).get("name", "unknown")
    optim = config.get("optim") or {}
    run = config.get("run") or {}
    facts = [
        ("run folder", str(run_dir.resolve())),
        ("method", method),
        ("steps logged", f"{len(records)} (steps {records[0]['step']} to {last['step']} "
                         f"of {optim.get('total_steps', 'unknown')})"),
        ("batch size", optim.get("batch_size", "unknown")),
        ("seed", run.get("seed", "unknown")),
        ("checkpoints", _checkpoint_list(run_dir / CHECKPOINT_DIR)),
    ]
    if skipped_lines:
        facts.append(("log lines skipped", f"{skipped_lines} (not valid JSON objects with a step)"))
    last_values = [(key, value) for key, value in last.items() if key != "step"]

    body = [f"<h1>Pretraining run: {_escape(run_dir.name)}</h1>", "<table>"]
    body += [f"<tr><th>{_escape(name)}</th><td>{_escape(str(value))}</td></tr>" for name, value in facts]
    body.append("</table>")
    body.append(f"<h2>Last logged step ({last['step']})</h2><table>")
    for key, value in last_values:
        body.append(f"<tr><th>{_escape(key)}</th><td>{_escape(_format(value))}</td></tr>")
    body.append("</table><h2>Curves</h2>")
    body += [f'<img src="{_escape(name)}" alt="{_escape(panel.title)}">' for panel, name in figures]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Pretraining run {_escape(run_dir.name)}</title><style>"
        "body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }"
        "table { border-collapse: collapse; margin: 0.5em 0; }"
        "td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 14px; }"
        "img { display: inline-block; margin: 4px; }"
        "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _checkpoint_list(folder: Path) -> str:
    if not folder.is_dir():
        return "no checkpoints folder"
    files = sorted(folder.glob("*.pt"))
    if not files:
        return "none"
    return ", ".join(f"{path.name} ({path.stat().st_size / 1e6:.1f} MB)" for path in files)



def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "non-finite (logged as null)" if value is None else str(value)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
