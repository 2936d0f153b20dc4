"""`latentwatch detect explain`: report content, media, paged tables, modalities and bad input.

Embeddings are synthetic (planted anomalies) and the detectors and scores are real kNN fits. The shard tar
contains real JPEG frames and WAV audio, some of them deliberately broken.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
import wave
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from detect.cli import register
from detect.embeddings import save_embeddings
from detect.report_media import log_mel_spectrogram, mel_filterbank, write_video_excerpt
from detect.scores import read_scores, write_scores

DIMENSION = 8
FRAMES_PER_CLIP = 6
FPS = 6.0
TEST_COUNT = 12
MISSING_KEY = "test-0011000"  # a top alarm whose clip is not in the shards
CORRUPT_FRAME_KEY = "test-0010000"  # a top alarm with a frame that is not a JPEG
CORRUPT_WAV_KEY = "test-0009000"  # a top alarm whose WAV member is not a WAV file
AUDIO_ONLY_KEY = "test-0004000"  # anomalous in the audio embedding only
SILENT_KEYS = {"test-0000000", "test-0001000"}  # clips without audio


def run_detect(argv: list[str]) -> int:
    """Run `latentwatch detect ...` the way the dispatcher does: input errors exit with status 2."""
    parser = argparse.ArgumentParser(prog="latentwatch")
    input_errors = register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *argv])
    try:
        return int(args.handler(args) or 0)
    except input_errors:
        return 2


def clip_meta(stem: str, index: int, anomalous: bool) -> dict:
    return {
        "key": f"{stem}-{index * 1000:07d}",
        "source": f"/videos/{stem}.mp4",
        "source_name": f"{stem}.mp4",
        "start_s": float(index),
        "end_s": float(index + 1),
        "fps": FPS,
        "frame_indices": list(range(index * FRAMES_PER_CLIP, (index + 1) * FRAMES_PER_CLIP)),
        "frame_labels": [int(anomalous)] * FRAMES_PER_CLIP,
        "label": None,
    }


def planted_vectors(count: int, shifted: dict[int, float], seed: int) -> np.ndarray:
    """Gaussian vectors around a fixed centre; rows in `shifted` move by the given distance."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(scale=0.3, size=(count, DIMENSION))
    vectors[:, 0] += 5.0
    for row, distance in shifted.items():
        vectors[row, 1] += distance
    return vectors.astype(np.float32)


def jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.full((24, 32, 3), shade, dtype=np.uint8)
    pixels[:, : shade % 32] = (200, 30, 30)  # a moving bar, so frames differ
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def wav(frequency: float, seconds: float = 1.0, sample_rate: int = 16000) -> bytes:
    time = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = (0.4 * np.sin(2 * np.pi * frequency * time) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, metas: list[dict]) -> None:
    folder.mkdir()
    with tarfile.open(folder / "shard-000000.tar", "w") as archive:
        for meta in metas:
            key = meta["key"]
            if key == MISSING_KEY:
                continue
            has_audio = key not in SILENT_KEYS
            clip_json = {**meta, "format_version": 1, "has_audio": has_audio}
            add_member(archive, f"{key}.json", json.dumps(clip_json).encode())
            for frame in range(FRAMES_PER_CLIP):
                data = b"not a jpeg" if key == CORRUPT_FRAME_KEY and frame == 2 else jpeg(40 * frame)
                add_member(archive, f"{key}.{frame:03d}.jpg", data)
            if has_audio:
                add_member(archive, f"{key}.wav", b"RIFF broken" if key == CORRUPT_WAV_KEY else wav(440.0))
    (folder / "index.json").write_text(json.dumps({"format_version": 1, "num_clips": len(metas)}))


def fit_and_score(root: Path, name: str, test_shift: dict[int, float], seed: int) -> Path:
    """Fit kNN on 30 normal clips of one embedding and score the 12 test clips; return the scores folder."""
    train_meta = [clip_meta("train", index, False) for index in range(30)]
    test_meta = [clip_meta("test", index, index >= 9) for index in range(TEST_COUNT)]
    header = {"encoder": "synthetic", "checkpoint": "/runs/synthetic/last.pt", "modality": name}
    save_embeddings(root / f"emb-{name}-train", planted_vectors(30, {}, seed), train_meta, header)
    test_vectors = planted_vectors(TEST_COUNT, test_shift, seed + 1)
    save_embeddings(root / f"emb-{name}-test", test_vectors, test_meta, header)
    assert run_detect(["fit", "--method", "knn", "--embeddings", str(root / f"emb-{name}-train"),
                       "--out", str(root / f"model-{name}"), "--k", "3"]) == 0
    assert run_detect(["score", "--model", str(root / f"model-{name}"),
                       "--embeddings", str(root / f"emb-{name}-test"),
                       "--out", str(root / f"scores-{name}")]) == 0
    return root / f"scores-{name}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    fit_and_score(root, "joint", {9: 6.0, 10: 7.0, 11: 8.0, 4: 4.0}, seed=1)
    fit_and_score(root, "video", {9: 6.0, 10: 7.0, 11: 8.0}, seed=3)
    fit_and_score(root, "audio", {4: 9.0}, seed=5)
    metas = [clip_meta("train", index, False) for index in range(30)]
    metas += [clip_meta("test", index, index >= 9) for index in range(TEST_COUNT)]
    write_shards(root / "shards", metas)
    return root


@pytest.fixture(scope="module")
def report(workspace: Path) -> Path:
    assert run_detect(["explain", "--scores", str(workspace / "scores-joint"),
                       "--shards", str(workspace / "shards"),
                       "--out", str(workspace / "report"), "--top", "5", "--page-size", "5",
                       "--modality", f"video={workspace / 'scores-video'}",
                       "--modality", f"audio={workspace / 'scores-audio'}"]) == 0
    return workspace / "report"


class LinkCollector(HTMLParser):
    """Collect ids, and the src and href attributes of every element, of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.sources: list[tuple[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if values.get("src"):
            self.sources.append((tag, values["src"]))
        for name in ("href", "xlink:href"):
            if values.get(name):
                self.links.append(values[name])


def parse(path: Path) -> LinkCollector:
    collector = LinkCollector()
    collector.feed(path.read_text(encoding="utf-8"))
    return collector


def alarm_section(page: str, key: str) -> str:
    match = re.search(r'<div class="alarm" id="alarm-\d+">(?:(?!<div class="alarm").)*?' + re.escape(key)
                      + r'.*?(?=<div class="alarm"|</body>)', page, flags=re.S)
    assert match, f"no alarm section for {key}"
    return match.group(0)


def test_every_link_and_media_file_exists(report: Path) -> None:
    pages = [report / "index.html", *sorted((report / "clips").glob("*.html"))]
    for page_path in pages:
        collector = parse(page_path)
        for _, source in collector.sources:
            assert not source.startswith(("http", "/")), source
            assert (page_path.parent / source).is_file(), (page_path.name, source)
        for link in collector.links:
            target, _, fragment = link.partition("#")
            target_path = page_path if not target else page_path.parent / target
            assert target_path.is_file(), (page_path.name, link)
            if fragment:
                assert fragment in parse(target_path).ids, (page_path.name, link)
    assert "<script" not in (report / "index.html").read_text()


def test_timeline_peaks_link_to_alarms(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert "<svg" in page
    links = set(re.findall(r'<a xlink:href="#(alarm-\d+)"', page))
    assert links == {f"alarm-{rank}" for rank in range(1, 6)}


def test_alarm_shows_media_and_neighbours(report: Path) -> None:
    page = (report / "index.html").read_text()
    section = alarm_section(page, AUDIO_ONLY_KEY)
    assert "<video" in section
    assert "<audio" in section
    assert "log-mel spectrogram" in section
    assert section.count("train-") >= 3, "the k = 3 nearest normal clips are listed"
    assert "Nearest normal clip, to compare" in section

    videos = re.findall(r'<video src="([^"]+)"', section)
    with av.open(str(report / videos[0])) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == FRAMES_PER_CLIP
    assert decoded[0].width % 2 == 0

    silent = alarm_section(page, "test-0009000")
    assert "audio failed to decode" in silent


def test_modality_driver_is_named(report: Path) -> None:
    page = (report / "index.html").read_text()
    audio_alarm = alarm_section(page, AUDIO_ONLY_KEY)
    assert "The audio modality drives this alarm" in audio_alarm
    video_alarm = alarm_section(page, "test-0010000")
    assert "The video modality drives this alarm" in video_alarm
    for name in ("joint", "video", "audio"):
        assert f"<td>{name}</td>" in video_alarm or f'"driver">{name}<' in video_alarm


def test_bad_clips_are_marked_with_reasons(report: Path) -> None:
    page = (report / "index.html").read_text()
    assert "clip not found in the given shard folders" in alarm_section(page, MISSING_KEY)
    assert f"frame {CORRUPT_FRAME_KEY}.002.jpg failed to decode" in alarm_section(page, CORRUPT_FRAME_KEY)


def test_clip_pages_list_every_clip_once(report: Path) -> None:
    pages = sorted((report / "clips").glob("page-*.html"))
    assert len(pages) == 3  # 12 clips, 5 per page
    listed = []
    for page_path in pages:
        row_pattern = (r'<tr id="clip-\d+"><td>\d+</td><td>[^<]+</td><td>\w+</td>'
                       r'<td class="key">(?:<a [^>]+>)?([\w-]+)')
        listed += re.findall(row_pattern, page_path.read_text())
    assert sorted(listed) == sorted(f"test-{index * 1000:07d}" for index in range(TEST_COUNT))
    scores = read_scores(report.parent / "scores-joint")
    top_key = max(scores.rows, key=lambda row: row["score"])["key"]
    assert listed[0] == top_key
    assert 'href="../index.html#alarm-1"' in pages[0].read_text()


def test_scores_without_neighbours_render(workspace: Path) -> None:
    scores = read_scores(workspace / "scores-joint")
    rows = [{key: value for key, value in row.items() if key != "neighbours"} for row in scores.rows]
    header = {key: value for key, value in scores.header.items() if key not in ("format_version", "count")}
    header["detector"] = "audio_shift_energy"
    write_scores(workspace / "scores-energy", rows, header)
    assert run_detect(["explain", "--scores", str(workspace / "scores-energy"),
                       "--shards", str(workspace / "shards"),
                       "--out", str(workspace / "report-energy"), "--top", "3"]) == 0
    page = (workspace / "report-energy" / "index.html").read_text()
    assert page.count("No nearest normal clips: the audio_shift_energy detector") == 3
    assert page.count("score is not a distance to normal clips") == 3
    assert "<video" in page


def test_moved_shard_folder_still_renders(workspace: Path) -> None:
    moved = workspace / "shards-moved-away"
    assert run_detect(["explain", "--scores", str(workspace / "scores-joint"), "--shards", str(moved),
                       "--out", str(workspace / "report-moved"), "--top", "2"]) == 0
    page = (workspace / "report-moved" / "index.html").read_text()
    assert "Shard folders not found" in page
    assert str(moved) in page
    assert page.count("clip not found in the given shard folders") >= 2


@pytest.mark.parametrize("modality", ["video", "=scores", "video="])
def test_malformed_modality_is_an_input_error(workspace: Path, modality: str) -> None:
    assert run_detect(["explain", "--scores", str(workspace / "scores-joint"),
                       "--shards", str(workspace / "shards"),
                       "--out", str(workspace / "report-bad"), "--modality", modality]) == 2
    assert not (workspace / "report-bad").exists()


def test_duplicate_modality_is_an_input_error(workspace: Path) -> None:
    assert run_detect(["explain", "--scores", str(workspace / "scores-joint"),
                       "--shards", str(workspace / "shards"),
                       "--out", str(workspace / "report-bad"),
                       "--modality", f"joint={workspace / 'scores-video'}"]) == 2


def test_log_mel_peaks_at_the_tone() -> None:
    sample_rate = 16000
    time = np.arange(sample_rate) / sample_rate
    spectrogram = log_mel_spectrogram(np.sin(2 * np.pi * 2000.0 * time).astype(np.float32), sample_rate)
    assert spectrogram.shape[0] == 64
    assert spectrogram.shape[1] == 98  # 25 ms windows every 10 ms over 1 s
    filters = mel_filterbank(sample_rate, 512, 64)
    bin_of_tone = round(2000.0 / (sample_rate / 2) * 256)
    assert int(np.argmax(spectrogram.mean(axis=1))) == int(np.argmax(filters[:, bin_of_tone]))


def test_video_excerpt_round_trips(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (321, 241), (shade, 0, 0)) for shade in range(0, 250, 25)]
    path = write_video_excerpt(frames, 29.97, tmp_path / "excerpt.webm")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
    assert len(decoded) == 10
    assert (decoded[0].width, decoded[0].height) == (160, 120)
    assert abs(float(stream.average_rate) - 29.97) < 0.01
