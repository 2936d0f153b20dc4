"""The audio-shift model's energy as an anomaly score: read `energy.npy` and build a scores folder from it.

An embeddings folder exported from an audio-shift checkpoint may contain `energy.npy`, float32 of shape
(N,), where row i is the model's energy of clip i (row i of `meta.jsonl`) with its own in-sync audio.
Higher energy means the model finds audio and video less in agreement, so it is used as the score as it
is. Nothing is fitted on normal clips: the score needs no detector folder, has no neighbours and no alarm
threshold.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from detect.embeddings import Embeddings, raise_on_non_finite_rows
from detect.errors import DetectInputError
from detect.scoring import score_rows

logger = logging.getLogger(__name__)

ENERGY_FILE = "energy.npy"
DETECTOR_NAME = "audio_shift_energy"


def read_energy(directory: Path, embeddings: Embeddings) -> np.ndarray:
    """Return the energies (N,) as float64, checked against the folder's `meta.jsonl` row count."""
    path = directory / ENERGY_FILE
    if not path.is_file():
        raise DetectInputError(
            f"{path} not found; only embeddings exported from an audio-shift checkpoint contain energies"
        )
    try:
        energy = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DetectInputError(f"cannot read {path} as a .npy array without pickle: {error}") from None

    if energy.ndim != 1:
        raise DetectInputError(f"{path} must be 1-D (N,), got shape {tuple(energy.shape)}")
    if not np.issubdtype(energy.dtype, np.floating):
        raise DetectInputError(f"{path} has dtype {energy.dtype}; expected float32")
    if energy.shape[0] != len(embeddings.meta):
        raise DetectInputError(
            f"{path} has {energy.shape[0]} energies but meta.jsonl has {len(embeddings.meta)} rows; "
            "re-export the embeddings so both describe the same clips"
        )
    raise_on_non_finite_rows(energy[:, None], source=str(path))
    return energy.astype(np.float64)


def score_energy(embeddings: Embeddings, *, embeddings_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the scores rows (embeddings order, no neighbours) and header for a folder's energies."""
    energy = read_energy(embeddings_path, embeddings)  # (N,)
    rows = score_rows(embeddings.meta, energy, [[] for _ in embeddings.meta])
    for row in rows:
        del row["neighbours"]  # no normal clips are involved, so there is nothing to list
    header = {
        "detector": DETECTOR_NAME,
        "model": embeddings.header.get("checkpoint"),
        "embeddings": str(embeddings_path.resolve()),
        "dimension": embeddings.dimension,
        "settings": {"score": "energy of each clip with its own audio; higher = less in sync"},
        "threshold": None,
        "normal_count": None,
        "embeddings_header": embeddings.header,
    }
    logger.info("scored %d clips by audio-shift energy from %s", len(rows), embeddings_path)
    return rows, header
