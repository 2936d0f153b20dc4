"""Build latentwatch's demo footage: normal training video and a labelled test video, from real footage.

Usage:
    python tools/make_demo_footage.py --out DIR [--footage tools/footage]

Sources (see tools/footage/SOURCES.md): `vtest.avi` shows pedestrians on a campus walkway, filmed by a fixed
camera (795 frames at 10 fps, 768x576). `bikes.mp4` is a montage of street scenes (250 frames at 25 fps,
640x272).
All output is 10 fps and downscaled 2x to 384x288 (a 2x2 box average), because latentwatch resizes clips
to 160 pixels anyway and the smaller size halves the encoding time. Videos are H.264 (libx264, crf 18,
yuv420p).

The rule (frame ranges are half-open, source frames are vtest.avi frame indices):
- Training: `train/walkway_normal.mp4` is vtest frames [0, 556), the first 70% of its 795 frames
  (556 = floor(0.7 * 795)), unchanged apart from the downscale. All of it is normal.
- Test: `test/walkway_test.mp4` uses only vtest frames [556, 795), each at most once and in order, so the
  test footage never repeats itself and never overlaps the training frames. It is 164 frames long:

      output frames  source frames  step  content
      [0, 25)        [556, 581)     1     normal
      [25, 40)       [581, 641)     4     speed-up x4, anomalous
      [40, 68)       [641, 669)     1     normal
      [68, 93)       [669, 694)     1     cyclist pasted in, anomalous
      [93, 121)      [694, 722)     1     normal
      [121, 136)     [722, 767)     3     speed-up x3, anomalous
      [136, 164)     [767, 795)     1     normal

  A speed-up keeps every 3rd or 4th source frame, so the people in it appear to run. 55 of the 164 frames
  (34%) are anomalous and 109 (66%) are normal.
- The cyclist comes from bikes.mp4, where the only cyclist seen whole waits astride his bike at a kerb
  (25 fps frames 110 to 135, after a passing car has cleared and before the cut at frame 137). That shot
  is resampled to 10 fps by taking the frame shown at each 0.1 s step, 4.4 s to 5.4 s: 11 frames. The 25
  pasted frames play them forwards, backwards and forwards again. The camera never sees the background
  behind him, so a median background cannot separate him. Instead, his foreground mask combines two cues
  inside the box x in [340, 540) of bikes.mp4. The first is his dark clothing (max RGB < 50, the largest
  connected part after a morphological opening). The second is image sharpness, because he is in focus
  and the shop window behind him is not (the smoothed absolute Laplacian, above its 70th percentile). The
  mask keeps the sharp or dark pixels near his clothing, is cleaned by closing, hole filling and opening,
  and keeps the parts connected to the clothing. It is then widened by one pixel. The cut-out is scaled to
  the height of a pedestrian standing at the same place in vtest (33 pixels at feet row 110, 50 at feet
  row 177, linear in between, in 384x288 pixels). It is pasted with a soft alpha edge and rides along the
  walkway from feet position (8, 114) to (196, 152) at a constant speed of about 7.7 pixels a frame, which
  is roughly 3.5 m/s (a pedestrian walks about 1.4 m/s).

Outputs in DIR: the two videos, `test/walkway_test.labels.json` (`{"num_frames": N, "anomalous_frames":
[[start, end], ...]}`, half-open output frame ranges), `RULE.md` (this rule in prose) and `rule.json` (the
same rule in machine-readable form, with the box in which the cyclist was pasted on each output frame). DIR
is written under a temporary name and renamed when complete. Runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

logger = logging.getLogger(__name__)

DEFAULT_FOOTAGE = Path(__file__).resolve().parent / "footage"
FORMAT_VERSION = 1

# Properties the rule's frame ranges were written for. A different file would silently shift every label.
VTEST_NAME = "vtest.avi"
VTEST_FRAMES = 795
VTEST_FPS = 10
VTEST_SIZE = (768, 576)  # (width, height)
BIKES_NAME = "bikes.mp4"
BIKES_FRAMES = 250
BIKES_FPS = 25
BIKES_SIZE = (640, 272)

OUTPUT_FPS = 10
OUTPUT_SIZE = (384, 288)  # (width, height): vtest downscaled 2x
TRAIN_FRACTION = 0.7
TRAIN_END = math.floor(TRAIN_FRACTION * VTEST_FRAMES)  # 556

TRAIN_VIDEO = "train/walkway_normal.mp4"
TEST_VIDEO = "test/walkway_test.mp4"
TEST_LABELS = "test/walkway_test.labels.json"

# The cyclist shot of bikes.mp4, resampled to 10 fps: seconds [4.4, 5.5) at 0.1 s steps.
CYCLIST_START_S = 4.4
CYCLIST_FRAMES = 11
CYCLIST_BOX_X = (340, 540)  # columns of bikes.mp4 that contain him and his bike, at full height
DARK_THRESHOLD = 50  # max RGB below this is his black shirt and shorts
SHARPNESS_PERCENTILE = 70

# Feet positions (x, y) of the cyclist in the 384x288 output on the first and last pasted frame.
CYCLIST_PATH = ((8.0, 114.0), (196.0, 152.0))

# Pedestrian height in 384x288 pixels at two feet rows, measured on vtest frame 676. Interpolated linearly.
PEDESTRIAN_HEIGHT = ((110.0, 33.0), (177.0, 50.0))


class FootageError(Exception):
    """A missing or unexpected footage file, or an unusable output folder: printed as one line."""


@dataclass(frozen=True)
class Segment:
    """One stretch of the test video: `length` output frames from vtest, starting at `source_start`."""

    kind: str  # "normal", "speed-up" or "cyclist"
    source_start: int
    step: int
    length: int

    @property
    def anomalous(self) -> bool:
        return self.kind != "normal"

    @property
    def source_end(self) -> int:
        return self.source_start + self.step * self.length


def _build_layout() -> tuple[Segment, ...]:
    """Chain the test stretches so each starts where the previous one stopped reading vtest."""
    plan = [("normal", 1, 25), ("speed-up", 4, 15), ("normal", 1, 28), ("cyclist", 1, 25),
            ("normal", 1, 28), ("speed-up", 3, 15), ("normal", 1, 28)]
    segments = []
    start = TRAIN_END
    for kind, step, length in plan:
        segments.append(Segment(kind, start, step, length))
        start += step * length
    assert start == VTEST_FRAMES, f"the test layout reads vtest up to frame {start}, not {VTEST_FRAMES}"
    return tuple(segments)


TEST_LAYOUT = _build_layout()


# decoding


def decode_video(
    path: Path, frames: int, fps: int, size: tuple[int, int], transform: Callable | None = None
) -> list[np.ndarray]:
    """Decode every frame of `path` as RGB, after checking it is the footage the rule was written for.

    `transform` is applied to each frame as soon as it is decoded, so full-size frames are never all held.
    """
    if not path.is_file():
        raise FootageError(f"footage file not found: {path} (pass --footage with the folder that has it)")

    decoded = []
    found_size = (0, 0)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FootageError(f"no video stream in footage file {path}")
            stream = container.streams.video[0]
            rate = stream.average_rate
            for frame in tqdm(container.decode(stream), total=frames, unit="frame", desc=f"decoding {path.name}"):
                found_size = (frame.width, frame.height)
                array = frame.to_ndarray(format="rgb24")  # (H, W, 3)
                decoded.append(transform(array) if transform else array)
    except av.FFmpegError as error:
        raise FootageError(f"failed to decode footage file {path}: {error}") from error

    if len(decoded) != frames or rate is None or round(float(rate)) != fps or found_size != size:
        raise FootageError(
            f"unexpected footage file {path}: {len(decoded)} frames at {float(rate or 0):.2f} fps, "
            f"{found_size[0]}x{found_size[1]}; the rule needs {frames} frames at {fps} fps, {size[0]}x{size[1]}"
        )
    return decoded


def downscale(frame: np.ndarray) -> np.ndarray:
    """Halve a vtest frame with a 2x2 box average, which tests can reproduce exactly."""
    return np.asarray(Image.fromarray(frame).resize(OUTPUT_SIZE, Image.Resampling.BOX))


# cyclist cut-out


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def cyclist_mask(frame: np.ndarray) -> np.ndarray:
    """Segment the cyclist inside `CYCLIST_BOX_X` of a bikes.mp4 frame; returns a boolean (H, W_box) mask."""
    box = frame[:, CYCLIST_BOX_X[0]:CYCLIST_BOX_X[1]].astype(np.float32)  # (H, W, 3)

    # His black shirt and shorts are the largest dark area in the box.
    clothing = ndimage.binary_opening(box.max(axis=2) < DARK_THRESHOLD, iterations=3)
    clothing = _largest_component(clothing)
    if not clothing.any():
        raise FootageError(f"no cyclist found in {BIKES_NAME}: the dark clothing cue is empty")

    # He is in focus and the shop window behind him is not, so local sharpness marks his outline and bike.
    grey = ndimage.gaussian_filter(box.mean(axis=2), 1.0)
    sharpness = ndimage.gaussian_filter(np.abs(ndimage.laplace(grey)), 3.0)
    candidate = (sharpness > np.percentile(sharpness, SHARPNESS_PERCENTILE)) | clothing

    # Only pixels near his clothing can be him: helmet above, arms and bike beside, legs and wheels below.
    rows, cols = np.nonzero(clothing)
    near = np.zeros_like(clothing)
    near[max(0, rows.min() - 45):, max(0, cols.min() - 15):cols.max() + 45] = True
    mask = candidate & near

    mask = ndimage.binary_closing(mask, iterations=3)
    mask = ndimage.binary_fill_holes(mask)
    mask = ndimage.binary_opening(mask, iterations=3)
    labels, _ = ndimage.label(mask)
    touching = np.unique(labels[clothing & mask])
    mask = np.isin(labels, touching[touching > 0])
    return ndimage.binary_dilation(mask, iterations=1)


@dataclass(frozen=True)
class Sprite:
    """A cut-out: RGB pixels and an alpha matte in [0, 1] of the same size."""

    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32
    bikes_frame: int


def cut_cyclist_sprites(bikes: list[np.ndarray]) -> list[Sprite]:
    """Resample the cyclist shot to 10 fps and cut him out of each frame."""
    sprites = []
    for k in range(CYCLIST_FRAMES):
        # The frame on screen at time t is the last one that started at or before t.
        time_s = CYCLIST_START_S + k / OUTPUT_FPS
        index = math.floor(time_s * BIKES_FPS + 1e-6)
        mask = cyclist_mask(bikes[index])
        rows, cols = np.nonzero(mask)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        rgb = bikes[index][:, CYCLIST_BOX_X[0]:CYCLIST_BOX_X[1]][top:bottom, left:right]
        alpha = mask[top:bottom, left:right].astype(np.float32)
        sprites.append(Sprite(np.ascontiguousarray(rgb), alpha, index))
    return sprites


def pedestrian_height(feet_y: float) -> float:
    """Height in output pixels of a person whose feet are at row `feet_y` of the walkway scene."""
    (y0, h0), (y1, h1) = PEDESTRIAN_HEIGHT
    return h0 + (feet_y - y0) * (h1 - h0) / (y1 - y0)


def ping_pong(count: int, length: int) -> list[int]:
    """Indices 0..count-1 played forwards, backwards, forwards... for `length` steps, without a frame held."""
    cycle = list(range(count)) + list(range(count - 2, 0, -1))
    return [cycle[i % len(cycle)] for i in range(length)]


def paste_sprite(frame: np.ndarray, sprite: Sprite, feet_x: float, feet_y: float) -> list[int]:
    """Alpha-blend `sprite`, scaled to a pedestrian's height, with its bottom centre at the feet position.

    Modifies `frame` in place and returns the box [x0, y0, x1, y1) it may have changed.
    """
    height = max(1, round(pedestrian_height(feet_y)))
    width = max(1, round(sprite.rgb.shape[1] * height / sprite.rgb.shape[0]))
    rgb = np.asarray(Image.fromarray(sprite.rgb).resize((width, height), Image.Resampling.LANCZOS))
    alpha = np.asarray(
        Image.fromarray(sprite.alpha).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32
    )
    alpha = np.clip(alpha, 0.0, 1.0)[..., None]  # (h, w, 1)

    x0 = round(feet_x - width / 2)
    y0 = round(feet_y) - height
    frame_h, frame_w = frame.shape[:2]
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(frame_w, x0 + width), min(frame_h, y0 + height)
    if cx0 >= cx1 or cy0 >= cy1:
        raise FootageError(f"cyclist path leaves the frame at ({feet_x:.1f}, {feet_y:.1f})")

    region = frame[cy0:cy1, cx0:cx1].astype(np.float32)
    patch = rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].astype(np.float32)
    weight = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    frame[cy0:cy1, cx0:cx1] = np.round(weight * patch + (1.0 - weight) * region).astype(np.uint8)
    return [cx0, cy0, cx1, cy1]


# building the two videos


def build_test_frames(vtest: list[np.ndarray], sprites: list[Sprite]) -> tuple[list[np.ndarray], list[dict]]:
    """Assemble the test video from downscaled vtest frames; returns frames and one record per cyclist frame."""
    frames: list[np.ndarray] = []
    pastes: list[dict] = []
    for segment in TEST_LAYOUT:
        sources = range(segment.source_start, segment.source_end, segment.step)
        order = ping_pong(len(sprites), segment.length) if segment.kind == "cyclist" else []
        for i, source in enumerate(sources):
            frame = vtest[source].copy()
            if segment.kind == "cyclist":
                progress = i / (segment.length - 1)
                (xa, ya), (xb, yb) = CYCLIST_PATH
                feet_x, feet_y = xa + progress * (xb - xa), ya + progress * (yb - ya)
                sprite = sprites[order[i]]
                box = paste_sprite(frame, sprite, feet_x, feet_y)
                pastes.append({"output_frame": len(frames), "source_frame": source,
                               "bikes_frame": sprite.bikes_frame, "box": box})
            frames.append(frame)
    return frames, pastes


def anomalous_ranges() -> list[list[int]]:
    """Half-open output frame ranges of the anomalous test stretches."""
    ranges = []
    start = 0
    for segment in TEST_LAYOUT:
        if segment.anomalous:
            ranges.append([start, start + segment.length])
        start += segment.length
    return ranges


def encode_video(frames: list[np.ndarray], path: Path, progress: tqdm) -> None:
    """Write RGB frames as H.264 at 10 fps (crf 18, yuv420p)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=OUTPUT_FPS)
        stream.width, stream.height = OUTPUT_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, OUTPUT_FPS)
            container.mux(stream.encode(frame))
            progress.update(1)
        container.mux(stream.encode(None))


# the rule as documents


def rule_record(pastes: list[dict]) -> dict:
    """Build the rule in machine-readable form, for rule.json."""
    segments = []
    start = 0
    for segment in TEST_LAYOUT:
        segments.append({
            "kind": segment.kind,
            "anomalous": segment.anomalous,
            "output_frames": [start, start + segment.length],
            "source_frames": [segment.source_start, segment.source_end],
            "step": segment.step,
        })
        start += segment.length
    return {
        "format_version": FORMAT_VERSION,
        "fps": OUTPUT_FPS,
        "size": list(OUTPUT_SIZE),
        "source": VTEST_NAME,
        "source_frames": VTEST_FRAMES,
        "train": {"video": TRAIN_VIDEO, "source_frames": [0, TRAIN_END]},
        "test": {"video": TEST_VIDEO, "labels": TEST_LABELS, "num_frames": start, "segments": segments},
        "cyclist": {"source": BIKES_NAME, "box_x": list(CYCLIST_BOX_X), "pastes": pastes},
    }


def rule_markdown(pastes: list[dict]) -> str:
    """Render the rule in prose with its exact frame ranges, for RULE.md."""
    rows = []
    start = 0
    for segment in TEST_LAYOUT:
        content = {"normal": "normal", "speed-up": f"speed-up x{segment.step}, anomalous",
                   "cyclist": "cyclist pasted in, anomalous"}[segment.kind]
        rows.append(f"| [{start}, {start + segment.length}) | [{segment.source_start}, {segment.source_end}) "
                    f"| {segment.step} | {content} |")
        start += segment.length
    bikes_frames = sorted({paste["bikes_frame"] for paste in pastes})
    bikes_list = ", ".join(map(str, bikes_frames))
    last_s = CYCLIST_START_S + (CYCLIST_FRAMES - 1) / OUTPUT_FPS
    first, last = pastes[0]["box"], pastes[-1]["box"]
    anomalous = sum(end - begin for begin, end in anomalous_ranges())
    return f"""# Demo footage rule

Written by `tools/make_demo_footage.py`. Every video here is {OUTPUT_FPS} fps and
{OUTPUT_SIZE[0]}x{OUTPUT_SIZE[1]}: `{VTEST_NAME}` ({VTEST_SIZE[0]}x{VTEST_SIZE[1]}) downscaled 2x by a 2x2 box
average, encoded as H.264 with crf 18 and yuv420p.
Frame ranges are half-open. Source frames are frame indices of `{VTEST_NAME}` ({VTEST_FRAMES} frames).

## Training: `{TRAIN_VIDEO}`
Source frames [0, {TRAIN_END}): the first {TRAIN_FRACTION:.0%} of `{VTEST_NAME}`, unchanged apart from the
downscale. All normal.

## Test: `{TEST_VIDEO}`
Source frames [{TRAIN_END}, {VTEST_FRAMES}), each used at most once and in order, so the test video never
repeats a frame and shares none with the training video. {start} frames, {anomalous} anomalous
({anomalous / start:.0%}), labels in `{TEST_LABELS}`.

| output frames | source frames | step | content |
|---|---|---|---|
{chr(10).join(rows)}

- Speed-up: only every `step`-th source frame is kept, so the people appear to run.
- Cyclist: the cyclist of `{BIKES_NAME}` is cut out with a foreground mask and pasted so that he rides
  along the walkway, scaled to the height of a pedestrian at the same place. He comes from its shot at
  {CYCLIST_START_S} s to {last_s:.1f} s, resampled to {OUTPUT_FPS} fps: 25 fps frames {bikes_list}. These
  {CYCLIST_FRAMES} frames play forwards, backwards and forwards again. The camera never shows the background
  behind him, so the mask combines his dark clothing with image sharpness (he is in focus and the
  background is not).
- The cyclist's box [x0, y0, x1, y1) is {first} on the first cyclist frame and {last} on the last one.
  `rule.json` lists the box of every frame. Pixels outside these boxes are the untouched source frames.
"""


# command line


def write_outputs(out_dir: Path, footage: Path) -> list[Path]:
    """Build every output in a temporary folder next to `out_dir`, then rename it to `out_dir`."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FootageError(f"output folder already exists and is not empty: {out_dir} (remove it or pick another)")

    vtest = decode_video(footage / VTEST_NAME, VTEST_FRAMES, VTEST_FPS, VTEST_SIZE, transform=downscale)
    bikes = decode_video(footage / BIKES_NAME, BIKES_FRAMES, BIKES_FPS, BIKES_SIZE)
    sprites = cut_cyclist_sprites(bikes)
    test_frames, pastes = build_test_frames(vtest, sprites)
    train_frames = vtest[:TRAIN_END]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with tqdm(total=len(train_frames) + len(test_frames), unit="frame", desc="encoding") as progress:
            encode_video(train_frames, staging / TRAIN_VIDEO, progress)
            encode_video(test_frames, staging / TEST_VIDEO, progress)

        labels = {"num_frames": len(test_frames), "anomalous_frames": anomalous_ranges()}
        (staging / TEST_LABELS).write_text(json.dumps(labels) + "\n")
        (staging / "rule.json").write_text(json.dumps(rule_record(pastes), indent=1) + "\n")
        (staging / "RULE.md").write_text(rule_markdown(pastes))

        # mkdtemp creates the folder private to its owner; give it the usual permissions of a new folder.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    return [out_dir / name for name in (TRAIN_VIDEO, TEST_VIDEO, TEST_LABELS, "RULE.md", "rule.json")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the demo's normal training video and labelled test video from real footage.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--footage", type=Path, default=DEFAULT_FOOTAGE,
                        help=f"folder with {VTEST_NAME} and {BIKES_NAME} (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        paths = write_outputs(args.out, args.footage)
    except (FootageError, OSError) as error:
        print(f"make_demo_footage: error: {error}", file=sys.stderr)
        return 2

    logger.info("wrote %d frames of training video and %d of test video", TRAIN_END,
                sum(segment.length for segment in TEST_LAYOUT))
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
