"""Decision layer: anomaly detectors fitted on normal clips in latent space, evaluation and HTML reports.

This package reads the embeddings, shard and scores folders described in README.md and imports neither
`shards` nor `pretrain`, so embeddings from any other model can be scored with it.
"""

from detect.base import Detector, load_detector
from detect.embeddings import Embeddings, load_embeddings, save_embeddings
from detect.errors import DetectInputError
from detect.knn import KNNDetector

__all__ = [
    "Detector",
    "DetectInputError",
    "Embeddings",
    "KNNDetector",
    "load_detector",
    "load_embeddings",
    "save_embeddings",
]
