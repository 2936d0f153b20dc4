"""Write clips as WebDataset samples into tar files: numbered shards of a fixed size, or one spool file."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

SHARD_NAME = "shard-{:06d}.tar"

# A tar file is written under this suffix and renamed when closed, so a tar under its final name is whole.
TEMPORARY_SUFFIX = ".partial"


def sample_members(key: str, meta: dict, jpegs: list[bytes], wav: bytes | None) -> list[tuple[str, bytes]]:
    """Return the members of one clip in stored order: `KEY.json`, `KEY.000.jpg`, ..., `KEY.wav`."""
    if "." in key or "/" in key:
        raise ValueError(f"clip key {key!r} must not contain '.' or '/'")
    digits = max(3, len(str(len(jpegs) - 1)))
    members = [(f"{key}.json", json.dumps(meta, sort_keys=True).encode())]
    members += [(f"{key}.{position:0{digits}d}.jpg", jpeg) for position, jpeg in enumerate(jpegs)]
    if wav is not None:
        members.append((f"{key}.wav", wav))
    return members


class SampleTarWriter:
    """One tar file of samples, written as `PATH.partial[-PID]` and renamed to `PATH` by `close()`.

    Every member has modification time 0 and mode 0644, so the same samples give byte-identical files.
    The process id in the temporary name keeps two processes that write the same file (a resumed build
    and a worker left over from a killed one) from writing into each other's bytes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.temporary = self.path.with_name(f"{self.path.name}{TEMPORARY_SUFFIX}-{os.getpid()}")
        self._tar = tarfile.open(self.temporary, mode="w", format=tarfile.PAX_FORMAT)

    def add_sample(self, members: list[tuple[str, bytes]]) -> None:
        """Append the members of one sample, in order."""
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        """Finish the tar file, flush it to disk and give it its final name."""
        self._tar.close()
        with open(self.temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        """Close and delete the unfinished file."""
        self._tar.close()
        self.temporary.unlink(missing_ok=True)


def read_samples(path: str | Path) -> Iterator[list[tuple[str, bytes]]]:
    """Yield the members of each sample of a tar file written by `SampleTarWriter`, in stored order.

    A sample is a run of consecutive members whose names share the part before the first dot.
    """
    sample: list[tuple[str, bytes]] = []
    current = None
    with tarfile.open(path, mode="r|") as tar:
        for info in tar:
            key = info.name.split(".", 1)[0]
            if current is not None and key != current and sample:
                yield sample
                sample = []
            current = key
            sample.append((info.name, tar.extractfile(info).read()))
    if sample:
        yield sample


class ShardSetWriter:
    """Append samples to `shard-000000.tar`, `shard-000001.tar`, ... in `folder`, `clips_per_shard` each.

    Members of a sample are written in the order `KEY.json`, `KEY.000.jpg`, ..., `KEY.wav`, so the same
    clips give byte-identical shards. Each shard gets its final name only when it is full or the writer
    is closed. The caller still writes into a temporary folder and renames it when the set is complete.
    """

    def __init__(self, folder: str | Path, clips_per_shard: int):
        if clips_per_shard < 1:
            raise ValueError(f"clips_per_shard must be at least 1, got {clips_per_shard}")
        self.folder = Path(folder)
        self.clips_per_shard = clips_per_shard
        self.shards: list[dict] = []  # {"name", "num_clips"} per shard, in order
        self._tar: SampleTarWriter | None = None

    def write(self, key: str, meta: dict, jpegs: list[bytes], wav: bytes | None) -> str:
        """Add one clip and return the name of the shard it went into."""
        return self.write_members(sample_members(key, meta, jpegs, wav))

    def write_members(self, members: list[tuple[str, bytes]]) -> str:
        """Add one clip given as its encoded members, and return the name of the shard it went into."""
        if self._tar is None or self.shards[-1]["num_clips"] >= self.clips_per_shard:
            self._open_next()
        self._tar.add_sample(members)
        self.shards[-1]["num_clips"] += 1
        return self.shards[-1]["name"]

    def close(self) -> list[dict]:
        """Finish the last shard and return `{"name", "num_clips"}` of every shard written."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        return [dict(shard) for shard in self.shards]

    def _open_next(self) -> None:
        if self._tar is not None:
            self._tar.close()
        name = SHARD_NAME.format(len(self.shards))
        self._tar = SampleTarWriter(self.folder / name)
        self.shards.append({"name": name, "num_clips": 0})
