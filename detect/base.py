"""The detector contract shared by every latent-space detector, and its code-free save format.

Every detector is fitted on normal rows only, and `score` returns higher values for more anomalous rows.
Fitted attributes end in `_`. Thresholding is separate from scoring: `threshold_` is the
(1 - contamination) quantile of the training scores, so about `contamination` of normal clips would raise
an alarm. A detector may compute training scores for a random subset of its normal rows only (kNN does so
above `calibration_rows`), because each leave-one-out score costs a search: `calibration_ids_` then names
the rows of `train_scores_`, and is None when every normal row has a training score. A saved detector is
`detector.json` plus `.npy` arrays (`calibration_ids.npy` only for a subset; for the neural detectors, also
a `.safetensors` file of weights) and the normal rows' `meta.jsonl`, a format that loading can never execute.

`fit` takes normal rows and their metadata, never labels, and every setting chosen during fitting uses
the normal rows only: IAE stops early on a validation split of its normal training sequences, and CnC fits
the decay of its clarity target to its own warm-up losses. kNN's k, like every constructor setting, is the
user's choice, and no code here tunes a setting on test labels.

Most detectors score rows (N, D). Sequence detectors (`input_ndim = 3`) score sequences (M, N, D) of N
segment embeddings each; their `dimension_` is D and `sequence_length_` is N.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from detect.atomic import atomic_folder
from detect.embeddings import raise_on_non_finite_rows
from detect.errors import DetectInputError
from detect.json_files import (
    check_format_version,
    read_json_object,
    read_jsonl_objects,
    write_json_object,
    write_jsonl_objects,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

# Detector classes by the name stored in detector.json, filled as subclasses are defined.
DETECTORS: dict[str, type[Detector]] = {}


class Detector(ABC):
    """Base class: fit on normal rows, score any rows (higher = more anomalous), save and load."""

    name: ClassVar[str]
    # Names of the fitted arrays, each saved as NAME.npy and restored as attribute NAME_.
    array_names: ClassVar[tuple[str, ...]] = ()
    # Axes of one input batch: 2 for rows (N, D), 3 for sequences (M, N, D).
    input_ndim: ClassVar[int] = 2
    # Minimum number of segments per sequence that a sequence detector accepts.
    min_sequence_length: ClassVar[int] = 3
    # Sorted ids of the normal rows that `train_scores_` scores, or None for all of them, in order.
    calibration_ids_: np.ndarray | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            DETECTORS[cls.name] = cls

    def __init__(self, *, contamination: float = 0.1) -> None:
        if not 0.0 < contamination <= 0.5:
            raise DetectInputError(f"contamination must be in (0, 0.5], got {contamination}")
        self.contamination = float(contamination)

    # ---- the contract each detector implements

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Constructor arguments, as JSON values, that recreate this detector unfitted."""

    @abstractmethod
    def _fit(self, vectors: np.ndarray) -> np.ndarray:
        """Fit on normal rows (N, D) and return training scores, each computed without its own row.

        The scores are (N,), one per normal row, unless `_fit` set `calibration_ids_` to the sorted ids of a
        subset (n,) of the rows: then they are the scores of those rows, in that order.
        """

    @abstractmethod
    def _score(self, vectors: np.ndarray, keys: Sequence[str] | None) -> np.ndarray:
        """Score rows (M, D) that passed the input checks."""

    def _fitted_scalars(self) -> dict[str, Any]:
        """Detector-specific fitted scalars saved in detector.json; names end in `_`."""
        return {}

    def _restore(self) -> None:
        """Rebuild derived state (such as a search index) after `load` has set the fitted attributes."""

    def _write_files(self, folder: Path) -> None:
        """Write detector-specific files (such as network weights) into the folder being saved."""

    def _read_files(self, folder: Path) -> None:
        """Read the files `_write_files` wrote; called by `load` before `_restore`."""

    # ---- shared behaviour

    def fit(self, vectors: np.ndarray, meta: Sequence[dict[str, Any]] | None = None) -> Detector:
        """Fit on normal rows only and set `threshold_`; `meta[i]` (with a `key`) names row i in outputs."""
        vectors = self._check_vectors(vectors, expected_dimension=None)
        if meta is None:
            meta = [{"key": f"row-{index}"} for index in range(vectors.shape[0])]
        if len(meta) != vectors.shape[0]:
            raise DetectInputError(f"fit got {vectors.shape[0]} rows but {len(meta)} metadata entries")

        self.dimension_ = int(vectors.shape[-1])
        if self.input_ndim == 3:
            self.sequence_length_ = int(vectors.shape[1])
        self.normal_meta_ = [dict(row) for row in meta]
        self.calibration_ids_ = None
        self.train_scores_ = np.asarray(self._fit(vectors), dtype=np.float64)  # (N,), or (n,) of a subset
        scored_count = vectors.shape[0] if self.calibration_ids_ is None else self.calibration_ids_.shape[0]
        if self.train_scores_.shape != (scored_count,):
            raise RuntimeError(
                f"{self.name} returned {self.train_scores_.shape} training scores for {scored_count} rows"
            )
        self.threshold_ = float(np.quantile(self.train_scores_, 1.0 - self.contamination))
        logger.info(
            "fitted %s on %d normal %s of dimension %d; threshold %.6g at contamination %.3g from %d "
            "training scores",
            self.name, vectors.shape[0], "sequences" if self.input_ndim == 3 else "rows", self.dimension_,
            self.threshold_, self.contamination, scored_count,
        )
        return self

    def score(self, vectors: np.ndarray, *, keys: Sequence[str] | None = None) -> np.ndarray:
        """Return one anomaly score per row (M,), higher = more anomalous.

        A row whose key in `keys` is also a normal training key is scored without that training row, so
        scoring the training rows gives the same leave-one-out scores as `train_scores_` (for the rows in
        `calibration_ids_` when that is set).
        """
        self._check_fitted()
        vectors = self._check_vectors(vectors, expected_dimension=self.dimension_)
        if keys is not None and len(keys) != vectors.shape[0]:
            raise DetectInputError(f"score got {vectors.shape[0]} rows but {len(keys)} keys")
        return self._score(vectors, keys)

    def decision_function(self, vectors: np.ndarray, *, keys: Sequence[str] | None = None) -> np.ndarray:
        """Same as `score`, under the name PyOD and scikit-learn use."""
        return self.score(vectors, keys=keys)

    def predict(self, vectors: np.ndarray, *, keys: Sequence[str] | None = None) -> np.ndarray:
        """Return 1 for rows scored above `threshold_` (an alarm) and 0 otherwise, as an int array (M,)."""
        return (self.score(vectors, keys=keys) > self.threshold_).astype(np.int64)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "threshold_")

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `detector.json`, one `.npy` per fitted array and the normal rows' `meta.jsonl` atomically."""
        self._check_fitted()
        array_files = ["train_scores", *self.array_names]
        if self.calibration_ids_ is not None:
            array_files.insert(1, "calibration_ids")
        description = {
            "format_version": FORMAT_VERSION,
            "detector": self.name,
            "dimension": self.dimension_,
            "settings": self.settings(),
            "fitted": {
                "threshold_": self.threshold_,
                "normal_count": len(self.normal_meta_),
                "train_score_count": int(self.train_scores_.shape[0]),
                **({"sequence_length_": self.sequence_length_} if self.input_ndim == 3 else {}),
                **({"embeddings_source_": self.embeddings_source_} if getattr(self, "embeddings_source_", None)
                   else {}),
                **self._fitted_scalars(),
            },
            "arrays": [f"{name}.npy" for name in array_files],
        }
        with atomic_folder(directory, marker="detector.json") as temporary:
            np.save(temporary / "train_scores.npy", self.train_scores_, allow_pickle=False)
            if self.calibration_ids_ is not None:
                np.save(temporary / "calibration_ids.npy", self.calibration_ids_, allow_pickle=False)
            for name in self.array_names:
                np.save(temporary / f"{name}.npy", getattr(self, f"{name}_"), allow_pickle=False)
            write_jsonl_objects(temporary / "meta.jsonl", self.normal_meta_)
            self._write_files(temporary)
            write_json_object(temporary / "detector.json", description)
        logger.info("saved %s detector to %s", self.name, directory)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Detector:
        """Load a folder written by `save`; a folder of another detector or version is an input error."""
        directory = Path(directory)
        if not directory.is_dir():
            raise DetectInputError(f"detector folder not found: {directory}")
        description = read_json_object(directory / "detector.json", role="detector description")
        check_format_version(description, expected=FORMAT_VERSION, path=directory / "detector.json")

        stored_name = description.get("detector")
        if stored_name not in DETECTORS:
            known = ", ".join(sorted(DETECTORS))
            raise DetectInputError(
                f"{directory} contains an unknown detector {stored_name!r}; known detectors: {known}"
            )
        detector_class = DETECTORS[stored_name]
        if cls is not Detector and detector_class is not cls:
            raise DetectInputError(
                f"{directory} contains a {stored_name!r} detector, not a {cls.name!r} detector"
            )

        settings = description.get("settings")
        fitted = description.get("fitted")
        dimension = description.get("dimension")
        if not isinstance(settings, dict) or not isinstance(fitted, dict) or not isinstance(dimension, int):
            raise DetectInputError(f"{directory / 'detector.json'} lacks 'settings', 'fitted' or 'dimension'")
        try:
            detector = detector_class(**settings)
        except TypeError as error:
            raise DetectInputError(f"{directory / 'detector.json'} has invalid settings: {error}") from None

        detector.dimension_ = dimension
        for name, value in fitted.items():
            if name.endswith("_"):
                setattr(detector, name, value)
        detector.train_scores_ = _load_array(directory, "train_scores")
        for name in detector_class.array_names:
            setattr(detector, f"{name}_", _load_array(directory, name))

        detector.normal_meta_ = read_jsonl_objects(directory / "meta.jsonl", role="normal rows' metadata")
        expected_count = fitted.get("normal_count")
        if not isinstance(expected_count, int) or len(detector.normal_meta_) != expected_count:
            raise DetectInputError(
                f"{directory} is invalid: detector.json declares {expected_count!r} normal rows but "
                f"meta.jsonl has {len(detector.normal_meta_)}"
            )
        detector.calibration_ids_ = None
        if (directory / "calibration_ids.npy").is_file():
            detector.calibration_ids_ = _load_calibration_ids(directory, normal_count=expected_count)
        if detector.calibration_ids_ is None:
            scored_count, scored_rows = expected_count, "one per normal row"
        else:
            scored_count, scored_rows = detector.calibration_ids_.shape[0], "one per row of calibration_ids.npy"
        if detector.train_scores_.shape != (scored_count,):
            raise DetectInputError(
                f"{directory} is invalid: train_scores.npy has shape {detector.train_scores_.shape} but "
                f"{scored_count} training scores are expected ({scored_rows})"
            )
        detector._read_files(directory)
        detector._restore()
        return detector

    # ---- input checks

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise DetectInputError(f"this {self.name} detector is not fitted yet; call fit() or load() first")

    def _check_vectors(self, vectors: np.ndarray, *, expected_dimension: int | None) -> np.ndarray:
        vectors = np.asarray(vectors)
        if self.input_ndim == 3:
            return self._check_sequences(vectors, expected_dimension=expected_dimension)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise DetectInputError(f"expected a non-empty 2-D array (N, D), got shape {tuple(vectors.shape)}")
        if expected_dimension is not None and vectors.shape[1] != expected_dimension:
            raise DetectInputError(
                f"embeddings have dimension {vectors.shape[1]} "
                f"but the model was fitted on {expected_dimension}"
            )
        if not np.issubdtype(vectors.dtype, np.number) or np.issubdtype(vectors.dtype, np.complexfloating):
            raise DetectInputError(f"expected real-valued vectors, got dtype {vectors.dtype}")
        raise_on_non_finite_rows(vectors, source="input vectors")
        if np.issubdtype(vectors.dtype, np.floating):
            # Not copied, so a memory-mapped array stays on disk; each detector converts what it reads.
            return vectors
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _check_sequences(self, sequences: np.ndarray, *, expected_dimension: int | None) -> np.ndarray:
        """Check a sequence batch (M, N, D); with `expected_dimension` set, N and D must match the fit."""
        if sequences.ndim != 3 or 0 in sequences.shape:
            raise DetectInputError(
                f"the {self.name} detector expects a non-empty 3-D array of sequences (M, N, D) with N "
                f"segment embeddings each, got shape {tuple(sequences.shape)}"
            )
        if sequences.shape[1] < self.min_sequence_length:
            raise DetectInputError(
                f"sequences need at least {self.min_sequence_length} segments, got {sequences.shape[1]}"
            )
        if expected_dimension is not None:
            if sequences.shape[2] != expected_dimension:
                raise DetectInputError(
                    f"embeddings have dimension {sequences.shape[2]} "
                    f"but the model was fitted on {expected_dimension}"
                )
            if sequences.shape[1] != self.sequence_length_:
                raise DetectInputError(
                    f"sequences have {sequences.shape[1]} segments "
                    f"but the model was fitted on {self.sequence_length_}"
                )
        dtype = sequences.dtype
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise DetectInputError(f"expected real-valued sequences, got dtype {sequences.dtype}")
        raise_on_non_finite_rows(sequences.reshape(sequences.shape[0], -1), source="input sequences")
        return np.ascontiguousarray(sequences, dtype=np.float32)


def load_detector(directory: str | os.PathLike) -> Detector:
    """Load any saved detector, choosing its class from the name stored in detector.json."""
    # Defining a class registers it.
    import detect.cnc  # noqa: F401
    import detect.iae  # noqa: F401
    import detect.knn  # noqa: F401

    return Detector.load(directory)


def _load_calibration_ids(directory: Path, *, normal_count: int) -> np.ndarray:
    """Load `calibration_ids.npy` and check that it lists distinct normal-row ids in ascending order."""
    ids = np.asarray(_load_array(directory, "calibration_ids"))  # (n,), small, so read into memory
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DetectInputError(
            f"{directory / 'calibration_ids.npy'} must be a 1-D integer array, got shape {ids.shape} and "
            f"dtype {ids.dtype}"
        )
    in_range = ids.size == 0 or (ids[0] >= 0 and ids[-1] < normal_count)
    if not in_range or (np.diff(ids) <= 0).any():
        raise DetectInputError(
            f"{directory / 'calibration_ids.npy'} must list distinct normal-row ids in ascending order, "
            f"each in [0, {normal_count})"
        )
    return ids.astype(np.int64)


def _load_array(directory: Path, name: str) -> np.ndarray:
    path = directory / f"{name}.npy"
    if not path.is_file():
        raise DetectInputError(f"detector folder {directory} is missing {path.name}")
    try:
        # Memory-mapped, so the normal rows of a large kNN detector are read from disk as the search needs them.
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DetectInputError(f"cannot read {path} as a .npy array without pickle: {error}") from None
