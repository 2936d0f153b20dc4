"""Decision layer: anomaly detectors fitted on normal clips in latent space, evaluation and HTML reports.

This package reads the embeddings, shard and scores folders described in README.md and imports neither
`shards` nor `pretrain`, so embeddings from any other model can be scored with it.

Names below are imported on first use, so `import detect.knn` in a scoring process does not pay for torch,
which only the IAE and Clear & Concise detectors need.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "CnCDetector": "detect.cnc",
    "Detector": "detect.base",
    "DetectInputError": "detect.errors",
    "Embeddings": "detect.embeddings",
    "IAEDetector": "detect.iae",
    "KNNDetector": "detect.knn",
    "ProbeResult": "detect.probe",
    "build_windows": "detect.sequences",
    "knn_probe": "detect.probe",
    "linear_probe": "detect.probe",
    "load_detector": "detect.base",
    "load_embeddings": "detect.embeddings",
    "save_embeddings": "detect.embeddings",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'detect' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
