"""Into a network's input space and back: the one place frames and pictures become what a
network takes, and what it gives becomes frames again.

A :class:`ModelSpace` is made once from a model's :class:`~vidsr.archs.spec.ArchSpec` and
scale (the engine makes it when it is built). It serves two kinds of caller:

- **pictures** (training pairs, ``vidsr eval``, OpenVINO's calibration frames, the export's
  check frame): :meth:`~ModelSpace.from_rgb` takes RGB in [0, 1] into the model's space
  (RGB, or BT.601 studio-swing luma / 255 for one-channel models), and
  :meth:`~ModelSpace.picture_of` does the same for decoded frames. :meth:`~ModelSpace.network_input`
  then makes a picture what the network itself takes: bicubic-upscaled for a
  pre-upsampling network (:meth:`~ModelSpace.pre_upsample`) and padded to the size
  multiple (:meth:`~ModelSpace.pad`, which the replica also applies to each tile).
- **frames** (the engine, and through it the transcoder, ``vidsr compare`` and
  ``vsvidsr``): :meth:`~ModelSpace.route` decides, once for each pair of source and output
  layouts, the :class:`FrameRoute` a batch takes: each plane through the network, luma
  through it with the chroma resized beside it, or through RGB; float planes (VapourSynth's
  RGBS, GRAYH...) have routes of their own. A route turns device planes into the
  network's inputs (``to_model``) and the network's outputs into planes (``from_model``).

Windows of frames (temporal models): a batch of windows holds each frame its windows need
once (:class:`~vidsr.io.frames.FrameWindows`). :meth:`FrameRoute.run_windows` converts the
frames the replica has not converted before (:mod:`vidsr.engine.converted_frames`) with
the route's own per-frame ``to_model``, then lays the windows out as (N, T, C, h, w) from
them (:func:`gather_windows`); ``from_model`` gets the output frames' own planes (the
windows' centres), so every route serves windows as it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from vidsr.archs.spec import ArchSpec, InputSpace
from vidsr.engine.converted_frames import ConvertedFrames
from vidsr.imaging.metrics import rgb_to_y_bt601
from vidsr.imaging.resize import imresize
from vidsr.io.colour import (
    ColourSpec,
    colour_for_layout,
    luma_to_model,
    model_to_luma,
    planes_to_rgb,
    rgb_to_planes,
)
from vidsr.io.frames import FrameBatch, PlaneFamily, PlaneLayout

# Network: float (N, C, h, w) in model space -> float32 (N, C, h*s, w*s).
Network = Callable[[torch.Tensor], torch.Tensor]

# Float GRAY is full-range luma in [0, 1]; luma models see it as studio swing, as the
# transcoder hands them a full-range file's Y: through 16-bit full-range codes.
_FULL_RANGE = ColourSpec("bt709", True, "bt709", "bt709")
_GRAY16 = PlaneLayout("gray", 16, pix_fmt="gray16le")


def float_layout(family: PlaneFamily, bits: int) -> PlaneLayout:
    """The layout of float planes in [0, 1] (``bits`` 16 or 32), RGB kept in gbrp order."""
    pix_fmt = f"{'gbrp' if family == 'rgb' else 'gray'}f{bits}le"
    return PlaneLayout(family, bits, pix_fmt=pix_fmt)


def is_float_layout(layout: PlaneLayout) -> bool:
    """Whether ``layout``'s planes are floats in [0, 1] rather than code values."""
    return layout.pix_fmt.endswith(("f16le", "f32le"))


@dataclass(frozen=True)
class ModelSpace:
    """How a network of one spec, at one scale, takes its input and gives its output."""

    input_space: InputSpace
    scale: int
    pre_upsampled: bool = False
    size_multiple: int = 1

    @classmethod
    def of(cls, spec: ArchSpec, scale: int) -> ModelSpace:
        return cls(spec.input_space, scale, spec.pre_upsampled, spec.size_multiple)

    @property
    def channels(self) -> int:
        return 3 if self.input_space == "rgb" else 1

    @property
    def network_scale(self) -> int:
        """How many times larger the network's own output is than its own input."""
        return 1 if self.pre_upsampled else self.scale

    @property
    def native_family(self) -> PlaneFamily:
        """The frames the model runs on without a detour through RGB: YUV for a luma
        model (its Y goes through the network as coded), RGB otherwise."""
        return "yuv" if self.input_space == "y" else "rgb"

    # -- pictures ------------------------------------------------------------------------

    def from_rgb(self, rgb: torch.Tensor, luma: torch.Tensor | None = None) -> torch.Tensor:
        """RGB (N, 3, h, w), or windows (N, T, 3, h, w), in [0, 1] in the model's space,
        float32: RGB for an RGB model,
        else ``luma`` (N, 1, h, w) where the caller has its own (``vidsr eval``'s rounded
        Y), else the BT.601 studio-swing Y of ``rgb`` / 255, as the papers train it."""
        if self.input_space == "rgb":
            return rgb.float()
        if luma is not None:
            return luma.float()
        return (rgb_to_y_bt601(rgb) / 255.0).unsqueeze(-3).float()

    def picture_of(self, batch: FrameBatch, colour: ColourSpec) -> torch.Tensor:
        """Decoded frames as a picture in the model's space (N, C, h, w), float32: a luma
        model takes the coded Y of a YUV or gray source, others RGB clamped to [0, 1]
        (through :meth:`from_rgb`)."""
        planes = [torch.from_numpy(np.ascontiguousarray(p)).float() for p in batch.planes]
        layout = batch.layout
        if self.input_space == "y" and layout.family != "rgb":
            return luma_to_model(planes[0], colour, layout)[:, None].float()
        y, u, v = (planes + [None, None])[:3]
        return self.from_rgb(planes_to_rgb(y, u, v, colour, layout).clamp(0, 1))

    def pre_upsample(self, x: torch.Tensor,
                     size: tuple[int, int] | None = None) -> torch.Tensor:
        """``x`` bicubic-upscaled to ``size`` (default: ``scale`` times) for a
        pre-upsampling network; unchanged for the others."""
        if not self.pre_upsampled:
            return x
        if size is None:
            size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        if x.ndim == 5:  # windows: each frame on its own
            return imresize(x.flatten(0, 1), size=size).unflatten(0, x.shape[:2])
        return imresize(x, size=size)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded at the bottom and right (edges replicated) to the size multiple."""
        multiple = self.size_multiple
        pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
        if (pad_h or pad_w) and x.ndim == 5:  # replicate pads a 4D tensor's last two dims
            return self.pad(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x

    def unpad(self, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The network's output ``y`` for a ``width`` x ``height`` input, its padding cut."""
        s = self.network_scale
        return y[..., : height * s, : width * s]

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of what the network takes for a ``width`` x ``height`` picture:
        :meth:`network_input`'s size, without making the input."""
        factor = self.scale if self.pre_upsampled else 1
        multiple = self.size_multiple
        return (-(-height * factor // multiple) * multiple,
                -(-width * factor // multiple) * multiple)

    def network_input(self, picture: torch.Tensor) -> torch.Tensor:
        """``picture`` in model space made what the network itself takes: pre-upsampled
        where the network asks, padded to the size multiple."""
        return self.pad(self.pre_upsample(picture)).contiguous()

    # -- frames --------------------------------------------------------------------------

    def route(self, source: PlaneLayout, output: PlaneLayout) -> FrameRoute:
        """The way frames of ``source`` reach the network and come back as ``output``."""
        return _route(self, source, output)


@cache
def _route(space: ModelSpace, source: PlaneLayout, output: PlaneLayout) -> FrameRoute:
    """Decided once per space and pair of layouts; a stream keeps its route."""
    if is_float_layout(source):
        if space.input_space == "rgb":
            return FloatRgbRoute(space, source, output)
        if space.input_space == "y":
            return FloatLumaRoute(space, source, output)
        return ChannelsRoute(space, source, output)
    if space.input_space == "planes" and _same_shape_family(source, output):
        return PlanesRoute(space, source, output)
    if space.input_space == "y" and source.family != "rgb" and output.family != "rgb":
        return LumaRoute(space, source, output)
    return RgbRoute(space, source, output)


@dataclass(frozen=True)
class FrameRoute(ABC):
    """One way from device planes of ``source`` (float, (N, h, w) each) through the network
    to float planes of ``output`` at ``scale`` times the size, unrounded."""

    space: ModelSpace
    source: PlaneLayout
    output: PlaneLayout

    def run(self, planes: list[torch.Tensor], colour: ColourSpec | None,
            net: Network) -> list[torch.Tensor]:
        """Float ``planes`` through ``net`` into planes of the output layout."""
        outputs = [net(x) for x in self.to_model(planes, colour)]
        return self.from_model(outputs, planes, colour)

    def run_windows(self, planes: list[torch.Tensor], colour: ColourSpec | None,
                    net: Network, windows: torch.Tensor, converted: ConvertedFrames,
                    keys: list[Hashable]) -> list[torch.Tensor]:
        """A batch of windows through ``net`` into planes of the output layout.

        ``planes``: every frame the windows need, each once, as decoded (code values or
        floats); ``windows``: (N, T) indices into them, one window per output frame (see
        :class:`~vidsr.io.frames.FrameWindows`); ``keys``: each frame's name in
        ``converted``, so a frame the replica converted for an earlier batch is not
        converted again.
        """
        def convert(rows: torch.Tensor) -> list[torch.Tensor]:
            rows = rows.to(planes[0].device)
            return self.to_model([p[rows].float() for p in planes], colour)

        inputs = converted.inputs(keys, convert)
        outputs = [net(gather_windows(x, windows, len(keys))) for x in inputs]
        centres = windows[:, windows.shape[1] // 2]
        return self.from_model(outputs, [p[centres].float() for p in planes], colour)

    @abstractmethod
    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        """The network's inputs for ``planes``: one tensor per call of the network."""

    @abstractmethod
    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        """The network's ``outputs`` (for the inputs :meth:`to_model` gave) as planes."""

    def output_size(self, planes: list[torch.Tensor]) -> tuple[int, int]:
        """(width, height) of the upscaled frames."""
        height, width = planes[0].shape[-2:]
        return width * self.space.scale, height * self.space.scale


class PlanesRoute(FrameRoute):
    """Each plane through the network on its own, in its own layout (the plane-wise
    resizers): no colour conversion at all."""

    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        return [p[:, None] / self.source.max_code for p in planes]

    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        assert colour is not None
        factor = _depth_factor(self.source, self.output, colour.full_range)
        out_w, out_h = self.output_size(planes)
        out = []
        for index, y in enumerate(outputs):
            # Odd sizes: a chroma plane covers half a pixel past the luma edge; crop that half.
            h, w = self.output.plane_shape(index, out_w, out_h)
            out.append(y[:, 0][:, :h, :w] * self.source.max_code * factor)
        return out


class LumaRoute(FrameRoute):
    """Y through the network as luma models expect it; chroma resized beside it (neutral
    chroma for a gray source written as YUV)."""

    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        assert colour is not None
        return [luma_to_model(planes[0], colour, self.source)[:, None]]

    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        assert colour is not None
        output = self.output
        out = [model_to_luma(outputs[0][:, 0], colour, output)]
        if output.family == "yuv":
            factor = _depth_factor(self.source, output, colour.full_range)
            out_w, out_h = self.output_size(planes)
            for index in (1, 2):
                size = output.plane_shape(index, out_w, out_h)
                if self.source.family == "gray":
                    neutral = float(1 << (output.bit_depth - 1))
                    out.append(torch.full((planes[0].shape[0], *size), neutral,
                                          device=planes[0].device))
                else:
                    out.append(imresize(planes[index], size=size) * factor)
        return out


class RgbRoute(FrameRoute):
    """Through RGB in [0, 1]: an RGB model takes it whole; a plane-wise or luma model on
    RGB footage takes each channel on its own."""

    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        assert colour is not None
        y, u, v = (planes + [None, None])[:3]
        rgb = planes_to_rgb(y, u, v, colour, self.source)
        return [rgb if self.space.input_space == "rgb" else _channels_as_batch(rgb)]

    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        assert colour is not None
        rgb = outputs[0]
        if self.space.input_space != "rgb":
            rgb = _batch_as_channels(rgb, planes[0].shape[0])
        # An RGB source written as YUV (or the reverse) needs the matrix the encoder tags.
        out_colour = colour_for_layout(colour, self.output, rgb.shape[-2])
        return list(rgb_to_planes(rgb, out_colour, self.output))


class FloatRgbRoute(FrameRoute):
    """Float RGB planes (gbrp order) straight into an RGB model, unclamped."""

    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        g, b, r = planes
        return [torch.stack((r, g, b), dim=1)]

    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        y = outputs[0]
        return [y[:, 1], y[:, 2], y[:, 0]]


class FloatLumaRoute(FrameRoute):
    """Float gray planes into a luma model: read as full-range 16-bit luma codes."""

    def _codes(self) -> LumaRoute:
        return LumaRoute(self.space, _GRAY16, _GRAY16)

    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        return self._codes().to_model([planes[0] * _GRAY16.max_code], _FULL_RANGE)

    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        codes = self._codes().from_model(outputs, planes, _FULL_RANGE)
        return [codes[0] / _GRAY16.max_code]


class ChannelsRoute(FrameRoute):
    """Float planes of one size each through the network on their own, in one call."""

    def to_model(self, planes: list[torch.Tensor],
                 colour: ColourSpec | None) -> list[torch.Tensor]:
        return [_channels_as_batch(torch.stack(planes, dim=1))]

    def from_model(self, outputs: list[torch.Tensor], planes: list[torch.Tensor],
                   colour: ColourSpec | None) -> list[torch.Tensor]:
        y = _batch_as_channels(outputs[0], planes[0].shape[0])
        return [y[:, i] for i in range(y.shape[1])]


def gather_windows(x: torch.Tensor, windows: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-frame network inputs ``x`` ((frames * k, C, h, w): k pictures per frame, k > 1
    where a route runs each channel on its own) as windows (N * k, T, C, h, w)."""
    per_frame = x.reshape(frames, -1, *x.shape[1:])  # (M, k, C, h, w)
    gathered = per_frame[windows]  # (N, T, k, C, h, w)
    return gathered.transpose(1, 2).reshape(-1, windows.shape[1], *x.shape[1:])


def _channels_as_batch(x: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) as (N*C, 1, h, w): every channel a picture of its own."""
    n, c, h, w = x.shape
    return x.reshape(n * c, 1, h, w)


def _batch_as_channels(y: torch.Tensor, frames: int) -> torch.Tensor:
    """The inverse of :func:`_channels_as_batch` on the network's output."""
    return y.reshape(frames, -1, *y.shape[-2:])


def _same_shape_family(a: PlaneLayout, b: PlaneLayout) -> bool:
    def shape(layout: PlaneLayout) -> tuple[str, int, int]:
        return layout.family, layout.log2_chroma_w, layout.log2_chroma_h

    return shape(a) == shape(b)


def _depth_factor(in_layout: PlaneLayout, out_layout: PlaneLayout, full_range: bool) -> float:
    """Factor that moves code values from one bit depth to another."""
    if full_range:
        return out_layout.max_code / in_layout.max_code
    # Limited range scales by powers of two (16..235 at 8 bits is 64..940 at 10).
    return float(2 ** (out_layout.bit_depth - in_layout.bit_depth))
