"""Per-modality comparison of an alarm: video, audio and joint kNN distances side by side.

Each modality has its own scores folder (the same clips embedded with `latentwatch embed --modality ...`,
each scored by a detector fitted on that modality's normal embeddings). Raw scores of different
embeddings are not comparable, so the modality that drives an alarm is the one whose score is the largest
multiple of its own alarm threshold. The joint embedding mixes the others, so it is shown for reference
and named as the driver only when no single modality is compared. When a modality has no positive
threshold, every modality is compared by the clip's percentile among that modality's scored clips.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from detect.errors import DetectInputError
from detect.json_files import finite_float
from detect.report_html import escape
from detect.scores import Scores


JOINT = "joint"


@dataclass
class ModalityScores:
    """One modality's scores folder, indexed by clip key, with its sorted scores for percentiles."""

    name: str
    scores: Scores
    by_key: dict[str, dict[str, Any]] = field(init=False)
    sorted_scores: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {row["key"]: row for row in self.scores.rows}
        self.sorted_scores = sorted(float(row["score"]) for row in self.scores.rows)

    @property
    def threshold(self) -> float | None:
        """The modality's alarm threshold when it is a positive finite number, else None."""
        value = finite_float(self.scores.header.get("threshold"))
        return value if value is not None and value > 0 else None

    def percentile(self, score: float) -> float:
        """Return the percentage of this modality's scored clips whose score is at most `score`."""
        return 100.0 * bisect.bisect_right(self.sorted_scores, score) / len(self.sorted_scores)


def primary_modality_name(scores: Scores) -> str:
    """Name the ranked scores by the modality of their embeddings (joint, video or audio), else 'ranked'."""
    embeddings_header = scores.header.get("embeddings_header")
    if isinstance(embeddings_header, dict) and isinstance(embeddings_header.get("modality"), str):
        return embeddings_header["modality"]
    return "ranked"


def build_modalities(primary: Scores, extra: list[tuple[str, Scores]]) -> list[ModalityScores]:
    """Return the ranked scores and each `--modality NAME=DIR` folder; raise when a name is given twice."""
    modalities = [ModalityScores(primary_modality_name(primary), primary)]
    for name, scores in extra:
        if any(existing.name == name for existing in modalities):
            raise DetectInputError(
                f"modality name {name!r} is given twice (the --scores folder is shown as "
                f"{modalities[0].name!r}); give each modality once"
            )
        modalities.append(ModalityScores(name, scores))
    return modalities


def modality_section(key: str, modalities: list[ModalityScores]) -> str:
    """Return a table of the clip's score, threshold and nearest normal distance in every modality."""
    present = [(modality, modality.by_key.get(key)) for modality in modalities]
    scored = [(modality, row) for modality, row in present if row is not None]
    use_threshold = all(modality.threshold is not None for modality, _ in scored)

    relative: dict[str, float] = {}
    for modality, row in scored:
        score = float(row["score"])
        relative[modality.name] = score / modality.threshold if use_threshold else modality.percentile(score)
    single = {name: value for name, value in relative.items() if name != JOINT}
    candidates = single or relative
    driver = max(candidates, key=candidates.get) if candidates else None

    measure = "score / threshold" if use_threshold else "percentile among its scored clips"
    lines = [
        "<h4>Distances by modality</h4>",
        f"<table><tr><th>modality</th><th>score</th><th>alarm threshold</th><th>{escape(measure)}</th>"
        "<th>nearest normal clip</th><th>nearest distance</th></tr>",
    ]
    for modality, row in present:
        if row is None:
            lines.append(
                f"<tr><td>{escape(modality.name)}</td>"
                '<td colspan="5" class="missing">clip not in this modality\'s scores</td></tr>'
            )
            continue
        neighbours = row.get("neighbours") or []
        nearest_key = escape(neighbours[0]["key"]) if neighbours else "none listed"
        nearest_distance = f"{neighbours[0]['distance']:.4g}" if neighbours else "n/a"
        threshold = modality.threshold
        value = relative[modality.name]
        value_text = f"{value:.2f}x" if use_threshold else f"{value:.0f}%"
        name_cell = escape(modality.name)
        if modality.name == driver:
            name_cell = f'<span class="driver">{name_cell}</span>'
        lines.append(
            f"<tr><td>{name_cell}</td><td>{float(row['score']):.4g}</td>"
            f"<td>{f'{threshold:.4g}' if threshold is not None else 'not stored'}</td><td>{value_text}</td>"
            f'<td class="key">{nearest_key}</td><td>{nearest_distance}</td></tr>'
        )
    lines.append("</table>")
    lines.append(f"<p>{escape(_driver_sentence(driver, candidates, use_threshold))}</p>")
    return "\n".join(lines)


def _driver_sentence(driver: str | None, relative: dict[str, float], use_threshold: bool) -> str:
    if driver is None:
        return "No modality scored this clip."
    if len(relative) == 1:
        return f"Only the {driver} modality scored this clip."
    others = ", ".join(
        (f"{value:.2f}x for {name}" if use_threshold else f"{value:.0f}% for {name}")
        for name, value in relative.items()
        if name != driver
    )
    if use_threshold:
        return (
            f"The {driver} modality drives this alarm: its score is {relative[driver]:.2f}x its alarm "
            f"threshold, against {others}."
        )
    return (
        f"The {driver} modality drives this alarm: its score is above {relative[driver]:.0f}% of that "
        f"modality's scored clips, against {others}. Not every modality stores a threshold."
    )
