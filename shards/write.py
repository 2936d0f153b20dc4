"""Write clips as WebDataset samples into numbered tar shards of a fixed number of clips each."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

SHARD_NAME = "shard-{:06d}.tar"


class ShardSetWriter:
    """Append samples to `shard-000000.tar`, `shard-000001.tar`, ... in `folder`, `clips_per_shard` each.

    Members of a sample are written in the order `KEY.json`, `KEY.000.jpg`, ..., `KEY.wav`, all with
    modification time 0, so the same clips give byte-identical shards. The caller owns atomicity: it
    writes into a temporary folder and renames it when complete.
    """

    def __init__(self, folder: str | Path, clips_per_shard: int):
        if clips_per_shard < 1:
            raise ValueError(f"clips_per_shard must be at least 1, got {clips_per_shard}")
        self.folder = Path(folder)
        self.clips_per_shard = clips_per_shard
        self.shards: list[dict] = []  # {"name", "num_clips"} per shard, in order
        self._tar: tarfile.TarFile | None = None

    def write(self, key: str, meta: dict, jpegs: list[bytes], wav: bytes | None) -> str:
        """Add one clip and return the name of the shard it went into."""
        if "." in key or "/" in key:
            raise ValueError(f"clip key {key!r} must not contain '.' or '/'")
        if self._tar is None or self.shards[-1]["num_clips"] >= self.clips_per_shard:
            self._open_next()

        digits = max(3, len(str(len(jpegs) - 1)))
        self._add(f"{key}.json", json.dumps(meta, sort_keys=True).encode())
        for position, jpeg in enumerate(jpegs):
            self._add(f"{key}.{position:0{digits}d}.jpg", jpeg)
        if wav is not None:
            self._add(f"{key}.wav", wav)

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
        self._tar = tarfile.open(self.folder / name, mode="w", format=tarfile.PAX_FORMAT)
        self.shards.append({"name": name, "num_clips": 0})

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        self._tar.addfile(info, io.BytesIO(data))
