"""Embeddings folder reader and writer: round trip and every documented input error."""

import json

import numpy as np
import pytest

from detect.embeddings import load_embeddings, save_embeddings
from detect.errors import DetectInputError

HEADER = {"encoder": "test-encoder", "checkpoint": "none", "modality": "joint"}


def _meta(count):
    return [{"key": f"clip-{index:07d}", "source_name": "a.mp4", "start_s": float(index)} for index in range(count)]


def _write(tmp_path, vectors, meta=None):
    return save_embeddings(tmp_path / "embeddings", vectors, meta or _meta(len(vectors)), HEADER)


def test_round_trip_keeps_rows_and_header(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float16)
    folder = _write(tmp_path, vectors)
    loaded = load_embeddings(folder)
    np.testing.assert_array_equal(loaded.vectors, vectors)
    assert loaded.keys == [row["key"] for row in _meta(6)]
    assert loaded.header["dimension"] == 4
    assert loaded.header["count"] == 6
    assert loaded.header["dtype"] == "float16"
    assert loaded.header["encoder"] == "test-encoder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings"], "no temporary folder is left behind"


def test_format_version_mismatch_is_named(tmp_path):
    folder = _write(tmp_path, np.ones((3, 2), np.float32))
    header = json.loads((folder / "header.json").read_text())
    header["format_version"] = 7
    (folder / "header.json").write_text(json.dumps(header))
    with pytest.raises(DetectInputError, match="format_version 7"):
        load_embeddings(folder)


def test_meta_line_count_must_match(tmp_path):
    folder = _write(tmp_path, np.ones((3, 2), np.float32))
    lines = (folder / "meta.jsonl").read_text().splitlines()
    (folder / "meta.jsonl").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DetectInputError, match="2 rows but embeddings.npy has 3"):
        load_embeddings(folder)


def test_header_dimension_must_match(tmp_path):
    folder = _write(tmp_path, np.ones((3, 2), np.float32))
    header = json.loads((folder / "header.json").read_text())
    header["dimension"] = 5
    (folder / "header.json").write_text(json.dumps(header))
    with pytest.raises(DetectInputError, match="dimension 2 but header.json declares dimension 5"):
        load_embeddings(folder)


def test_integer_dtype_is_rejected(tmp_path):
    folder = _write(tmp_path, np.ones((3, 2), np.float32))
    np.save(folder / "embeddings.npy", np.ones((3, 2), np.int32))
    with pytest.raises(DetectInputError, match="dtype int32"):
        load_embeddings(folder)


def test_nan_rows_are_reported_by_index(tmp_path):
    folder = _write(tmp_path, np.ones((10, 3), np.float32))
    vectors = np.ones((10, 3), np.float32)
    vectors[[2, 7], 1] = np.nan
    vectors[8, 0] = np.inf
    np.save(folder / "embeddings.npy", vectors)
    with pytest.raises(DetectInputError, match=r"3 row\(s\) with NaN or infinity \(rows 2, 7, 8\)"):
        load_embeddings(folder)


def test_empty_set_is_rejected(tmp_path):
    with pytest.raises(DetectInputError, match="empty"):
        save_embeddings(tmp_path / "e", np.zeros((0, 4), np.float32), [], HEADER)


def test_duplicate_keys_are_rejected(tmp_path):
    meta = _meta(3)
    meta[2]["key"] = meta[0]["key"]
    with pytest.raises(DetectInputError, match="same key"):
        _write(tmp_path, np.ones((3, 2), np.float32), meta)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DetectInputError, match="embeddings folder not found"):
        load_embeddings(tmp_path / "nope")


def test_unrelated_output_folder_is_not_replaced(tmp_path):
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "notes.txt").write_text("keep me")
    with pytest.raises(DetectInputError, match="already exists"):
        _write(tmp_path, np.ones((3, 2), np.float32))
    assert (tmp_path / "embeddings" / "notes.txt").read_text() == "keep me"
