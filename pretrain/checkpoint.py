"""Checkpoint files: plain dictionaries of tensors and built-in types, written atomically, loaded safely.

Every checkpoint contains `format_version`, `method` (a name in `pretrain.methods.METHODS`), `step`, `seed`,
`config` (the resolved config as plain dicts) and `model` (the method's state dict: online and target
networks and heads). Training checkpoints add `optimizer`, `scheduler` and `rng`. Loading always uses
`torch.load(..., weights_only=True)`, so a checkpoint cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from pretrain.errors import CheckpointError

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "method", "step", "config", "model")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` through a temporary file in the same folder and `os.replace`.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one. The payload is
    serialised in memory first and then written with Python's own file calls, because torch's writer turns
    a full disk into a RuntimeError without an errno; written this way, it is an OSError (ENOSPC, EFBIG)
    that the command reports as one line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _load_failure_reason(error: Exception) -> str:
    """Summarise why torch.load failed, without torch's advice to retry with weights_only=False."""
    message = " ".join(str(error).split())
    if message.startswith("Weights only load failed"):
        # torch's message goes on to suggest weights_only=False, which would let a malicious file run code.
        return (
            "safe loading (weights_only=True) rejected it: it is not a torch checkpoint, or it contains "
            "objects other than tensors and built-in types"
        )
    return message[:200]


def load_checkpoint(path: str | os.PathLike, expected_method: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint on the CPU; every problem with the file raises `CheckpointError`.

    `expected_method` rejects a checkpoint written by another method (for example when resuming a run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a latentwatch checkpoint: {_load_failure_reason(error)}"
        ) from error

    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(
            f"checkpoint {path} is not a latentwatch checkpoint: it lacks some of {', '.join(REQUIRED_KEYS)}"
        )
    if payload["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {payload['format_version']!r}; this version of latentwatch "
            f"reads format_version {CHECKPOINT_FORMAT_VERSION}"
        )
    if expected_method is not None and payload["method"] != expected_method:
        raise CheckpointError(
            f"checkpoint {path} was written by method {payload['method']!r}, not {expected_method!r}"
        )
    return payload
