"""Out-of-sync audio for the audio-shift model: the same source's audio, shifted in time, never padded.

A shard clip stores only the audio of its own span (1-2 s), while a shift of 0.5-2.5 s needs audio from
outside that span. `ShiftedAudioPairer` rebuilds a longer stretch of each source's audio from the clips
around a clip in its shard. The shard builder writes a source's clips in time order and
`tarfile_to_samples` yields them in that order, so this stage must run before any shuffling. The shifted
audio is cut from samples those clips actually contain, so it is always a real stretch of the source: a
gap between clips (stride longer than the clip) is never bridged, and nothing is zero-filled.

This works with every existing shard set and needs no longer audio window in the shard format. The cost
is that shifts stay within one shard, so shards should hold many consecutive clips of a source (the
builder's default is 64). A clip whose neighbours cover no shift in range is skipped, counted and logged.
That happens for a source shorter than clip + minimum shift, or for a shard holding only that one clip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from shards.read import Clip

logger = logging.getLogger(__name__)

# Log the first few skipped clips one by one, then one summary line per this many.
SKIP_LOG_FIRST = 5
SKIP_LOG_EVERY = 100


@dataclass
class ShiftedPair:
    """A clip with audio of the same source starting `shift_samples` after (or before, if negative) its own."""

    clip: Clip
    shifted_audio: np.ndarray  # (S,) float32, as long as clip.audio
    shift_samples: int


@dataclass
class _WindowClip:
    first: int  # index in the source's audio of the clip's first sample
    clip: Clip

    @property
    def stop(self) -> int:
        return self.first + len(self.clip.audio)


def first_audio_sample(clip: Clip) -> int:
    """Return the index in its source's audio of the clip's first sample, as the shard builder computed it."""
    return round(float(clip.meta["start_s"]) * int(clip.meta["sample_rate"]))


def covered_length(audio: np.ndarray) -> int:
    """Return how many leading samples of a clip's audio are real: all but a run of exact zeros at its end.

    The shard builder zero-pads a clip that runs past the end of its source's audio. Those zeros are not
    source audio, so they must not become part of a shifted window.
    """
    nonzero = np.flatnonzero(audio)
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


class ShiftedAudioPairer:
    """A stream stage: clips in shard order in, each clip with a randomly shifted audio window out.

    The shift is drawn uniformly among every sample offset whose magnitude lies in
    [`min_shift_s`, `max_shift_s`] (either direction) and whose window the neighbouring clips fully cover.
    Only clips near each other are kept in memory: a window of about 2 x `max_shift_s` of the source.
    """

    def __init__(self, min_shift_s: float, max_shift_s: float, generator: torch.Generator) -> None:
        if not 0.0 < min_shift_s <= max_shift_s:
            raise ValueError(f"need 0 < min_shift_s <= max_shift_s, got {min_shift_s} and {max_shift_s}")
        self.min_shift_s = min_shift_s
        self.max_shift_s = max_shift_s
        self.generator = generator
        self.skipped = 0

    def __call__(self, clips: Iterable[Clip]) -> Iterator[ShiftedPair]:
        window: list[_WindowClip] = []  # consecutive clips of one source, in increasing time
        pending = 0  # index in `window` of the first clip not yet emitted
        for clip in clips:
            if clip.audio is None:
                self._log_skip(clip.key, "it has no audio")
                continue

            entry = _WindowClip(first_audio_sample(clip), clip)
            if window and not self._continues(window[-1], entry):
                yield from self._emit(window, pending, len(window))
                window, pending = [], 0
            window.append(entry)

            # A clip is ready once later clips cannot extend the audio its largest shift can reach.
            max_shift = self._samples(self.max_shift_s, clip)
            ready = pending
            while ready < len(window) and window[ready].stop + max_shift <= entry.stop:
                ready += 1
            yield from self._emit(window, pending, ready)
            pending = ready

            # Drop clips that end before anything a pending or future clip could reach.
            oldest_needed = (window[pending].first if pending < len(window) else entry.first) - max_shift
            while window and window[0].stop <= oldest_needed:
                window.pop(0)
                pending -= 1

        yield from self._emit(window, pending, len(window))

    def _continues(self, previous: _WindowClip, entry: _WindowClip) -> bool:
        """Tell whether `entry` comes later in the same source as `previous`, so their audio shares one timeline.

        A new source, or the same shard drawn again by the resampled stream, starts a new window.
        """
        return (
            entry.clip.meta.get("source") == previous.clip.meta.get("source")
            and entry.clip.meta.get("sample_rate") == previous.clip.meta.get("sample_rate")
            and len(entry.clip.audio) == len(previous.clip.audio)
            and entry.first > previous.first
        )

    def _samples(self, seconds: float, clip: Clip) -> int:
        return round(seconds * int(clip.meta["sample_rate"]))

    def _emit(self, window: list[_WindowClip], start: int, stop: int) -> Iterator[ShiftedPair]:
        for index in range(start, stop):
            pair = self.draw_shift(window, index)
            if pair is None:
                self._log_skip(
                    window[index].clip.key,
                    "its neighbouring clips in the shard cover no shift of "
                    f"{self.min_shift_s}-{self.max_shift_s} s",
                )
                continue
            yield pair

    def draw_shift(self, window: list[_WindowClip], index: int) -> ShiftedPair | None:
        """Draw a shifted window for `window[index]` from the audio the window covers; None if none fits."""
        target = window[index]
        length = len(target.clip.audio)
        base = window[0].first
        track = np.zeros(max(entry.stop for entry in window) - base, dtype=np.float32)  # (N,)
        covered = np.zeros(len(track), dtype=bool)  # (N,)
        for entry in window:
            real = covered_length(entry.clip.audio)
            track[entry.first - base : entry.first - base + real] = entry.clip.audio[:real]
            covered[entry.first - base : entry.first - base + real] = True

        # fully_covered[q] is True when samples [q, q + length) of the track are all real audio.
        covered_count = np.concatenate([[0], np.cumsum(covered)])  # (N + 1,)
        fully_covered = covered_count[length:] - covered_count[:-length] == length  # (N - length + 1,)
        shifts = np.arange(len(fully_covered)) + base - target.first  # shift of each candidate start
        min_shift = self._samples(self.min_shift_s, target.clip)
        max_shift = self._samples(self.max_shift_s, target.clip)
        in_range = (np.abs(shifts) >= min_shift) & (np.abs(shifts) <= max_shift)
        candidates = np.flatnonzero(fully_covered & in_range)
        if len(candidates) == 0:
            return None

        start = int(candidates[int(torch.randint(len(candidates), (), generator=self.generator))])
        return ShiftedPair(target.clip, track[start : start + length].copy(), int(shifts[start]))

    def _log_skip(self, key: str, reason: str) -> None:
        self.skipped += 1
        if self.skipped <= SKIP_LOG_FIRST or self.skipped % SKIP_LOG_EVERY == 0:
            logger.warning(
                "skipped clip %s for the audio-shift model: %s; %d skipped so far by this worker",
                key,
                reason,
                self.skipped,
            )
