"""Benchmark latentwatch's kNN detector: speed against PyOD and a bare lower bound, and peak memory.

Three measurements, all taken in one run and printed as ratios:

1. Speed against PyOD's `KNN` (PyOD 3.6.7, a test-only dependency): fit on `--rows` normal rows and score
   `--queries` rows of dimension `--dim` (Gaussian, seeded, float32 values), L2 and mean distance to the
   k = 5 nearest, both with default settings. Ours therefore computes leave-one-out training scores for
   `calibration_rows` (20,000) seeded random normal rows, while PyOD computes them for every normal row.
   PyOD scores all queries unless `--pyod-queries` is smaller, in which case its time for that many is
   scaled linearly to all queries (stated in the output). The largest absolute difference between our
   scores and PyOD's, on our calibration rows and on the queries PyOD scored, must be at most 1e-5.
2. Speed against a bare baseline: the same searches (the same calibration rows, then the queries) as a
   float32 torch matrix product and top-k in blocks of 4096 queries, with no input checks, no exact float64
   distances and no leave-one-out bookkeeping. It is not a true lower bound: FAISS's blocked search, which
   ours uses, was faster than it at mid sizes on the development machine.
3. Peak memory: a child process loads an embeddings folder of `--memory-rows` x `--memory-dim` float16
   rows through `load_embeddings` (memory-mapped), fits the detector (cosine) on its first
   `--memory-normal-rows` rows and scores all rows. Its peak resident set size (VmHWM on Linux, else
   `resource.getrusage`; both include the file pages read through the memory map) is divided by the size
   of embeddings.npy. The child imports only `detect.embeddings` and `detect.knn` (not torch); its
   resident set after those imports and after `load_embeddings` (mostly the parsed `meta.jsonl`) is
   reported too, so the peak can be split into imports, metadata and the search itself.

Goals: at least 10x faster than PyOD, at most 2x the lower bound, peak memory under 2.5x the file.

    .venv/bin/python tools/bench_detect.py --json bench_detect.json   # full size, several minutes
    .venv/bin/python tools/bench_detect.py --quick                      # seconds, for tests
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from detect.embeddings import load_embeddings, save_embeddings
from detect.knn import KNNDetector

logger = logging.getLogger(__name__)

K = 5
MAX_SCORE_DIFFERENCE = 1e-5
QUICK = {"rows": 2000, "queries": 400, "dim": 32, "memory_rows": 20000, "memory_dim": 64,
         "memory_normal_rows": 500, "pyod_queries": None, "calibration_rows": 500}
# Rows of the memory benchmark's file written per step, so the whole array is never in memory at once.
_WRITE_ROWS = 65536
_LOWER_BOUND_BATCH = 4096


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(Path(args.memory_child), args.memory_normal_rows)))
        return 0

    # Memory first: a child process starts with the parent's resident set as its high-water mark on Linux,
    # so it must be started before the speed benchmarks allocate their arrays.
    memory = _measure_memory(args)
    if args.memory_only:
        _print_memory(memory)
        return 0

    rng = np.random.default_rng(args.seed)
    normal = rng.standard_normal((args.rows, args.dim), dtype=np.float32)  # (N, D)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32) * 1.1  # (M, D)
    print(f"kNN benchmark: {args.rows} normal rows, {args.queries} queries, dimension {args.dim}, k = {K}, l2, mean")

    ours = _time_ours(normal, queries, args.calibration_rows)
    print(f"latentwatch kNN: fit {ours['fit_s']:.2f} s, score {ours['score_s']:.2f} s")
    bound = _time_lower_bound(normal, queries, ours["calibration_ids"])
    print(f"lower bound (torch matrix product + top-k): fit {bound['fit_s']:.2f} s, score {bound['score_s']:.2f} s")
    pyod_queries = args.queries if args.pyod_queries is None else min(args.pyod_queries, args.queries)
    pyod = _time_pyod(normal, queries, pyod_queries, ours)
    scaled = (f", {pyod['score_all_s']:.2f} s scaled linearly to {args.queries}"
              if pyod_queries < args.queries else " (all queries, nothing extrapolated)")
    print(f"PyOD KNN: fit {pyod['fit_s']:.2f} s, score {pyod['score_s']:.2f} s for {pyod['scored_queries']} queries{scaled}")

    ours_total = ours["fit_s"] + ours["score_s"]
    ratios = {
        "pyod_over_ours": (pyod["fit_s"] + pyod["score_all_s"]) / ours_total,
        "ours_over_lower_bound": ours_total / (bound["fit_s"] + bound["score_s"]),
        "peak_rss_over_file": memory["peak_rss_bytes"] / memory["file_bytes"],
        "peak_rss_above_imports_over_file": (
            (memory["peak_rss_bytes"] - memory["rss_after_imports_bytes"]) / memory["file_bytes"]
        ),
    }
    result = {
        "settings": {key: value for key, value in vars(args).items() if key not in ("json", "memory_child")},
        "ours": {name: value for name, value in ours.items() if name in ("fit_s", "score_s", "calibrated_rows")},
        "lower_bound": bound,
        "pyod": pyod,
        "memory": memory,
        "ratios": ratios,
        "max_score_difference": pyod["max_score_difference"],
        "goals": {"pyod_over_ours": ">= 10", "ours_over_lower_bound": "<= 2", "peak_rss_over_file": "< 2.5"},
    }

    print(f"max |ours - PyOD| score difference: {pyod['max_score_difference']:.3g} (limit {MAX_SCORE_DIFFERENCE:g})")
    print(f"speed-up over PyOD (fit + score): {ratios['pyod_over_ours']:.1f}x (goal >= 10x)")
    print(f"time over the lower bound (fit + score): {ratios['ours_over_lower_bound']:.2f}x (goal <= 2x)")
    _print_memory(memory)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_name(f".{args.json.name}.partial")
        temporary.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        temporary.replace(args.json)
        print(f"result: {args.json}")

    if pyod["max_score_difference"] > MAX_SCORE_DIFFERENCE:
        print(f"error: scores differ from PyOD's by more than {MAX_SCORE_DIFFERENCE:g}", file=sys.stderr)
        return 1
    return 0


def _print_memory(memory: dict[str, Any]) -> None:
    peak, after_imports, size = memory["peak_rss_bytes"], memory["rss_after_imports_bytes"], memory["file_bytes"]
    after_load = memory["rss_after_load_bytes"]
    print(
        f"peak memory: {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB float16 file of {memory['rows']} x "
        f"{memory['dim']}, {peak / size:.2f}x the file (goal < 2.5x; fit on {memory['normal_rows']} rows, "
        f"every row scored in {memory['score_s']:.1f} s)"
    )
    print(
        f"  resident after importing detect.embeddings and detect.knn: {after_imports / 2**20:.0f} MiB; after "
        f"load_embeddings (memory-mapped rows, parsed meta.jsonl): {after_load / 2**20:.0f} MiB; peak above the "
        f"imports {(peak - after_imports) / size:.2f}x the file"
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="normal rows to fit on (default: 100000)")
    parser.add_argument("--queries", type=int, default=20_000, help="rows to score (default: 20000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (default: 512)")
    parser.add_argument("--pyod-queries", type=int, default=None,
                        help="queries PyOD scores, its time then scaled linearly to --queries (default: all)")
    parser.add_argument("--calibration-rows", type=int, default=20_000,
                        help="our detector's calibration_rows, 0 = every normal row (default: 20000)")
    parser.add_argument("--memory-rows", type=int, default=1_000_000,
                        help="rows of the float16 file of the memory benchmark (default: 1000000)")
    parser.add_argument("--memory-dim", type=int, default=256,
                        help="dimension of the memory benchmark's file (default: 256)")
    parser.add_argument("--memory-normal-rows", type=int, default=5000,
                        help="first rows of that file the detector is fitted on; every row is then scored "
                             "(default: 5000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes that run in seconds; overrides every size flag")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    parser.add_argument("--memory-only", action="store_true",
                        help="run only the peak-memory benchmark and print it (no JSON)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    return args


def _time_ours(normal: np.ndarray, queries: np.ndarray, calibration_rows: int) -> dict[str, Any]:
    start = time.perf_counter()
    detector = KNNDetector(k=K, metric="l2", aggregate="mean", calibration_rows=calibration_rows).fit(normal)
    fitted = time.perf_counter()
    scores = detector.score(queries)
    scored = time.perf_counter()
    calibration_ids = detector.calibration_ids_
    if calibration_ids is None:
        calibration_ids = np.arange(normal.shape[0])
    return {"fit_s": fitted - start, "score_s": scored - fitted, "calibrated_rows": int(calibration_ids.size),
            "calibration_ids": calibration_ids, "train_scores": detector.train_scores_, "query_scores": scores}


def _time_lower_bound(normal: np.ndarray, queries: np.ndarray, calibration_ids: np.ndarray) -> dict[str, float]:
    import torch  # imported here, like PyOD, so the memory child process loads only what latentwatch imports

    database = torch.from_numpy(normal)  # (N, D)
    database_norms = (database**2).sum(dim=1)  # (N,)

    def search(rows: np.ndarray, count: int) -> torch.Tensor:
        nearest = []
        for start in range(0, rows.shape[0], _LOWER_BOUND_BATCH):
            batch = torch.from_numpy(rows[start : start + _LOWER_BOUND_BATCH])  # (B, D)
            squared = (batch**2).sum(dim=1, keepdim=True) - 2.0 * batch @ database.T + database_norms  # (B, N)
            nearest.append(torch.topk(squared, count, dim=1, largest=False).values)  # (B, count)
        return torch.cat(nearest).clamp_min(0).sqrt()

    start = time.perf_counter()
    search(normal[calibration_ids], K + 1)[:, 1:].mean(dim=1)  # the nearest hit of a normal row is the row itself
    fitted = time.perf_counter()
    search(queries, K).mean(dim=1)
    scored = time.perf_counter()
    return {"fit_s": fitted - start, "score_s": scored - fitted}


def _time_pyod(normal: np.ndarray, queries: np.ndarray, scored_queries: int, ours: dict[str, Any]) -> dict[str, Any]:
    from pyod.models.knn import KNN

    # The same float32 values in float64, which is what PyOD computes in.
    normal_64, queries_64 = normal.astype(np.float64), queries[:scored_queries].astype(np.float64)
    start = time.perf_counter()
    detector = KNN(n_neighbors=K, method="mean").fit(normal_64)
    fitted = time.perf_counter()
    scores = detector.decision_function(queries_64)
    scored = time.perf_counter()

    difference = max(
        float(np.abs(detector.decision_scores_[ours["calibration_ids"]] - ours["train_scores"]).max()),
        float(np.abs(scores - ours["query_scores"][:scored_queries]).max()),
    )
    return {
        "fit_s": fitted - start,
        "score_s": scored - fitted,
        "scored_queries": scored_queries,
        "score_all_s": (scored - fitted) * queries.shape[0] / scored_queries,
        "max_score_difference": difference,
    }


def _measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_detect_") as workspace:
        folder = Path(workspace) / "embeddings"
        _write_float16_embeddings(folder, args.memory_rows, args.memory_dim, seed=args.seed)
        file_bytes = (folder / "embeddings.npy").stat().st_size
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(folder),
                   "--memory-normal-rows", str(args.memory_normal_rows)]
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"the memory benchmark's child process failed:\n{completed.stderr}")
    child = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"rows": args.memory_rows, "dim": args.memory_dim, "normal_rows": args.memory_normal_rows,
            "file_bytes": file_bytes, "wall_s": elapsed, **child}


def _write_float16_embeddings(folder: Path, rows: int, dim: int, *, seed: int) -> None:
    """Write a valid embeddings folder, then replace its array by a larger one written block by block."""
    rng = np.random.default_rng(seed + 1)
    meta = [{"key": f"clip-{index:07d}"} for index in range(rows)]
    save_embeddings(folder, np.zeros((rows, 1), dtype=np.float16) + 1, meta,
                    {"encoder": "benchmark", "checkpoint": "none", "modality": "joint"})
    array = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(rows, dim))
    for start in range(0, rows, _WRITE_ROWS):
        stop = min(start + _WRITE_ROWS, rows)
        array[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    array.flush()
    del array
    header = json.loads((folder / "header.json").read_text())
    header["dimension"] = dim
    (folder / "header.json").write_text(json.dumps(header))


def _memory_child(folder: Path, normal_rows: int) -> dict[str, Any]:
    after_imports = _peak_rss_bytes()
    embeddings = load_embeddings(folder)  # memory-mapped
    after_load = _resident_bytes()
    start = time.perf_counter()
    detector = KNNDetector(k=K, metric="cosine").fit(embeddings.vectors[:normal_rows], embeddings.meta[:normal_rows])
    fitted = time.perf_counter()
    scores = detector.score(embeddings.vectors)  # (rows,)
    scored = time.perf_counter()
    return {"peak_rss_bytes": _peak_rss_bytes(), "rss_after_imports_bytes": after_imports,
            "rss_after_load_bytes": after_load, "torch_imported": "torch" in sys.modules,
            "fit_s": fitted - start, "score_s": scored - fitted, "scored_rows": int(scores.shape[0])}


def _resident_bytes() -> int:
    """Return this process's current resident set size in bytes (VmRSS on Linux, else the peak)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes.

    On Linux, `getrusage`'s ru_maxrss starts a child process at the resident set its parent had when it
    forked, so a parent that wrote the benchmark file would raise the child's value. VmHWM in
    /proc/self/status is the high-water mark of this program's own address space, which exec starts
    afresh, so it is used where it exists and ru_maxrss elsewhere.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
