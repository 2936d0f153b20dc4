"""Atomic folder writes: an output folder appears under its final name only when it is complete.

The data layer hosts this for `pretrain`, the layer above it that may import it. `detect` imports neither
other layer, so it keeps its own copy in `detect/atomic.py`.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shards.errors import ShardsInputError

logger = logging.getLogger(__name__)


@contextmanager
def atomic_folder(
    target: str | os.PathLike, *, marker: str, error: type[Exception] = ShardsInputError
) -> Iterator[Path]:
    """Yield a temporary folder next to `target` and rename it to `target` when the block succeeds.

    An existing `target` is replaced only when it is empty or contains `marker` (the file that identifies
    a folder of the same kind, such as `detector.json`), so a mistyped output path never deletes
    unrelated data. When the block raises, the temporary folder is removed and `target` is left as it was.
    """
    target = Path(target)
    if target.exists() and not _is_replaceable(target, marker):
        raise error(
            f"output folder {target} already exists and does not contain {marker}; "
            "remove it or choose another output path"
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    temporary = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent)
    )
    # mkdtemp creates the folder readable by its owner only; an output folder gets ordinary permissions.
    os.chmod(temporary, 0o755)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise

    if target.exists():
        # Two renames keep the time without a complete folder at `target` as short as the file system allows.
        retired = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.old")
        target.rename(retired)
        temporary.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
        logger.info("replaced %s", target)
    else:
        temporary.rename(target)


def _remove_leftovers(target: Path) -> None:
    """Delete temporary folders of `target` left by writers that were killed (their process is gone).

    Names carry the writer's process id, so a folder that another live process is still writing is kept.
    """
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*"):
        parts = leftover.name[len(target.name) + 2:].split(".")
        if leftover.suffix not in (".partial", ".old") or not parts[0].isdigit():
            continue
        if _process_alive(int(parts[0])):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        logger.info("removed %s, left by an interrupted write", leftover)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_replaceable(target: Path, marker: str) -> bool:
    if not target.is_dir():
        return False
    return (target / marker).is_file() or not any(target.iterdir())
