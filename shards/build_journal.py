"""The unfinished-build folder: what a build is making, which sources are done, and who is writing it.

A build of `OUT` works in `.OUT.partial` next to it. `.OUT.partial/.journal/build.json` stores the inputs
and the settings that change the shards' bytes. `.journal/work/` contains one spool file and one record per
finished source. A rerun of the same command finds the folder, checks that `build.json` matches, and
cuts only the sources that have no record. A lock file keeps two builds from writing the same folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from shards.build_options import BuildOptions
from shards.errors import ShardsInputError
from shards.source_item import SourceItem

logger = logging.getLogger(__name__)

JOURNAL_VERSION = 1


def partial_folder(out: Path) -> Path:
    """Return the folder a build of `out` works in until it is complete."""
    return out.parent / f".{out.name}.partial"


def describe_build(items: list[SourceItem], options: BuildOptions, format_version: int) -> dict:
    """Return what a build makes: its format, its byte-relevant settings and its inputs, in order."""
    inputs = []
    for item in items:
        labels_digest = None
        if item.frame_labels is not None:
            labels_digest = hashlib.sha256(bytes(item.frame_labels.astype("uint8"))).hexdigest()
        inputs.append(
            {
                "path": str(item.path.absolute()),
                "stem": item.stem,
                "label": item.label,
                "split": item.split,
                "collection": item.collection,
                "fps": item.fps,
                "start_s": item.start_s,
                "end_s": item.end_s,
                "frame_labels_sha256": labels_digest,
            }
        )
    return {
        "journal_version": JOURNAL_VERSION,
        "format_version": format_version,
        "settings": options.content_settings(),
        "inputs": inputs,
    }


class BuildJournal:
    """The `.journal` folder of an unfinished build, opened and locked by one build process at a time."""

    def __init__(self, partial: Path):
        self.partial = partial
        self.folder = partial / ".journal"
        self.work = self.folder / "work"
        self._lock_handle = None

    def open(self, description: dict, restart: bool) -> int:
        """Create or resume the unfinished build; return how many sources are already done.

        Raises `ShardsInputError` when another process is building the same output, or when the folder
        contains an unfinished build of other inputs or settings and `restart` is not set.
        """
        if restart and self.partial.exists():
            logger.info("discarding the unfinished build in %s", self.partial)
            self._lock()
            shutil.rmtree(self.partial)
            self._release()

        resumed = self.partial.exists()
        self.work.mkdir(parents=True, exist_ok=True)
        self._lock()

        stored_path = self.folder / "build.json"
        if resumed and stored_path.is_file():
            stored = json.loads(stored_path.read_text())
            difference = _first_difference(stored, description)
            if difference:
                self._release()
                raise ShardsInputError(
                    f"{self.partial} contains an unfinished build with {difference}; rerun the same command "
                    "to resume it, or pass --restart to discard it"
                )
        else:
            _write_atomically(stored_path, json.dumps(description, indent=2, sort_keys=True) + "\n")

        self._remove_leftovers()
        done = len(list(self.work.glob("source-*.json")))
        if done:
            logger.info("resuming the build in %s: %d source(s) already done", self.partial, done)
        return done

    def has_finished_work(self) -> bool:
        """Return whether any source has been cut into clips, which is worth keeping for a rerun."""
        for record in self.work.glob("source-*.json"):
            if json.loads(record.read_text()).get("status") == "ok":
                return True
        return False

    def close(self, *, delete: bool) -> None:
        """Release the lock, deleting the whole unfinished build first when `delete` is set."""
        if delete and self.partial.exists():
            shutil.rmtree(self.partial)
        self._release()

    def _lock(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / "lock", "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.close()
            raise ShardsInputError(
                f"another latentwatch process is building {self.partial}; wait for it to finish"
            ) from error
        self._lock_handle = handle

    def _release(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _remove_leftovers(self) -> None:
        """Delete temporary files of a killed build: half-written spools, records and shards."""
        for leftover in [*self.work.glob("*.partial-*"), *self.partial.glob("shard-*.tar*")]:
            leftover.unlink(missing_ok=True)
        (self.partial / "index.json").unlink(missing_ok=True)


def _first_difference(stored: dict, expected: dict) -> str | None:
    """Name the first part of two build descriptions that differs, in words for the user, or None."""
    if stored.get("journal_version") != expected["journal_version"]:
        return "an older version of latentwatch"
    if stored.get("format_version") != expected["format_version"]:
        return f"shard format version {stored.get('format_version')}"
    for name, value in expected["settings"].items():
        if stored["settings"].get(name) != value:
            return f"{name} = {stored['settings'].get(name)!r} (this command: {value!r})"
    stored_inputs, expected_inputs = stored["inputs"], expected["inputs"]
    if len(stored_inputs) != len(expected_inputs):
        return f"{len(stored_inputs)} input(s) (this command: {len(expected_inputs)})"
    for position, (before, now) in enumerate(zip(stored_inputs, expected_inputs)):
        if before != now:
            return f"another input at position {position + 1} ({before['path']}, this command: {now['path']})"
    return None


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.partial-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
