"""Open videos: frames with decord, audio with PyAV packet by packet, resampled to mono 16 kHz float32.

Every file is probed with PyAV before decord opens it, so a file that is not a video raises
`ShardsInputError` naming the path and the reason instead of a decord or FFmpeg traceback.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np

from shards.clips import frame_times
from shards.errors import ShardsInputError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# A gap between two decoded audio frames longer than this (a skipped corrupt packet) is filled with
# silence, so the audio after it stays aligned with the video. Smaller gaps are timestamp jitter: AVI
# files round audio timestamps to the video frame rate.
AUDIO_GAP_TOLERANCE_S = 0.01

NO_AUDIO_STREAM = "no audio stream"


@dataclass(frozen=True)
class AudioTrack:
    """The audio of a whole video, or why there is none.

    `samples` is `(S,)` float32 mono at `sample_rate`, sample 0 at the first video frame's time; it is None
    when `missing_reason` is set (`"no audio stream"`, or `"audio failed to decode: ..."`).
    `skipped_packets` counts the packets and frames that failed to decode and became silence.
    """

    samples: np.ndarray | None
    sample_rate: int
    missing_reason: str | None
    skipped_packets: int = 0


class VideoFile:
    """A video opened for clip cutting: frame count, rate, frame times, duration, and frame decoding."""

    def __init__(self, path: str | Path, *, max_side: int | None = None):
        self.path = Path(path)
        self.video_start_s, self.has_audio_stream, width, height = _probe(self.path)
        new_width, new_height = _fit_within(width, height, max_side)

        try:
            self._reader = decord.VideoReader(str(self.path), width=new_width, height=new_height)
        except (RuntimeError, decord.DECORDError, IndexError) as error:
            reason = _first_line(error)
            raise ShardsInputError(f"{self.path}: cannot decode video frames ({reason})") from error

        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        if self.num_frames == 0 or not self.fps > 0:
            raise ShardsInputError(f"{self.path}: video stream has no frames or no frame rate")
        self.width, self.height = new_width, new_height

        timestamps = self._reader.get_frame_timestamp(range(self.num_frames))  # (N, 2) start, end
        self.frame_times = frame_times(timestamps[:, 0], self.num_frames, self.fps)  # (N,)
        self.duration_s = float(self.frame_times[-1] + 1.0 / self.fps)

    def read_frames(self, indices: list[int]) -> np.ndarray:
        """Decode the frames at `indices`: `(F, H, W, 3)` uint8 RGB, longer side at most `max_side`.

        Raises `RuntimeError` (from decord) when a frame cannot be decoded, for the caller to count.
        """
        # NOTE: once in about ten parallel builds of Megamind.avi (MS-MPEG4 in AVI) under heavy CPU load,
        # the frames of its last two clips came out one position later. It did not recur in later tries and
        # the cause (decord's seek near the end of the file, or its decoding thread) is not found.
        return self._reader.get_batch(list(indices)).asnumpy()


def _probe(path: Path) -> tuple[float, bool, int, int]:
    """Check with PyAV that `path` is a readable video.

    Returns the video stream's start time in seconds, whether there is an audio stream, and the frame
    width and height.
    """
    if not path.is_file():
        raise ShardsInputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ShardsInputError(f"{path}: file is empty")

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ShardsInputError(f"{path}: no video stream (is it a video file?)")
            video = container.streams.video[0]
            start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
            width, height = video.codec_context.width, video.codec_context.height
            if not width or not height:
                raise ShardsInputError(f"{path}: video stream has no frame size")
            return start, bool(container.streams.audio), width, height
    except av.FFmpegError as error:
        raise ShardsInputError(f"{path}: not a readable video ({_first_line(error)})") from error


def _fit_within(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Return `(width, height)` scaled down so the longer side is at most `max_side`; never scaled up."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# decord prefixes its messages with a clock time and its own source location.
_DECORD_PREFIX = re.compile(r"^\[[0-9:]+\] \S+: ")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return _DECORD_PREFIX.sub("", text[0]) if text else type(error).__name__


def decode_audio(
    path: str | Path, *, video_start_s: float = 0.0, sample_rate: int = SAMPLE_RATE
) -> AudioTrack:
    """Decode the first audio stream of `path` packet by packet into mono float32 at `sample_rate`.

    A packet that fails to decode is skipped, counted and logged, and the time it covered becomes silence,
    so one corrupt packet costs tens of milliseconds instead of the whole track. Sample 0 is at
    `video_start_s` on the container clock, the time of the first video frame.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        return AudioTrack(None, sample_rate, f"audio failed to decode: {_first_line(error)}")

    with container:
        if not container.streams.audio:
            return AudioTrack(None, sample_rate, NO_AUDIO_STREAM)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        position = 0  # timeline index of the next sample; negative while audio precedes the first frame
        origin = None  # timeline index of the first decoded sample
        skipped = 0
        last_error = ""

        try:
            packets = container.demux(stream)
            for packet in packets:
                try:
                    frames = packet.decode()
                except av.FFmpegError as error:
                    skipped += 1
                    last_error = _first_line(error)
                    logger.warning(
                        "%s: skipped corrupt audio packet at pts %s (%s)", path, packet.pts, last_error
                    )
                    continue

                for frame in frames:
                    if frame.pts is not None and frame.time_base is not None:
                        frame_start = float(frame.pts * frame.time_base) - video_start_s
                        expected = round(frame_start * sample_rate)
                        if origin is None and expected < 0:
                            position = expected
                        elif expected - position > AUDIO_GAP_TOLERANCE_S * sample_rate:
                            # A late frame means packets before it were skipped (or the audio starts
                            # after the video): fill their time with silence to keep the alignment.
                            chunks.append(np.zeros(expected - position, dtype=np.float32))
                            position = expected
                    if origin is None:
                        origin = position if not chunks else 0
                    try:
                        converted = resampler.resample(frame)
                    except (av.FFmpegError, ValueError) as error:
                        # A frame the resampler rejects (its layout changed mid-stream) counts as skipped.
                        skipped += 1
                        last_error = _first_line(error)
                        logger.warning("%s: skipped audio frame at pts %s (%s)", path, frame.pts, last_error)
                        continue
                    for resampled in converted:
                        chunk = resampled.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        position += len(chunk)
            for resampled in resampler.resample(None):
                chunk = resampled.to_ndarray().reshape(-1)
                chunks.append(chunk)
                position += len(chunk)
        except av.FFmpegError as error:
            # The demuxer itself failed (a truncated file): keep what was decoded so far.
            last_error = _first_line(error)
            logger.warning("%s: audio demuxing stopped early (%s)", path, last_error)

    if origin is None or position <= 0:
        reason = f"audio failed to decode: {last_error or 'no samples'}"
        logger.warning("%s: %s", path, reason)
        return AudioTrack(None, sample_rate, reason, skipped)

    samples = np.concatenate(chunks).astype(np.float32, copy=False)  # (S,)
    samples = samples[max(0, -origin) :]  # drop audio from before the first video frame
    if skipped:
        seconds = len(samples) / sample_rate
        logger.warning("%s: skipped %d corrupt audio packet(s); kept %.2f s of audio", path, skipped, seconds)
    return AudioTrack(samples, sample_rate, None, skipped)


def audio_slice(track: AudioTrack, first: int, stop: int) -> np.ndarray | None:
    """Return samples `[first, stop)` of `track`, zero-padded past its ends, or None when it has no audio.

    Audio that starts before the first video frame (negative indices) is dropped.
    """
    if track.samples is None:
        return None
    out = np.zeros(stop - first, dtype=np.float32)  # (stop - first,)
    source_first, source_stop = max(first, 0), min(stop, len(track.samples))
    if source_stop > source_first:
        out[source_first - first : source_stop - first] = track.samples[source_first:source_stop]
    return out
