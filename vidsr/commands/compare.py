"""``vidsr compare``: one frame (or a crop of it) from several models, side by side in a PNG.

Each model upscales the frame along the transcoder's own path
(:func:`vidsr.run.source_to_sink.run_frames`), under the run plan's device and precision: a
video's frame is decoded as the plan says from the stretch of the stream it occupies
(:func:`vidsr.run.source_to_sink.open_source`, which for a model that sees a window of
frames also decodes the frame's neighbours as context, as for a batch's segments); decoded
planes in the source's own layout and colour go in, the same layout comes out (a luma model
runs on Y and the chroma is resized, an RGB model runs on RGB). The panel is that output
turned into 8-bit RGB. Its label gives the model, the time of a run for the frame (median of
``repeats`` runs after one warm-up run: colour conversion, the network and quantisation, not
decoding or encoding),
and, against a reference, PSNR / SSIM of the whole frame on Y with ``vidsr eval``'s
conventions (rounded BT.601 Y of the 8-bit RGB, ``scale`` border pixels cropped).

With ``self_test`` the frame itself is the reference: it is downscaled first with
``vidsr eval``'s bicubic, and that LR is what the models get (as RGB for RGB and
plane-wise models; for luma models as BT.601 YUV 4:4:4 whose Y is ``vidsr
eval``'s rounded Y, so they run on the luma they were made for).

An interlaced video's frame is shown as stored unless ``deinterlace`` asks (the reference
and self-test frames are the stored ones); then the models get it deinterlaced at frame
rate as ``vidsr`` would (:func:`~vidsr.io.deinterlace.plan_deinterlace` decides), bwdif or
QTGMC rendering only the frames of its span.

A crop is given in the pixels of the input frame (with ``self_test``, of the
frame before its downscale); every panel shows that region, enlarged by
``zoom`` with nearest neighbours so single pixels stay visible.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from vidsr.engine.engine import Engine
from vidsr.engine.model_space import ModelSpace
from vidsr.errors import InputError, OptionsError
from vidsr.imaging.scoring import MAX_CODE, luma_of_uint8, make_lr, mod_crop, score_luma
from vidsr.io.colour import (
    MATRIX_NAMES,
    PRIMARIES_NAMES,
    RANGE_FULL,
    TRANSFER_NAMES,
    ColourSpec,
    batch_rgb,
    code_of,
    resolve_colour,
    rgb_to_planes,
    round_half_up,
)
from vidsr.io.decode import Decoder, Window
from vidsr.io.deinterlace import (
    DeinterlaceMode,
    DeinterlacePlan,
    DeinterlacerName,
    FieldOrderChoice,
    plan_deinterlace,
)
from vidsr.io.frames import FrameBatch
from vidsr.io.images import IMAGE_SUFFIXES, read_rgb
from vidsr.io.pixfmt import source_format
from vidsr.io.safe_output import check_output_path, write_small_output
from vidsr.io.video_info import VideoInfo
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.precision import Precision
from vidsr.plan.run_plan import EngineOptions, RunPlan, resolve_plan
from vidsr.run.source_to_sink import open_source, run_frames

log = logging.getLogger("vidsr")

GAP = 4  # pixels between panels and around the grid
FONT_SIZE = 14
LINE_HEIGHT = 18
CAPTION_LINES = 3
CAPTION_HEIGHT = CAPTION_LINES * LINE_HEIGHT + 6
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (240, 240, 240)
PANELS_KEY = "vidsr:panels"  # PNG text chunk: the panels' captions as JSON


@dataclass(frozen=True)
class CompareOptions:
    """What to show. ``frame`` (0-based) or ``time`` (seconds from the first frame) picks
    the frame, default the first; ``crop`` is (x, y, width, height) in input pixels."""

    scale: int
    frame: int | None = None
    time: float | None = None
    deinterlace: DeinterlaceMode = "off"
    deinterlacer: DeinterlacerName = "bwdif"
    field_order: FieldOrderChoice = "auto"
    crop: tuple[int, int, int, int] | None = None
    zoom: int = 1
    reference: Path | None = None
    self_test: bool = False
    device: str = "auto"
    precision: Precision = "auto"
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise OptionsError(f"scale must be at least 1, got {self.scale}")
        if self.frame is not None and self.time is not None:
            raise OptionsError("give --frame or --time, not both")
        if self.frame is not None and self.frame < 0:
            raise OptionsError(f"--frame counts from 0, got {self.frame}")
        if self.time is not None and (self.time < 0 or not math.isfinite(self.time)):
            raise OptionsError(f"--time must be 0 or more seconds, got {self.time}")
        if self.zoom < 1:
            raise OptionsError(f"--zoom must be at least 1, got {self.zoom}")
        if self.repeats < 1:
            raise OptionsError(f"--repeats must be at least 1, got {self.repeats}")
        if self.reference is not None and self.self_test:
            raise OptionsError("give --reference or --self-test, not both")
        if self.self_test and self.deinterlace != "off":
            raise OptionsError("--self-test scores the frame as stored; drop --deinterlace")
        if self.deinterlace == "ivtc":
            # Film frames are rebuilt from fields of several stored frames, one in five dropped.
            raise OptionsError("vidsr compare shows one stored frame; inverse telecine"
                               " regroups the fields of several: use --deinterlace on or auto")
        if self.crop is not None:
            x, y, w, h = self.crop
            if x < 0 or y < 0 or w < 1 or h < 1:
                raise OptionsError(f"--crop {x},{y},{w},{h}: x and y must be 0 or more, width"
                                   " and height at least 1")


@dataclass(frozen=True)
class Still:
    """One frame: its planes as a batch of one, its colour, and where it was. A video's
    frame also names its video and the stretch of the stream it occupies, which the
    models decode as their plan says, deinterlaced as ``deinterlace`` says (None: as
    stored); a picture (an image, a self-test's LR) has neither."""

    batch: FrameBatch
    colour: ColourSpec
    index: int
    seconds: float
    video: VideoInfo | None = None
    span: Window | None = None
    deinterlace: DeinterlacePlan | None = None

    def rgb(self) -> torch.Tensor:
        return batch_rgb(self.batch, self.colour)[0]


@dataclass(frozen=True)
class Panel:
    """One picture of the grid and what its caption says."""

    title: str
    image: torch.Tensor  # (3, H, W) uint8, the whole frame
    ms_per_frame: float | None = None
    precision: str | None = None
    psnr: float | None = None
    ssim: float | None = None
    note: str = ""

    def caption(self) -> list[str]:
        lines = [self.title]
        if self.ms_per_frame is not None:
            lines.append(f"{self.ms_per_frame:.0f} ms/frame ({self.precision})")
        elif self.note:
            lines.append(self.note)
        if self.psnr is not None and self.ssim is not None:
            value = "inf (identical)" if math.isinf(self.psnr) else f"{self.psnr:.2f} dB"
            lines.append(f"Y {value} / SSIM {self.ssim:.4f}")
        return lines


# -- reading the frame ---------------------------------------------------------------------


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_still(path: str | Path, *, frame: int | None = None,
               seconds: float | None = None) -> Still:
    """Frame ``frame`` of a video (or the frame shown at ``seconds``), or an image file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if is_image(path):
        if (frame or 0) > 0 or (seconds or 0) > 0:
            raise InputError(f"{path}: an image has one frame (frame 0, time 0)")
        return Still(rgb_batch(read_rgb(path)), RGB_COLOUR, 0, 0.0)
    with Decoder(path, batch_size=1) as decoder:
        info = decoder.info
        previous: tuple[FrameBatch, float] | None = None
        first_pts: int | None = None
        count = 0
        for batch in decoder:
            first_pts = batch.pts[0] if first_pts is None else first_pts
            at = float((batch.pts[0] - first_pts) * batch.time_base)
            if seconds is None and count == (frame or 0):
                return video_still(batch, info, count, at)
            if seconds is not None and at > seconds:
                assert previous is not None  # the first frame is at 0
                return video_still(previous[0], info, count - 1, previous[1])
            previous = (batch, at)
            count += 1
    if seconds is not None and previous is not None:
        last = previous[1]
        duration = float(info.frame_time) if info.frame_time else 0.0
        if seconds < last + duration:
            return video_still(previous[0], info, count - 1, last)
        raise InputError(f"{path}: --time {seconds:g} is past the end (the last frame starts"
                         f" at {last:.3f} s)")
    raise InputError(f"{path}: --frame {frame} is past the end ({count} frames, 0 to"
                     f" {count - 1})")


def video_still(batch: FrameBatch, info: VideoInfo, index: int, seconds: float) -> Still:
    """Frame ``index`` of a video, decoded as ``batch``; its span is its own pts."""
    pts = batch.pts[0]
    return Still(batch, info.colour, index, seconds, info, Window(start=pts, end=pts + 1))


# The colour of an image file's RGB: what the decoder resolves for untagged gbrp video.
RGB_COLOUR = resolve_colour(matrix=code_of(MATRIX_NAMES, "gbr"), color_range=RANGE_FULL,
                            primaries=code_of(PRIMARIES_NAMES, "unknown"),
                            transfer=code_of(TRANSFER_NAMES, "unknown"), family="rgb",
                            height=0, rate=None)
# The Y of BT.601 limited-range YUV is MATLAB rgb2ycbcr's (vidsr eval's) luma.
BT601_COLOUR = ColourSpec("smpte170m", False, "smpte170m", "smpte170m")


def rgb_batch(rgb: torch.Tensor) -> FrameBatch:
    """A (3, H, W) uint8 RGB picture as a batch of one gbrp frame."""
    planes = [rgb[c].numpy()[None].copy() for c in (1, 2, 0)]
    return FrameBatch(planes, [0], Fraction(1, 25), 0, source_format("gbrp").layout)


def luma_batch(rgb: torch.Tensor) -> tuple[FrameBatch, ColourSpec]:
    """A (3, H, W) uint8 RGB picture as one BT.601 limited-range YUV 4:4:4 frame: its Y
    is ``vidsr eval``'s rounded luma (the same coefficients as MATLAB's rgb2ycbcr)."""
    layout = source_format("yuv444p").layout
    planes = rgb_to_planes(rgb.to(torch.float64)[None] / MAX_CODE, BT601_COLOUR, layout)
    codes = [round_half_up(p).to(torch.uint8).numpy() for p in planes]
    return FrameBatch(codes, [0], Fraction(1, 25), 0, layout), BT601_COLOUR


# -- upscaling -----------------------------------------------------------------------------


def model_frames(plan: RunPlan, still: Still) -> list[FrameBatch]:
    """The frames the model is given for ``still``: a video's, its span decoded as the
    plan says; a picture's, the picture."""
    if still.span is None:
        return [still.batch]
    frames_plan = replace(plan, source=still.video, deinterlace=still.deinterlace)
    # For a model that sees a window of frames, open_source decodes the frame's neighbours
    # as context, as it does for a batch's segments: the batches hold the frame's window.
    with open_source(frames_plan, span=still.span) as source:
        return list(source)


def upscale_still(model: SRModel, still: Still,
                  options: CompareOptions) -> tuple[torch.Tensor, float, str]:
    """``model``'s output for one frame as (3, H, W) uint8 RGB, the engine's median time
    for it in ms, and the plan's precision."""
    plan = resolve_plan(model, EngineOptions(device=options.device, precision=options.precision))
    frames = model_frames(plan, still)
    layout = still.batch.layout  # out in the source's own layout, as the transcoder keeps it
    with Engine(model, plan) as engine:
        times: list[float] = []
        for run in range(1 + options.repeats):  # run 0 warms up: allocations, kernel choice
            out: list[FrameBatch] = []
            timing = run_frames(engine, frames, still.colour, layout, out.append)
            if run:
                times.append(timing.wall_s)
    assert len(out) == 1 and len(out[0]) == 1, "one frame in, one frame out"
    return (batch_rgb(out[0], still.colour)[0], 1000 * statistics.median(times),
            plan.precision.name)


def model_input(model: SRModel, lr_rgb: torch.Tensor, still: Still) -> Still:
    """The self-test LR of ``still`` as the model should get it (see the module's
    docstring)."""
    if ModelSpace.of(model.spec, model.scale).native_family == "yuv":
        batch, colour = luma_batch(lr_rgb)
    else:
        batch, colour = rgb_batch(lr_rgb), RGB_COLOUR
    return Still(batch, colour, still.index, still.seconds)


def build_panels(input_path: str | Path, models: Sequence[SRModel], options: CompareOptions
                 ) -> tuple[list[Panel], tuple[int, int, int, int] | None]:
    """The panels (the reference first, when there is one, then one per model) and the
    crop in output pixels (None: whole frames)."""
    input_path = Path(input_path)
    for model in models:
        if model.scale != options.scale:
            raise OptionsError(f"model {model.name!r} is loaded for x{model.scale},"
                               f" not x{options.scale}")
    still = read_still(input_path, frame=options.frame, seconds=options.time)
    where = f"frame {still.index}" + (f" ({still.seconds:.2f} s)" if still.seconds else "")
    if still.video is not None and options.deinterlace != "off":
        fields = plan_deinterlace(still.video, options.deinterlace, options.field_order,
                                  "frame", options.deinterlacer)
        if fields is not None:
            log.info("%s: the models get %s deinterlaced: %s", input_path, where,
                     fields.to_text())
        still = replace(still, deinterlace=fields)
    panels: list[Panel] = []
    reference: torch.Tensor | None = None
    if options.self_test:
        reference = mod_crop(still.rgb(), options.scale)
        if min(reference.shape[-2:]) == 0:
            raise InputError(f"{input_path}: the frame is smaller than the scale"
                             f" x{options.scale}")
        lr = make_lr(reference, options.scale)
        panels.append(Panel("reference (input)", reference,
                            note=f"{where}; LR: bicubic x1/{options.scale}"))
    elif options.reference is not None:
        ref_still = read_still(options.reference, frame=still.index if options.time is None
                               else None, seconds=options.time)
        reference = ref_still.rgb()
        expected = (still.batch.height * options.scale, still.batch.width * options.scale)
        if tuple(reference.shape[-2:]) != expected:
            raise InputError(
                f"{options.reference}: the reference is {reference.shape[-1]}x"
                f"{reference.shape[-2]}, but x{options.scale} output of {input_path} is"
                f" {expected[1]}x{expected[0]}")
        panels.append(Panel("reference", reference, note=f"{options.reference.name}, {where}"))
    box = crop_box(options, still, reference)  # a bad crop is refused before any model runs
    for model in models:
        given = model_input(model, lr, still) if options.self_test else still
        image, ms, precision = upscale_still(model, given, options)
        score: tuple[float | None, float | None] = (None, None)
        if reference is not None:
            score = score_luma(luma_of_uint8(image), luma_of_uint8(reference), options.scale)
        log.info("%s: %.0f ms/frame", model.name, ms)
        panels.append(Panel(f"{model.name} x{model.scale}", image, ms, precision, *score))
    return panels, box


def crop_box(options: CompareOptions, still: Still,
             reference: torch.Tensor | None) -> tuple[int, int, int, int] | None:
    """The crop in output pixels (x, y, width, height), or None for the whole frame."""
    if options.crop is None:
        return None
    x, y, w, h = options.crop
    if options.self_test:
        assert reference is not None
        height, width = reference.shape[-2:]
        factor = 1
    else:
        height, width = still.batch.height, still.batch.width
        factor = options.scale
    if x + w > width or y + h > height:
        raise InputError(f"--crop {x},{y},{w},{h} is outside the {width}x{height} frame")
    return x * factor, y * factor, w * factor, h * factor


# -- the picture ---------------------------------------------------------------------------


def panel_picture(image: torch.Tensor, box: tuple[int, int, int, int] | None,
                  zoom: int) -> torch.Tensor:
    """The part of a panel's frame that is shown: the crop, enlarged with nearest."""
    if box is not None:
        x, y, w, h = box
        image = image[:, y: y + h, x: x + w]
    if zoom > 1:
        image = image.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)
    return image


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows): one row up to four panels, then a square-ish grid."""
    columns = count if count <= 4 else math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def grid_size(count: int, width: int, height: int) -> tuple[int, int]:
    """The PNG's (width, height) for ``count`` panels of ``width`` x ``height`` pixels."""
    columns, rows = grid_shape(count)
    return (columns * width + (columns + 1) * GAP,
            rows * (height + CAPTION_HEIGHT) + (rows + 1) * GAP)


def caption_strip(lines: Sequence[str], width: int) -> Image.Image:
    """The caption under a panel, drawn with Pillow's built-in font (no system font)."""
    font = ImageFont.load_default(size=FONT_SIZE)
    strip = Image.new("RGB", (width, CAPTION_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for k, line in enumerate(lines):
        draw.text((4, 3 + k * LINE_HEIGHT), line, fill=TEXT_COLOUR, font=font)
    return strip


def render_grid(panels: Sequence[Panel], box: tuple[int, int, int, int] | None,
                zoom: int) -> Image.Image:
    """The comparison picture; the captions also go into a PNG text chunk."""
    pictures = [panel_picture(p.image, box, zoom) for p in panels]
    height, width = pictures[0].shape[-2:]
    columns, _ = grid_shape(len(panels))
    sheet = Image.new("RGB", grid_size(len(panels), width, height), BACKGROUND)
    for k, (panel, picture) in enumerate(zip(panels, pictures, strict=True)):
        left = GAP + (k % columns) * (width + GAP)
        top = GAP + (k // columns) * (height + CAPTION_HEIGHT + GAP)
        sheet.paste(Image.fromarray(picture.permute(1, 2, 0).numpy()), (left, top))
        sheet.paste(caption_strip(panel.caption(), width), (left, top + height))
    return sheet


def write_comparison(panels: Sequence[Panel], output: Path, options: CompareOptions,
                     box: tuple[int, int, int, int] | None, *, overwrite: bool = False) -> Path:
    """Write the PNG (atomically: a partial file never has the final name)."""
    sheet = render_grid(panels, box, options.zoom)
    info = PngImagePlugin.PngInfo()
    info.add_text(PANELS_KEY, json.dumps([p.caption() for p in panels]))
    return write_small_output(
        output, overwrite, lambda tmp: sheet.save(tmp, format="PNG", pnginfo=info, optimize=True))


def run_compare(input_path: str | Path, model_names: Sequence[str], options: CompareOptions,
                output: str | Path, *, weights: str | Path | None = None,
                allow_unsafe: bool = False, overwrite: bool = False) -> list[Panel]:
    """What ``vidsr compare`` does: load every model first (an unknown one fails before any
    work), build the panels, write the PNG (an existing one only with ``overwrite``)."""
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise OptionsError(f"{output}: the comparison is a PNG; name it .png")
    check_output_path(output, overwrite)
    if not model_names:
        raise OptionsError("--models needs at least one model name")
    models = [load_model(name, scale=options.scale, weights=weights,
                         allow_unsafe=allow_unsafe) for name in model_names]
    panels, box = build_panels(input_path, models, options)
    write_comparison(panels, output, options, box, overwrite=overwrite)
    return panels


def panel_captions(path: str | Path) -> list[list[str]]:
    """The captions a comparison PNG holds, read back from its text chunk."""
    with Image.open(path) as image:
        return json.loads(image.text[PANELS_KEY])
