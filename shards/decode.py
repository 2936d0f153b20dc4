"""Open videos: frames decoded in file order and audio packet by packet (mono 16 kHz float32), with PyAV.

Every file is probed with PyAV before decord opens it, so a file that is not a video raises
`ShardsInputError` naming the path and the reason instead of a decord or FFmpeg traceback. decord supplies
only the frame count and the frame timestamps. Frames are never read by seeking: seeking is not exact in
files without usable timestamps (AVI), where the same build gave frames one position apart from run to run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np
from av.video.reformatter import VideoReformatter

from shards.clips import frame_times, timestamps_usable
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


# One interpolation for every resize, of video frames and of frame-folder images alike (swscale's
# bicubic, through PyAV), so a source looks the same whichever container it came in.
RESIZE_INTERPOLATION = "BICUBIC"

# Frames narrower or lower than this carry no picture to learn from; a clip needs at least 2x2 pixels.
MIN_FRAME_SIDE = 2


class VideoFile:
    """A video opened for clip cutting: frame count, rate, frame times, duration, and frame decoding.

    Frames are decoded in file order, one pass for all clips, and frame `i` is the `i`-th frame the decoder
    outputs (or, when the timestamps are usable, the frame whose timestamp is `frame_times[i]`). Only the
    frames of the current and the previous request are kept, so memory does not grow with the video.
    """

    def __init__(self, path: str | Path, *, max_side: int | None = None):
        self.path = Path(path)
        self.video_start_s, self.has_audio_stream, width, height = _probe(self.path)
        check_frame_size(self.path, width, height)
        self.width, self.height = _fit_within(width, height, max_side)

        # decord's packet index supplies the frame count and timestamps, so they stay the counts that
        # collections check frame labels against.
        try:
            reader = decord.VideoReader(str(self.path))
        except (RuntimeError, decord.DECORDError, IndexError) as error:
            reason = _first_line(error)
            raise ShardsInputError(f"{self.path}: cannot decode video frames ({reason})") from error

        self.num_frames = len(reader)
        self.fps = float(reader.get_avg_fps())
        if self.num_frames == 0 or not self.fps > 0:
            raise ShardsInputError(f"{self.path}: video stream has no frames or no frame rate")

        timestamps = reader.get_frame_timestamp(range(self.num_frames))[:, 0]  # (N,) start times
        del reader
        self.frame_times = frame_times(timestamps, self.num_frames, self.fps)  # (N,)
        self.duration_s = float(self.frame_times[-1] + 1.0 / self.fps)
        self.frames_placed_by_time = timestamps_usable(timestamps, self.num_frames, self.fps)
        self._frames = _SequentialFrames(self)

    def read_frames(self, indices: list[int]) -> np.ndarray:
        """Decode the frames at `indices`: `(F, H, W, 3)` uint8 RGB, longer side at most `max_side`.

        Reading clips in the order of their start is one decoding pass over the file. An index below those
        of the previous call restarts decoding from the first frame: still exact, but slow.
        Raises `RuntimeError` when a frame cannot be decoded, for the caller to count.
        """
        return self._frames.read(indices)

    def close(self) -> None:
        """Close the file; a later `read_frames` opens it again."""
        self._frames.close()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_frame_size(path: Path, width: int, height: int) -> None:
    """Raise `ShardsInputError` for frames smaller than `MIN_FRAME_SIDE` pixels on a side."""
    if width < MIN_FRAME_SIDE or height < MIN_FRAME_SIDE:
        raise ShardsInputError(
            f"{path}: frames are {width}x{height} pixels; no clip could be decoded from frames smaller "
            f"than {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels"
        )


def frame_to_rgb(
    frame: av.VideoFrame, width: int, height: int, reformatter: VideoReformatter | None = None
) -> np.ndarray:
    """Convert a decoded frame to `(height, width, 3)` uint8 RGB, resized with `RESIZE_INTERPOLATION`.

    Pass the same `reformatter` for every frame of a video, because it keeps its swscale context. Built
    again for each frame, the context cost about twice the conversion itself on the footage in
    `tools/footage`. A reformatter must not be shared between threads.
    """
    reformatter = reformatter if reformatter is not None else VideoReformatter()
    resized = reformatter.reformat(
        frame, width=width, height=height, format="rgb24", interpolation=RESIZE_INTERPOLATION
    )
    return resized.to_ndarray()  # (H, W, 3)


def resize_rgb(
    pixels: np.ndarray, width: int, height: int, reformatter: VideoReformatter | None = None
) -> np.ndarray:
    """Resize `(H, W, 3)` uint8 RGB pixels to `(height, width, 3)` the way video frames are resized."""
    if pixels.shape[:2] == (height, width):
        return pixels
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    return frame_to_rgb(frame, width, height, reformatter)


class _SequentialFrames:
    """The frames of one video, decoded strictly in file order and handed out by index.

    Each decoded frame is assigned an index: by its timestamp when the video's timestamps are usable (a
    frame that fails to decode then leaves only its own index empty), else by its position in the output.
    A packet that fails to decode in a video without usable timestamps counts as one lost frame.
    """

    def __init__(self, video: VideoFile):
        self._video = video
        self._container: av.container.InputContainer | None = None
        self._decoded = None  # iterator of (index, frame) in file order
        self._next_index = 0  # indices below this were passed by the current decoding pass
        self._exhausted = False
        self._lost: set[int] = set()  # indices the current pass passed without a frame
        self._previous_frames: dict[int, np.ndarray] = {}  # frames of the previous request, (H, W, 3) each
        self._reformatter = VideoReformatter()

    def read(self, indices: list[int]) -> np.ndarray:
        video = self._video
        requested = sorted(set(int(index) for index in indices))
        for index in requested:
            if not 0 <= index < video.num_frames:
                raise IndexError(f"{video.path}: frame index {index} outside 0..{video.num_frames - 1}")

        previous = self._previous_frames
        found = {index: previous[index] for index in requested if index in previous}
        to_decode = [index for index in requested if index not in found]
        if to_decode and self._decoded is None:
            self._restart()
        elif to_decode and to_decode[0] < self._next_index and not set(to_decode) <= self._lost:
            logger.debug(
                "%s: frame %d requested after frame %d; decoding again from the start",
                video.path, to_decode[0], self._next_index - 1,
            )
            self._restart()

        # Decode forward to the last requested frame; frames in between are decoded but never converted.
        pending = set(to_decode) - self._lost
        while pending and not self._exhausted and max(pending) >= self._next_index:
            item = next(self._decoded, None)
            if item is None:
                self._exhausted = True
                break
            index, frame = item
            if index in pending:
                found[index] = frame_to_rgb(frame, video.width, video.height, self._reformatter)
                pending.discard(index)

        self._previous_frames = found
        missing = [index for index in requested if index not in found]
        if missing:
            raise RuntimeError(f"{video.path}: frame {missing[0]} could not be decoded")
        return np.stack([found[int(index)] for index in indices])  # (F, H, W, 3)

    def close(self) -> None:
        if self._decoded is not None:
            self._decoded.close()
        if self._container is not None:
            self._container.close()
        self._container = None
        self._decoded = None
        self._exhausted = True

    def _restart(self) -> None:
        self.close()
        try:
            self._container = av.open(str(self._video.path))
        except av.FFmpegError as error:
            reason = _first_line(error)
            raise RuntimeError(f"{self._video.path}: cannot open the video again ({reason})") from error
        self._decoded = self._decode(self._container)
        self._next_index = 0
        self._exhausted = False
        self._lost = set()
        self._previous_frames = {}

    def _decode(self, container: av.container.InputContainer):
        """Yield `(index, frame)` for every frame of the video stream, in file order, indices increasing."""
        video = self._video
        stream = container.streams.video[0]
        position = 0  # frames output or lost so far, the index when timestamps are unusable
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as error:
                    reason = _first_line(error)
                    logger.warning(
                        "%s: skipped corrupt video packet at pts %s (%s)", video.path, packet.pts, reason
                    )
                    if not video.frames_placed_by_time and position >= self._next_index:
                        self._pass(position, decoded=False)
                    position += 1
                    continue
                for frame in frames:
                    index = self._index_of(frame, position)
                    position += 1
                    if index is None or index < self._next_index:
                        continue
                    self._pass(index)
                    yield index, frame
        except av.FFmpegError as error:
            # The demuxer failed (a truncated file): the frames after this point are missing.
            logger.warning("%s: video demuxing stopped early (%s)", video.path, _first_line(error))

    def _pass(self, index: int, *, decoded: bool = True) -> None:
        """Record that the pass has reached `index`; indices skipped on the way are lost frames."""
        self._lost.update(range(self._next_index, index if decoded else index + 1))
        self._next_index = index + 1

    def _index_of(self, frame: av.VideoFrame, position: int) -> int | None:
        """Return the index of a decoded frame, or None when its timestamp matches no frame."""
        video = self._video
        if not video.frames_placed_by_time or frame.pts is None or frame.time_base is None:
            return position if position < video.num_frames else None

        time = float(frame.pts * frame.time_base) - video.video_start_s
        times = video.frame_times  # (N,) increasing
        after = int(np.searchsorted(times, time))
        neighbours = [i for i in (after - 1, after) if 0 <= i < len(times)]
        nearest = min(neighbours, key=lambda i: abs(times[i] - time))
        # Accept a match within a quarter of the gap to the neighbouring frames; decord's float32 seconds
        # differ from the exact timestamp by far less.
        gaps = np.diff(times[max(0, nearest - 1) : nearest + 2])
        tolerance = 0.25 * float(gaps.min()) if len(gaps) else 0.25 / video.fps
        return nearest if abs(times[nearest] - time) <= tolerance else None


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
