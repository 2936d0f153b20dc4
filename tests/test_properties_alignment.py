"""Properties of the clip-boundary and audio-alignment arithmetic over random frame rates, sample rates,
durations, clip lengths and strides (hypothesis searches for the counter-example)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shards.clips import BOUNDARY_TOLERANCE_S, audio_sample_range, clip_spans, frames_in_span

frame_rates = st.one_of(
    st.sampled_from([10.0, 24.0, 25.0, 30.0, 24000 / 1001, 30000 / 1001, 60000 / 1001]),
    st.floats(min_value=2.0, max_value=120.0, allow_nan=False),
)
sample_rates = st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000])
durations = st.floats(min_value=0.0, max_value=600.0, allow_nan=False)
# Clip lengths and strides as the CLI takes them: decimal seconds with at most three digits.
milliseconds = st.integers(min_value=100, max_value=5000).map(lambda ms: ms / 1000)


@settings(max_examples=300, deadline=None)
@given(duration=durations, clip=milliseconds, stride=milliseconds)
def test_spans_even_and_maximal(duration, clip, stride):
    spans = clip_spans(duration, clip, stride)
    if not spans:
        assert duration + BOUNDARY_TOLERANCE_S < clip
        return

    for index, (start, end) in enumerate(spans):
        assert math.isclose(start, index * stride, abs_tol=1e-6)
        assert math.isclose(end - start, clip, abs_tol=2e-6)
        assert end <= duration + BOUNDARY_TOLERANCE_S + 1e-6
    # One more clip would not fit: no usable time is dropped at the end.
    assert len(spans) * stride + clip > duration + BOUNDARY_TOLERANCE_S - 1e-6


@settings(max_examples=300, deadline=None)
@given(fps=frame_rates, rate=sample_rates, duration=st.floats(1.0, 120.0), clip=milliseconds, stride=milliseconds)
def test_frame_audio_inside_clip(fps, rate, duration, clip, stride):
    times = np.arange(math.floor(duration * fps)) / fps  # (N,) frame start times, as decoders give them
    lengths = set()
    for start, end in clip_spans(len(times) / fps, clip, stride):
        frames = frames_in_span(times, start, end)
        first, stop = audio_sample_range(start, clip, rate)
        lengths.add(stop - first)

        # The clip's audio starts where the clip starts, to within half a sample.
        assert abs(first / rate - start) <= 0.5 / rate + 1e-9
        if len(frames) == 0:
            continue
        # Its frames lie in the span, the first one less than a frame period after the start.
        assert times[frames[0]] - start < 1.0 / fps + BOUNDARY_TOLERANCE_S
        assert np.all(times[frames] >= start - BOUNDARY_TOLERANCE_S)
        assert np.all(times[frames] < end)
        # The sound heard while each frame is shown is inside the clip's audio buffer, with two allowed edges.
        # A frame that starts up to the 0.1 ms boundary tolerance early is heard from the first sample.
        # When clip x rate is not a whole number of samples, the rounded buffer can end half a sample early.
        offsets = np.round((times[frames] - first / rate) * rate).astype(np.int64)
        early = math.ceil(BOUNDARY_TOLERANCE_S * rate) + 1
        assert offsets.min() >= -early
        assert offsets.max() <= stop - first
    # Every clip of a source carries exactly the same number of audio samples.
    assert len(lengths) <= 1


@settings(max_examples=200, deadline=None)
@given(fps=frame_rates, duration=st.floats(1.0, 300.0), clip=milliseconds)
def test_back_to_back_clips_partition_frames(fps, duration, clip):
    times = np.arange(math.floor(duration * fps)) / fps
    spans = clip_spans(len(times) / fps, clip, clip)
    if not spans:
        return
    taken = np.concatenate([frames_in_span(times, start, end) for start, end in spans])
    covered = np.flatnonzero(times < spans[-1][1] - BOUNDARY_TOLERANCE_S)
    assert np.array_equal(taken, covered)


def test_float32_end_keeps_last_clip():
    # A 2 s, 10 fps source whose decoder reports float32 timestamps ends at 1.99999998 s.
    last_frame = float(np.float32(1.9))
    assert len(clip_spans(last_frame + 0.1, 1.0, 1.0)) == 2
