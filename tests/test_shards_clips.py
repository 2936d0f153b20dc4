"""Clip span arithmetic: spans in seconds, frames per span, audio sample ranges and clip keys."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shards.clips import audio_sample_range, clip_key, clip_spans, frame_times, frames_in_span


def test_spans_whole_clips_only():
    spans = clip_spans(10.0, 3.0, 3.0)
    assert spans == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]


def test_spans_exact_fit_includes_last():
    assert clip_spans(79.5, 0.5, 0.5)[-1] == (79.0, 79.5)
    assert len(clip_spans(79.5, 0.5, 0.5)) == 159


def test_spans_overlapping_stride():
    spans = clip_spans(2.0, 1.0, 0.25)
    assert [start for start, _ in spans] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_spans_no_float_drift():
    spans = clip_spans(100.0, 0.1, 0.1)
    assert len(spans) == 1000
    assert spans[-1] == (99.9, 100.0)
    assert spans[3] == (0.3, 0.4)


def test_spans_short_source_gives_none():
    assert clip_spans(0.99, 1.0, 1.0) == []
    assert clip_spans(float("nan"), 1.0, 1.0) == []


@pytest.mark.parametrize("clip, stride", [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_spans_invalid_lengths_raise(clip, stride):
    with pytest.raises(ValueError):
        clip_spans(10.0, clip, stride)


@pytest.mark.parametrize("fps", [23.976, 29.97, 10.0, 25.0, 30000 / 1001])
def test_frames_partition_source_at_ntsc_rates(fps):
    num_frames = round(fps * 20)
    times = np.arange(num_frames) / fps
    spans = clip_spans(num_frames / fps, 1.0, 1.0)
    assigned = np.concatenate([frames_in_span(times, start, end) for start, end in spans])

    # Every frame in the covered time lands in exactly one clip, in order.
    covered = times < spans[-1][1] - 1e-4
    assert np.array_equal(assigned, np.flatnonzero(covered))
    counts = [len(frames_in_span(times, start, end)) for start, end in spans]
    assert set(counts) <= {int(fps), int(fps) + 1}


def test_frames_float32_timestamps_on_boundary():
    # float32 timestamps of a 10 fps source sit on both sides of the true value.
    times = (np.arange(30) / 10).astype(np.float32)
    assert frames_in_span(times, 0.0, 1.0).tolist() == list(range(10))
    assert frames_in_span(times, 1.0, 2.0).tolist() == list(range(10, 20))
    assert frames_in_span(times, 0.3, 0.7).tolist() == [3, 4, 5, 6]


def test_frame_times_uses_valid_decoder_timestamps():
    decoder = np.array([0.0, 0.04, 0.08, 0.13])
    assert np.array_equal(frame_times(decoder, 4, 25.0), decoder)


def test_frame_times_falls_back_on_garbage():
    garbage = np.array([-3.8e17, -3.8e17, 0.125, 0.25])
    assert np.allclose(frame_times(garbage, 4, 23.976), np.arange(4) / 23.976)
    assert np.allclose(frame_times(None, 3, 10.0), [0.0, 0.1, 0.2])
    assert np.allclose(frame_times(np.array([0.0, 0.0, 0.1]), 3, 10.0), [0.0, 0.1, 0.2])


@pytest.mark.parametrize("rate", [16000, 44100, 48000, 22050])
@pytest.mark.parametrize("clip", [1.0, 0.7, 1 / 3, 2.002])
def test_audio_range_length_exact(rate, clip):
    expected = round(clip * rate)
    for start, _ in clip_spans(30.0, clip, clip * 0.61):
        first, stop = audio_sample_range(start, clip, rate)
        assert stop - first == expected
        assert abs(first - start * rate) <= 0.5


@given(
    start=st.floats(min_value=0, max_value=3600, allow_nan=False),
    clip=st.floats(min_value=0.01, max_value=30, allow_nan=False),
    rate=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
)
def test_audio_range_length_property(start, clip, rate):
    first, stop = audio_sample_range(start, clip, rate)
    assert stop - first == round(clip * rate)


def test_clip_key_sanitises_stem():
    assert clip_key("/data/walkway test.avi", 12.5) == "walkway_test-0012500"
    assert clip_key("a.b+c.mp4", 0.0) == "a_b_c-0000000"
    assert clip_key("vtest.avi", 0.3) == "vtest-0000300"


def test_clip_key_keeps_unicode_letters():
    assert clip_key("walk way é ü.mp4", 0.0) == "walk_way_é_ü-0000000"
    assert clip_key("步行街 监控.mp4", 1.5) == "步行街_监控-0001500"
    assert clip_key("ممر المشاة.mp4", 0.0) == "ممر_المشاة-0000000"
    assert clip_key("камера٣.avi", 0.0) == "камера٣-0000000"


def test_clip_keys_in_other_scripts_differ():
    names = ["走廊.mp4", "大厅.mp4", "ممر.mp4", "قاعة.mp4"]
    assert len({clip_key(name, 0.0) for name in names}) == 4


def test_clip_key_normalises_decomposed_letters():
    # macOS stores é as e plus a combining accent; both spellings give one key.
    assert clip_key("cafe\u0301.mp4", 0.0) == clip_key("caf\u00e9.mp4", 0.0) == "caf\u00e9-0000000"


def test_clip_key_replaces_unicode_punctuation():
    assert clip_key("a。b、c！.mp4", 0.0) == "a_b_c_-0000000"
    assert clip_key("x\u00a0y.mp4", 0.0) == "x_y-0000000"


def test_timestamps_usable_flag():
    from shards.clips import timestamps_usable

    assert timestamps_usable(np.array([0.0, 0.04, 0.08]), 3, 25.0)
    assert not timestamps_usable(np.full(3, -3.8e17), 3, 25.0)
    assert not timestamps_usable(None, 3, 25.0)
