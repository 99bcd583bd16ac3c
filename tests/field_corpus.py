"""The field-detection corpus: short clips of known kind (progressive, interlaced, telecined)
and field order, made from the real footage in ``../shared/data/videos/train``.

Every clip is built from the same source frames in three ways, so the detector is judged on
the picture's motion and not on how a class was made:

- interlaced: consecutive frames of the (progressive) footage become the two fields of one
  frame, in either order, coded as real interlaced streams: x264 interlaced (``tff=1`` /
  ``bff=1``), MPEG-2 with interlaced DCT and motion estimation (field order flagged), DV
  (NTSC 720x480, bottom field first) and FFV1 with no field flag;
- telecined: the frames are taken as 23.976p film and put through FFmpeg's ``telecine``
  (patterns 23, 32 and 2332, starting phases 0-4, first field top or bottom), coded as
  MPEG-2 flagged with its field order or H.264 flagged progressive;
- progressive: the frames as they are, clean or with grain, 176x144 crops, a frozen picture,
  coded FFV1 unflagged, FFV1 RGB written by PyAV (the foreman crop an earlier detector took
  for interlaced), and H.264 flagged progressive.

:func:`build_corpus` writes the clips into a cache folder (``~/.cache/vidsr/field-corpus/v1``)
and reuses them while they are there; the truth of each clip is in :class:`CorpusClip`.
Everything is seeded, so a rebuild makes the same pictures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.filter
import numpy as np
from clipgen import telecine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "videos"
TRAIN = DATA / "train"
FOREMAN = DATA / "foreman_cif.mp4"
VERSION = "v1"
WIDTH, HEIGHT = 320, 240  # small enough to build fast, large enough to hold real motion
FRAMES = 60  # coded frames per clip
VIDEO_RATE = Fraction(30000, 1001)

Kind = Literal["progressive", "interlaced", "telecined"]


@dataclass(frozen=True)
class CorpusClip:
    """One clip and its truth: ``order`` is the field shown first (None when progressive)."""

    name: str
    kind: Kind
    order: Literal["tff", "bff"] | None
    coding: str  # how it was made and coded, for tables
    path: Path


def corpus_missing_reason() -> str | None:
    """Why the corpus cannot be built here, or None."""
    if not TRAIN.is_dir() or not any(TRAIN.iterdir()):
        return f"the corpus footage is absent ({TRAIN})"
    if not FOREMAN.is_file():
        return f"the foreman clip is absent ({FOREMAN})"
    return None


def cache_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "vidsr" / "field-corpus" / VERSION


def build_corpus(full: bool = False, folder: Path | None = None) -> list[CorpusClip]:
    """Every clip of the corpus (``full``) or of its fast subset (four footage clips),
    built into ``folder`` where a clip is missing."""
    folder = folder or cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(TRAIN.iterdir())
    if not full:
        sources = [s for s in sources if s.stem in FAST_SOURCES]
    clips: list[CorpusClip] = []
    for number, source in enumerate(sources):
        recipes = list(_recipes(source, number))
        missing = [r for r in recipes if not (folder / r.file).is_file()]
        frames = _source_frames(source, _frames_needed(missing)) if missing else []
        for recipe in recipes:
            path = folder / recipe.file
            if recipe in missing:
                temporary = path.with_name(f".{path.name}")
                recipe.write(temporary, frames)
                temporary.replace(path)  # a build cut short leaves no half clip behind
            clips.append(recipe.clip(path))
    foreman = _foreman_rgb(folder)
    clips.append(foreman)
    (folder / ("truth-full.json" if full else "truth.json")).write_text(json.dumps(
        [{**asdict(c), "path": c.path.name} for c in clips], indent=1))
    return clips


FAST_SOURCES = ("flutter_bee", "intel_asl_book", "mdn_stream-of-water", "moviepy_sintel_example3")


# -- recipes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Recipe:
    kind: Kind
    order: Literal["tff", "bff"] | None
    coding: str
    source: str
    tag: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind[:4]}-{self.tag}-{self.source}"

    @property
    def file(self) -> str:
        return self.name + (".dv" if self.coding == "dv" else
                            ".mpg" if self.coding.startswith("mpeg2") else ".mkv")

    def clip(self, path: Path) -> CorpusClip:
        return CorpusClip(self.name, self.kind, self.order, self.coding, path)

    def write(self, path: Path, frames: list[np.ndarray]) -> None:
        option = dict(self.options)
        if self.coding == "dv":  # DV's own size, before weaving: scaling mixes the fields
            frames = [_resize(f, 720, 480) for f in frames]
        if self.kind == "interlaced":
            assert self.order is not None
            pictures = [_weave(frames[2 * i], frames[2 * i + 1], self.order)
                        for i in range(FRAMES)]
            _encode(path, pictures, self.coding, self.order)
        elif self.kind == "telecined":
            assert self.order is not None
            film = frames[int(option["phase"]):]
            pictures = _telecine(film, option["pattern"], self.order)[:FRAMES]
            _encode(path, pictures, self.coding, self.order)
        else:
            pictures = frames[:FRAMES]
            if "crop" in option:
                pictures = [_crop(p, 176, 144) for p in pictures]
            if "grain" in option:
                rng = np.random.default_rng(int(option["grain"]))
                pictures = [_grain(p, rng) for p in pictures]
            if "frozen" in option:
                pictures = [pictures[0]] * FRAMES
            _encode(path, pictures, self.coding, None)


def _recipes(source: Path, number: int) -> Iterator[_Recipe]:
    """The clips made from one footage clip: each coding and variant in turn, so the whole
    corpus holds every combination without making each one from every clip."""
    stem = source.stem
    orders: tuple[Literal["tff", "bff"], ...] = (("tff", "bff") if number % 2 == 0
                                                 else ("bff", "tff"))
    interlaced_codings = ("x264", "mpeg2", "ffv1")
    for index, order in enumerate(orders):
        coding = interlaced_codings[(number + index) % 3]
        yield _Recipe("interlaced", order, coding, stem, f"{order}-{coding}")
    if number % 4 == 0:
        yield _Recipe("interlaced", "bff", "dv", stem, "bff-dv")
    patterns = ("23", "32", "2332")
    for index, order in enumerate(orders):
        pattern = patterns[(number + index) % 3]
        phase = (number + 2 * index) % 5
        coding = "mpeg2" if index == 0 else "h264"
        yield _Recipe("telecined", order, coding, stem, f"{pattern}p{phase}-{order}-{coding}",
                      (("pattern", pattern), ("phase", str(phase))))
    yield _Recipe("progressive", None, "ffv1", stem, "ffv1")
    yield _Recipe("progressive", None, "h264", stem, "grain-h264", (("grain", str(number)),))
    variant = number % 3
    if variant == 0:
        yield _Recipe("progressive", None, "ffv1-rgb", stem, "crop-rgb", (("crop", "1"),))
    elif variant == 1:
        yield _Recipe("progressive", None, "ffv1", stem, "crop-grain",
                      (("crop", "1"), ("grain", str(number))))
    else:
        yield _Recipe("progressive", None, "h264", stem, "frozen", (("frozen", "1"),))


def _frames_needed(recipes: list[_Recipe]) -> int:
    return max(2 * FRAMES if r.kind == "interlaced" else
               FRAMES + 5 if r.kind == "telecined" else FRAMES for r in recipes)


def _foreman_rgb(folder: Path) -> CorpusClip:
    """A 176x144 crop of foreman written by PyAV as FFV1 RGB, with no field flag: the file
    an earlier detector measured as bottom field first."""
    path = folder / "prog-foreman-crop-ffv1-rgb.mkv"
    if not path.is_file():
        with av.open(str(FOREMAN)) as container:
            frames = [f.to_ndarray(format="yuv420p") for _, f in
                      zip(range(FRAMES), container.decode(video=0), strict=False)]
        temporary = path.with_name(f".{path.name}")
        _encode(temporary, [_crop(f, 176, 144) for f in frames], "ffv1-rgb", None)
        temporary.replace(path)
    return CorpusClip("prog-foreman-crop-ffv1-rgb", "progressive", None, "ffv1-rgb", path)


# -- pictures (yuv420p frames as one (h * 3 / 2, w) array, as PyAV holds them) ---------------

def _source_frames(source: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``source`` at WIDTH x HEIGHT (repeated from the start
    when the clip is shorter)."""
    frames: list[np.ndarray] = []
    with av.open(str(source)) as container:
        for frame in container.decode(video=0):
            picture = frame.reformat(width=WIDTH, height=HEIGHT, format="yuv420p",
                                     interpolation="AREA").to_ndarray()
            # A repeated picture (footage of a lower rate) would weave into a progressive
            # frame or hide a film cadence: every frame kept differs from the one before.
            if frames and np.abs(picture[:HEIGHT] - frames[-1][:HEIGHT].astype(int)).mean() < 0.5:
                continue
            frames.append(picture)
            if len(frames) == count:
                break
    while len(frames) < count:  # back and forth: a jump back to the start would be a cut
        frames += frames[-2::-1][:count - len(frames)]
    return frames


def _resize(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    return frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()


def _planes(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    height = picture.shape[0] * 2 // 3
    width = picture.shape[1]
    chroma = picture[height:].reshape(2, height // 2, width // 2)
    return picture[:height], chroma[0], chroma[1]


def _join(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    width = y.shape[1]
    chroma = np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(-1, width)
    return np.concatenate([y, chroma])


def _weave(first: np.ndarray, second: np.ndarray, order: str) -> np.ndarray:
    """One interlaced frame: ``first`` (the earlier picture) on the field shown first.
    Interlaced 4:2:0 alternates its chroma rows between the fields as it does its luma."""
    top, bottom = (first, second) if order == "tff" else (second, first)
    woven = []
    for t, b in zip(_planes(top), _planes(bottom), strict=True):
        plane = t.copy()
        plane[1::2] = b[1::2]
        woven.append(plane)
    return _join(*woven)


def _crop(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    y, u, v = _planes(picture)
    top, left = (y.shape[0] - height) // 4 * 2, (y.shape[1] - width) // 4 * 2
    return _join(y[top:top + height, left:left + width],
                 u[top // 2:(top + height) // 2, left // 2:(left + width) // 2],
                 v[top // 2:(top + height) // 2, left // 2:(left + width) // 2])


def _grain(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Film-grain-like noise on the luma (sigma 6 of 255): what a noisy capture adds."""
    y, u, v = _planes(picture)
    noisy = np.clip(y + rng.normal(0, 6, y.shape), 0, 255).astype(np.uint8)
    return _join(noisy, u, v)


def _telecine(film: list[np.ndarray], pattern: str, order: str) -> list[np.ndarray]:
    """``film`` (yuv420p pictures, taken as 23.976p) through the tests' telecine."""
    frames = [av.VideoFrame.from_ndarray(picture, format="yuv420p") for picture in film]
    return [frame.to_ndarray(format="yuv420p") for frame in telecine(frames, pattern, order[0])]


# -- coding ----------------------------------------------------------------------------------

def _encode(path: Path, pictures: list[np.ndarray], coding: str, order: str | None) -> None:
    """Write ``pictures`` at 29.97 fps as ``coding``; interlaced codings flag ``order``."""
    container_format = {".dv": "dv", ".mpg": "mpeg", ".mkv": "matroska"}[
        Path(path.name.lstrip(".")).suffix]
    with av.open(str(path), "w", format=container_format) as out:
        stream = _stream(out, coding, order, pictures[0])
        marks = _field_marks(order, stream.pix_fmt) if order else None
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            if stream.pix_fmt != "yuv420p":
                frame = frame.reformat(format=stream.pix_fmt)
            if marks is not None:
                frame = marks(frame)
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _stream(out: av.container.OutputContainer, coding: str, order: str | None,
            first: np.ndarray) -> av.VideoStream:
    height, width = first.shape[0] * 2 // 3, first.shape[1]
    if coding == "x264":
        params = {"tff": "tff=1", "bff": "bff=1"}[order] if order else ""
        stream = out.add_stream("libx264", rate=VIDEO_RATE, options={
            "crf": "16", "preset": "veryfast", "x264-params": params})
    elif coding == "h264":
        stream = out.add_stream("libx264", rate=VIDEO_RATE,
                                options={"crf": "18", "preset": "veryfast"})
    elif coding.startswith("mpeg2"):
        stream = out.add_stream("mpeg2video", rate=VIDEO_RATE, options={"qscale": "3"})
        stream.codec_context.qscale = 3
        stream.codec_context.flags |= av.codec.context.Flags.qscale
        if order:
            stream.codec_context.flags |= (av.codec.context.Flags.interlaced_dct
                                           | av.codec.context.Flags.interlaced_me)
    elif coding == "dv":
        stream = out.add_stream("dvvideo", rate=VIDEO_RATE)
        width, height = 720, 480
    else:
        stream = out.add_stream("ffv1", rate=VIDEO_RATE)
    stream.width, stream.height = width, height
    stream.pix_fmt = {"dv": "yuv411p", "ffv1-rgb": "bgr0"}.get(coding, "yuv420p")
    if order and coding in ("x264", "mpeg2", "dv"):
        stream.codec_context.field_order = {"tff": 2, "bff": 3}[order]  # AVFieldOrder tt, bb
    return stream


def _field_marks(order: str, pix_fmt: str):
    """A function marking a frame interlaced with ``order`` (FFmpeg's setfield), so the
    encoders that code fields (MPEG-2, DV) code them in that order."""
    state: dict[str, av.filter.Graph] = {}

    def mark(frame: av.VideoFrame) -> av.VideoFrame:
        if "graph" not in state:
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=pix_fmt,
                                      time_base=1 / VIDEO_RATE)
            node = graph.add("setfield", order)
            sink = graph.add("buffersink")
            source.link_to(node)
            node.link_to(sink)
            graph.configure()
            state["graph"] = graph
        state["graph"].push(frame)
        return state["graph"].pull()

    return mark
