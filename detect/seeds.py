"""Evaluate several scores folders of one experiment (one per seed) and summarise every metric over them.

Each folder is evaluated on its own, as `detect evaluate` does for one. The summary gives, for every rule
(frame, centre frame or clip), scope (micro, macro) and metric, the mean, the sample standard deviation
(ddof = 1, so it estimates the spread between seeds) and n, the number of folders where the metric exists.
All folders must be evaluated at the same level and on the same items, because a mean over different test
sets would mix experiments.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from detect.atomic import atomic_folder
from detect.errors import DetectInputError
from detect.evaluate import FORMAT_VERSION, Evaluation, table_notes, write_evaluation_files
from detect.json_files import finite_float, write_json_object
from detect.metrics import METRIC_NAMES

logger = logging.getLogger(__name__)

SECTIONS = ("frame", "centre_frame", "clip")
SCOPES = ("micro", "macro")


def recorded_seeds(header: dict[str, Any]) -> dict[str, int | None]:
    """Return the seeds a scores header records: the embeddings' (pretraining) seed and the detector's.

    `seed` is the embeddings seed when recorded, else the detector seed, else None. The kNN detector has
    no seed of its own, so its runs differ only by the embeddings they score.
    """
    settings = header.get("settings") if isinstance(header.get("settings"), dict) else {}
    embeddings_header = header.get("embeddings_header") if isinstance(header.get("embeddings_header"), dict) else {}
    embeddings_seed = _integer(embeddings_header.get("seed"))
    detector_seed = _integer(settings.get("seed"))
    seed = _integer(header.get("seed"))
    if seed is None:
        seed = embeddings_seed if embeddings_seed is not None else detector_seed
    return {"seed": seed, "embeddings_seed": embeddings_seed, "detector_seed": detector_seed}


def summarise_evaluations(evaluations: list[Evaluation]) -> dict[str, Any]:
    """Return mean, standard deviation and n of every metric over the evaluations, per rule and scope."""
    _check_comparable(evaluations)
    summary: dict[str, Any] = {}
    first = evaluations[0].metrics
    for section in SECTIONS:
        if section not in first:
            continue
        summary[section] = {}
        for scope in SCOPES:
            summary[section][scope] = {}
            for name in METRIC_NAMES:
                values = [finite_float(run.metrics[section][scope].get(name)) for run in evaluations]
                present = [value for value in values if value is not None]
                summary[section][scope][name] = {
                    "mean": float(np.mean(present)) if present else None,
                    "std": float(np.std(present, ddof=1)) if len(present) > 1 else None,
                    "n": len(present),
                    "values": values,
                }
    return summary


def write_seed_evaluations(
    directory: str | os.PathLike,
    evaluations: list[Evaluation],
    scores_paths: list[Path],
    headers: list[dict[str, Any]],
    *,
    thresholds: list[float | None],
) -> dict[str, Any]:
    """Write one evaluation folder per run plus a metrics.json with every run and the summary, atomically.

    Returns the content of that metrics.json.
    """
    summary = summarise_evaluations(evaluations)
    runs = []
    with atomic_folder(directory, marker="metrics.json") as temporary:
        for index, (evaluation, path, header, threshold) in enumerate(
            zip(evaluations, scores_paths, headers, thresholds)
        ):
            seeds = recorded_seeds(header)
            name = f"run-{index}" + (f"-seed-{seeds['seed']}" if seeds["seed"] is not None else "")
            (temporary / name).mkdir()
            write_evaluation_files(temporary / name, evaluation, threshold=threshold)
            runs.append({"scores": str(path.resolve()), **seeds, "evaluation": f"{name}/metrics.json",
                         "metrics": evaluation.metrics})

        first = evaluations[0].metrics
        combined = {
            "format_version": FORMAT_VERSION,
            "runs_count": len(runs),
            "level": first["level"],
            "detector": first.get("detector"),
            "smoothing": first.get("smoothing"),
            "normalisation": first.get("normalisation"),
            "spread": "mean and sample standard deviation (ddof = 1) over runs; n counts runs with the metric",
            "summary": summary,
            "runs": runs,
        }
        write_json_object(temporary / "metrics.json", combined)
    logger.info("wrote the evaluation of %d runs to %s", len(runs), directory)
    return combined


def format_seed_table(combined: dict[str, Any]) -> str:
    """Format the summary as `mean ± std (n=N)` per metric, one line per rule and scope."""
    lines = [f"{'rule':<13}{'scope':<7}" + "".join(f"{name.upper():<24}" for name in METRIC_NAMES)]
    for section, scopes in combined["summary"].items():
        for scope, metrics in scopes.items():
            cells = "".join(f"{_cell(metrics[name]):<24}" for name in METRIC_NAMES)
            lines.append(f"{section if scope == 'micro' else '':<13}{scope:<7}{cells}".rstrip())
    pairs = [
        f"{_seed_text(run.get('embeddings_seed'))}/{_seed_text(run.get('detector_seed'))}" for run in combined["runs"]
    ]
    lines.append(f"runs: {combined['runs_count']}, seeds (pretraining/detector): {', '.join(pairs)}")
    lines.extend(table_notes(combined))
    return "\n".join(lines)


def _seed_text(seed: int | None) -> str:
    return "-" if seed is None else str(seed)


def _cell(values: dict[str, Any]) -> str:
    if values["mean"] is None:
        return "n/a"
    spread = f"{values['std']:.3f}" if values["std"] is not None else "n/a"
    return f"{values['mean']:.3f} ± {spread} (n={values['n']})"


def _check_comparable(evaluations: list[Evaluation]) -> None:
    if not evaluations:
        raise DetectInputError("no scores folder to evaluate")
    levels = {run.metrics["level"] for run in evaluations}
    if len(levels) > 1:
        raise DetectInputError(
            f"the scores folders are evaluated at different levels ({', '.join(sorted(levels))}); "
            "runs of one experiment must share their labels"
        )
    level = evaluations[0].metrics["level"]
    counts = {(run.metrics[level]["micro"]["items"], run.metrics[level]["micro"]["anomalous"]) for run in evaluations}
    if len(counts) > 1:
        shown = ", ".join(f"{items} items ({anomalous} anomalous)" for items, anomalous in sorted(counts))
        raise DetectInputError(
            f"the scores folders cover different test items ({shown}); summarise only runs on the same test set"
        )


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
