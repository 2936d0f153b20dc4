"""k-nearest-neighbour detector: a clip is anomalous when it is far from its nearest normal clips.

FAISS finds the neighbours. Their distances are then recomputed from the stored vectors in float64, so exact
duplicates are at distance 0 and scores do not depend on the rounding of FAISS's BLAS path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from detect.base import Detector
from detect.errors import DetectInputError

logger = logging.getLogger(__name__)

METRICS = ("cosine", "l2")
AGGREGATES = ("mean", "max", "kth")
INDEXES = ("flat", "hnsw")

# Links per node of an HNSW graph; 32 is FAISS's usual choice for recall above 0.95 at moderate memory.
_HNSW_LINKS = 32


class KNNDetector(Detector):
    """Score = mean (or max, or k-th) distance from a clip to its k nearest normal clips.

    With `metric="cosine"` vectors are L2-normalised and the distance is 1 - cosine similarity, in [0, 2];
    with `metric="l2"` it is the Euclidean distance. Because neighbours come sorted by distance, "max" and
    "kth" give the same score; both names are accepted, as in PyOD. `index="flat"` searches exactly;
    `index="hnsw"` searches approximately, for normal sets of millions of rows.
    `nearest_distance_reference_` is the `reference_quantile` quantile of each normal clip's distance to
    its nearest other normal clip: a query whose nearest normal clip is farther than that has nothing
    normal near it.
    """

    name = "knn"
    array_names = ("normal_vectors",)

    def __init__(
        self,
        k: int = 5,
        metric: str = "cosine",
        aggregate: str = "mean",
        index: str = "flat",
        contamination: float = 0.1,
        reference_quantile: float = 0.99,
        batch_size: int = 4096,
    ) -> None:
        super().__init__(contamination=contamination)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DetectInputError(f"k must be a positive integer, got {k!r}")
        if metric not in METRICS:
            raise DetectInputError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if aggregate not in AGGREGATES:
            raise DetectInputError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        if index not in INDEXES:
            raise DetectInputError(f"index must be one of {', '.join(INDEXES)}, got {index!r}")
        if not 0.0 < reference_quantile <= 1.0:
            raise DetectInputError(f"reference_quantile must be in (0, 1], got {reference_quantile}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DetectInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.k = k
        self.metric = metric
        self.aggregate = aggregate
        self.index = index
        self.reference_quantile = float(reference_quantile)
        self.batch_size = batch_size

    def settings(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "metric": self.metric,
            "aggregate": self.aggregate,
            "index": self.index,
            "contamination": self.contamination,
            "reference_quantile": self.reference_quantile,
            "batch_size": self.batch_size,
        }

    def _fitted_scalars(self) -> dict[str, Any]:
        return {"nearest_distance_reference_": self.nearest_distance_reference_}

    # ---- fitting and scoring

    def _fit(self, vectors: np.ndarray) -> np.ndarray:
        normal_count = vectors.shape[0]
        if self.k + 1 > normal_count:
            raise DetectInputError(
                f"k={self.k} needs at least {self.k + 1} normal clips (k + 1, because each normal clip is "
                f"scored without itself), but got {normal_count}; lower k or add normal clips"
            )
        self.normal_vectors_ = self._prepare(vectors, source="normal vectors")  # (N, D)
        self._restore()

        # Leave-one-out: each normal row is scored against all normal rows but itself.
        distances, _ = self._kneighbors(vectors, np.arange(normal_count))  # (N, k)
        self.nearest_distance_reference_ = float(np.quantile(distances[:, 0], self.reference_quantile))
        return self.aggregate_distances(distances)

    def _restore(self) -> None:
        self.normal_vectors_ = np.ascontiguousarray(self.normal_vectors_, dtype=np.float32)
        if self.normal_vectors_.ndim != 2 or self.normal_vectors_.shape[1] != self.dimension_:
            raise DetectInputError(
                f"normal_vectors has shape {self.normal_vectors_.shape} but the detector's dimension is "
                f"{self.dimension_}"
            )
        self.index_ = self._build_index(self.normal_vectors_)

    def _score(self, vectors: np.ndarray, keys: Sequence[str] | None) -> np.ndarray:
        exclude = self.normal_ids_for_keys(keys) if keys is not None else None
        distances, _ = self.kneighbors(vectors, exclude_self_ids=exclude)
        return self.aggregate_distances(distances)

    def aggregate_distances(self, distances: np.ndarray) -> np.ndarray:
        """Reduce sorted neighbour distances (M, k) to one score per row (M,) with the `aggregate` rule."""
        if self.aggregate == "mean":
            return distances.mean(axis=1)
        return distances[:, -1]  # "max" and "kth" coincide because each row is sorted ascending

    def normal_ids_for_keys(self, keys: Sequence[str]) -> np.ndarray:
        """Return, for each key, the id of the normal row with that key, or -1 when it is not a normal row."""
        self._check_fitted()
        ids_by_key = {row.get("key"): index for index, row in enumerate(self.normal_meta_)}
        return np.array([ids_by_key.get(key, -1) for key in keys], dtype=np.int64)

    def kneighbors(
        self, vectors: np.ndarray, *, exclude_self_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find the k nearest normal rows of each query: distances (M, k) ascending and normal-row ids (M, k).

        `exclude_self_ids[i]` (or -1 for none) is a normal row that query i must not match: query i is that
        row itself. The search requests k + 1 neighbours and drops that id wherever it appears, not only
        in first place, because duplicated rows tie at distance 0 in any order.
        """
        self._check_fitted()
        return self._kneighbors(vectors, exclude_self_ids)

    # ---- search internals

    def _kneighbors(
        self, vectors: np.ndarray, exclude_self_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self._prepare(
            self._check_vectors(vectors, expected_dimension=self.dimension_), source="query vectors"
        )  # (M, D)
        query_count = queries.shape[0]
        if exclude_self_ids is not None:
            exclude_self_ids = np.asarray(exclude_self_ids, dtype=np.int64)
            if exclude_self_ids.shape != (query_count,):
                raise DetectInputError(
                    f"exclude_self_ids must have shape ({query_count},), got {exclude_self_ids.shape}"
                )

        distances = np.empty((query_count, self.k), dtype=np.float64)
        ids = np.empty((query_count, self.k), dtype=np.int64)
        batches = range(0, query_count, self.batch_size)
        for start in tqdm(batches, desc="kNN search", unit="batch", disable=len(batches) < 2):
            stop = min(start + self.batch_size, query_count)
            exclude = None if exclude_self_ids is None else exclude_self_ids[start:stop]
            distances[start:stop], ids[start:stop] = self._search_batch(queries[start:stop], exclude)
        return distances, ids

    def _search_batch(self, queries: np.ndarray, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        excluding = exclude is not None and bool((exclude >= 0).any())
        search_count = self.k + 1 if excluding else self.k
        _, found = self.index_.search(queries, search_count)  # (B, search_count)
        if (found < 0).any():
            # Approximate indexes can return fewer hits than asked; an exact flat index never does.
            raise RuntimeError(
                f"FAISS returned fewer than {search_count} neighbours from the {self.index} index"
            )

        exact = self._exact_distances(queries, found)  # (B, search_count)
        order = np.argsort(exact, axis=1, kind="stable")
        found = np.take_along_axis(found, order, axis=1)
        exact = np.take_along_axis(exact, order, axis=1)
        if not excluding:
            return exact, found

        keep = found != exclude[:, None]  # (B, k + 1), at most one False per row
        self_not_found = keep.all(axis=1)
        keep[self_not_found, -1] = False  # the row itself was farther than the k + 1 hits: drop the last
        batch_size = queries.shape[0]
        return exact[keep].reshape(batch_size, self.k), found[keep].reshape(batch_size, self.k)

    def _exact_distances(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
        neighbours = self.normal_vectors_[ids].astype(np.float64)  # (B, n, D)
        queries = queries.astype(np.float64)[:, None, :]  # (B, 1, D)
        if self.metric == "cosine":
            similarity = np.einsum("bnd,bnd->bn", np.broadcast_to(queries, neighbours.shape), neighbours)
            return np.clip(1.0 - similarity, 0.0, 2.0)
        return np.sqrt(((neighbours - queries) ** 2).sum(axis=2))

    def _prepare(self, vectors: np.ndarray, *, source: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.metric != "cosine":
            return vectors
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)  # (M,)
        zero_rows = np.flatnonzero(norms == 0)
        if zero_rows.size:
            shown = ", ".join(str(int(row)) for row in zero_rows[:5])
            raise DetectInputError(
                f"{source} have {zero_rows.size} all-zero row(s) (rows {shown}), which have no direction "
                "for the cosine metric; drop them or use metric l2"
            )
        return np.ascontiguousarray(vectors / norms[:, None].astype(np.float32))

    def _build_index(self, normal_vectors: np.ndarray) -> faiss.Index:
        dimension = normal_vectors.shape[1]
        faiss_metric = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
        if self.index == "flat":
            index = faiss.IndexFlatIP(dimension) if self.metric == "cosine" else faiss.IndexFlatL2(dimension)
        else:
            index = faiss.IndexHNSWFlat(dimension, _HNSW_LINKS, faiss_metric)
            index.hnsw.efSearch = max(64, 4 * (self.k + 1))
        index.add(normal_vectors)
        return index
