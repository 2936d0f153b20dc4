"""The run folder: where it lives while training, its resolved config, and the rename when training ends.

While a run trains, its folder is `OUT_DIR.partial`. It is renamed to `OUT_DIR` after the last checkpoint is
written, so a folder named `OUT_DIR` always contains a finished run. `--resume` continues `OUT_DIR.partial`,
or reopens a finished `OUT_DIR` (for example to train it for more steps).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pretrain.errors import PretrainError

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoints"
INIT_CHECKPOINT = "init.pt"
LAST_CHECKPOINT = "last.pt"
PARTIAL_SUFFIX = ".partial"


def partial_folder(out_dir: str | os.PathLike) -> Path:
    """Return the folder a run writes into until it finishes."""
    final = Path(out_dir)
    return final.with_name(final.name + PARTIAL_SUFFIX)


def locate_run_folder(out_dir: str | os.PathLike, resume: bool) -> Path:
    """Check the run folder state without changing anything; return the folder holding the run to resume.

    Without `resume`, neither `OUT_DIR` nor `OUT_DIR.partial` may exist, and the returned folder is the
    partial one to be created. With `resume`, an unfinished `OUT_DIR.partial` is preferred to a finished
    `OUT_DIR`, and it must hold checkpoints/last.pt. Every process may call this; it only reads.
    """
    final = Path(out_dir)
    working = partial_folder(final)
    if not resume:
        for existing in (final, working):
            if existing.exists():
                raise PretrainError(
                    f"run folder {existing} already exists; pass --resume to continue it, or set run.out_dir "
                    "to a new folder"
                )
        return working

    source = working if working.exists() else final
    if not source.exists():
        raise PretrainError(f"nothing to resume: neither {working} nor {final} exists")
    if not (source / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
        raise PretrainError(f"nothing to resume: {source / CHECKPOINT_DIR / LAST_CHECKPOINT} does not exist")
    return source


def open_run_folder(out_dir: str | os.PathLike, resume: bool) -> Path:
    """Create the working folder, or move a finished run back to it for resuming; call on one process only."""
    final = Path(out_dir)
    working = partial_folder(final)
    if not resume:
        (working / CHECKPOINT_DIR).mkdir(parents=True)
    elif not working.exists():
        os.replace(final, working)
    return working


def finish_run_folder(working: Path, out_dir: str | os.PathLike) -> Path:
    """Rename the working folder to its final name once the run is complete."""
    final = Path(out_dir)
    os.replace(working, final)
    return final


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_config(folder: Path, config: dict[str, Any]) -> None:
    """Save the resolved config (seed included) as the run folder's config.yaml."""
    write_text_atomically(folder / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


def truncate_log(folder: Path, last_step: int) -> int:
    """Drop log.jsonl lines of steps after `last_step`, which a resumed run will log again; return lines dropped.

    An interrupted run logs steps after its last checkpoint, and resuming restarts from that checkpoint.
    """
    path = folder / LOG_FILE
    if not path.is_file():
        return 0
    kept = []
    dropped = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step", 0)
        except json.JSONDecodeError:
            dropped += 1  # a line cut short by the interruption
            continue
        if step > last_step:
            dropped += 1
        else:
            kept.append(line)
    write_text_atomically(path, "".join(line + "\n" for line in kept))
    return dropped
