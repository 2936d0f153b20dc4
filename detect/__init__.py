"""Decision layer: anomaly detectors fitted on normal clips in latent space, evaluation and HTML reports.

This package reads the embeddings, shard and scores folders described in README.md and imports neither
`shards` nor `pretrain`, so embeddings from any other model can be scored with it.
"""

from detect.base import Detector, load_detector
from detect.cnc import CnCDetector
from detect.embeddings import Embeddings, load_embeddings, save_embeddings
from detect.errors import DetectInputError
from detect.iae import IAEDetector
from detect.knn import KNNDetector
from detect.probe import ProbeResult, knn_probe, linear_probe
from detect.sequences import build_windows

__all__ = [
    "CnCDetector",
    "Detector",
    "DetectInputError",
    "Embeddings",
    "IAEDetector",
    "KNNDetector",
    "ProbeResult",
    "build_windows",
    "knn_probe",
    "linear_probe",
    "load_detector",
    "load_embeddings",
    "save_embeddings",
]
