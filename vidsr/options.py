"""The options of a run as data: declared once, read from any front end.

The `vidsr` command's model, run and file options are declared here, each once, as an
:class:`Option`: its name (the long option without dashes), how a value is read from
text, its choices and default. Every front end reads them with the same rules and the
same messages:

- the command line: ``vidsr.cli`` adds each declared option to its parsers;
- presets (:func:`preset_values`): a TOML key is the option of the same name;
- batch manifests (:func:`with_overrides`): a CSV column is the option of the same name;
- the VapourSynth filter: its keyword arguments take a preset's values as defaults.

Each front end gives a flat mapping of values keyed by the option's ``dest``
(``batch_size`` for ``batch-size``), which :func:`engine_options`,
:func:`encode_options` and :func:`transcode_options` turn into the frozen option types the
run takes: what the engine is asked, what the encoder is asked, and how the file is read
and turned. They are validated once, when the run plan is made from them.

This module imports nothing heavy: the command's ``--help`` stays quick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidsr.errors import OptionsError
from vidsr.models.strength import strength_value

if TYPE_CHECKING:
    from vidsr.io.encode_options import EncodeOptions
    from vidsr.plan.run_plan import EngineOptions
    from vidsr.run.transcode import TranscodeOptions
    from vidsr.run_presets import RunPreset

RUNTIMES = ("torch", "openvino", "auto")


def whole_number(text: str) -> int:
    """An integer option's value (``--tile 64``)."""
    try:
        return int(text)
    except ValueError:
        raise OptionsError(f"invalid int value: {text!r}") from None


def positive_number(text: str) -> int:
    """A whole number of at least 1 (a scale, a height)."""
    try:
        value = int(text)
    except ValueError:
        raise OptionsError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise OptionsError(f"must be at least 1, got {value}")
    return value


def encoder_option(text: str) -> tuple[str, str]:
    """One ``KEY=VALUE`` option for the encoder."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise OptionsError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def runtime_list(text: str) -> list[str]:
    """One runtime, or several with commas (`vidsr bench` compares them)."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in RUNTIMES]
    if unknown or not names:
        raise OptionsError(f"expected torch, openvino or auto (several with commas for"
                           f" vidsr bench), got {text!r}")
    return names


@dataclass(frozen=True)
class Option:
    """One option a command line, a preset and a manifest row spell the same way.

    ``read`` turns a value's text into the value (raising OptionsError with the reason);
    None keeps the text. ``switch``: an on/off option without a value (``negatable``: with
    a ``--no-`` form too); ``repeatable``: each use adds one value to a list.
    """

    name: str
    help: str
    read: Callable[[str], Any] | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    switch: bool = False
    negatable: bool = False
    repeatable: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The key of the option's value (``batch_size``), as Python spells it."""
        return self.name.replace("-", "_")

    def value_of(self, text: str) -> Any:
        """The value ``text`` stands for; OptionsError giving the reason if it is none."""
        value = self.read(text) if self.read is not None else text
        if self.choices and value not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            raise OptionsError(f"invalid choice: {value!r} (choose from {allowed})")
        return value


# The model: shared by every command that loads one (`vidsr`, batch, bench, eval, export,
# compare, eval-video); the default model is each command's own.
MODEL = Option("model", "model name (see `vidsr models`) or a weights file", default="compact")
SCALE = Option("scale", "upscaling factor (default: the model's)", read=positive_number)
WEIGHTS = Option("weights", "weights file for the model's architecture", read=Path)
ALLOW_UNSAFE_WEIGHTS = Option(
    "allow-unsafe-weights", "allow a legacy pickled checkpoint to run code while loading"
    " (trusted files only)", switch=True, default=False)
DEVICE = Option("device", "cpu, cuda, cuda:N (default: auto)", default="auto")
STRENGTH = Option(
    "strength", "for a model with a strength knob (crisp): 0 its PSNR-trained partner's clean,"
    " soft picture, 1 its own crisp one (default), between: the two networks blended"
    " (ESRGAN's network interpolation)", read=strength_value, metavar="0..1")
MODEL_OPTIONS = (MODEL, SCALE, WEIGHTS, ALLOW_UNSAFE_WEIGHTS, DEVICE, STRENGTH)

# What the engine is asked (vidsr.plan.run_plan.EngineOptions).
ENGINE_OPTIONS = (
    Option("batch-size", "frames per batch (default: 1 on a CPU, 4 on CUDA)", read=whole_number),
    Option("in-flight", "batches in flight per CUDA device, each on its own stream"
           " (default: 2)", read=whole_number, default=2),
    Option("precision", "network precision (default auto: bf16 on a CPU with native bf16 and"
           " fp16 on CUDA, for models measured to tolerate it; else fp32; int8: OpenVINO's"
           " quantisation, for models measured to lose at most 0.1 dB)",
           choices=("auto", "fp32", "fp16", "bf16", "int8"), default="auto"),
    Option("runtime", "what runs the network: torch (default), openvino (on the CPU; needs"
           " vidsr[openvino]) or auto (OpenVINO where measured faster); `vidsr bench` takes"
           " several, e.g. torch,openvino", read=runtime_list, default=["torch"]),
    Option("force-int8", "run int8 even where its measured loss is over 0.1 dB or unknown",
           switch=True, default=False),
    Option("calibration", "frames int8 is calibrated on (default: the input clip itself)",
           read=Path, metavar="CLIP_OR_FOLDER"),
    Option("strict", "refuse settings vidsr would only warn about (bf16 on a CPU without"
           " native bf16)", switch=True, default=False),
    Option("tile", "tile size in input pixels (0: whole frames; at least 16)",
           read=whole_number, default=0),
    Option("tile-overlap", "context around each tile in pixels (default: the model's"
           " receptive radius, capped at 64)", read=whole_number),
    Option("compile", "torch.compile the model (slow start)", switch=True, default=False),
    Option("no-channels-last", "keep NCHW memory format", switch=True, default=False),
    Option("threads", "on a CPU: torch threads per worker (default: planned from the cores)",
           read=whole_number),
    Option("cpu-workers", "on a CPU: batches run at once, each in its own thread (default:"
           " planned from the cores)", read=whole_number),
)

# What the encoder is asked (vidsr.io.encode.EncodeOptions).
ENCODER_OPTIONS = (
    Option("codec", "video encoder (default: the container's usual one: libx264 for"
           " .mkv/.mp4/.mov/.ts, libvpx-vp9 for .webm, mpeg4 for .avi, mpeg2video for .mpg)"),
    Option("crf", "constant-quality value for the encoder", read=whole_number),
    # Not --preset: that name is kept for vidsr's own presets (model, tiling, codec...).
    Option("encoder-preset", "encoder speed preset (e.g. slow, medium, veryfast; svt-av1:"
           " 0-13)"),
    Option("pix-fmt", "output pixel format (default: the source's; 10-bit stays 10-bit)"),
    Option("encoder-opt", "option passed to the encoder (repeatable)", read=encoder_option,
           repeatable=True, default=[], metavar="KEY=VALUE"),
)

# Which picture of the input is upscaled, and how it is turned into the delivered one
# (vidsr.run.transcode.TranscodeOptions).
PICTURE_OPTIONS = (
    Option("video-stream", "upscale stream #N of the input (its index in the file, as the"
           " messages and --dry-run name it; default: the default video stream, else the"
           " largest; cover art never)", read=whole_number, metavar="N"),
    Option("deinterlace", "deinterlace before the model (default auto: the pictures are"
           " measured and weighed with the flag: interlaced ones deinterlaced, telecined film"
           " inverse telecined, progressive ones kept); ivtc: inverse telecine, film frames"
           " back from 3:2 pulldown at 4/5 of the rate",
           choices=("auto", "on", "off", "ivtc"), default="auto"),
    Option("deinterlacer", "what deinterlaces: bwdif (default, FFmpeg's) or qtgmc (QTGMC"
           " through VapourSynth: sharper, slower; pip install 'vidsr[qtgmc]')",
           choices=("bwdif", "qtgmc"), default="bwdif"),
    Option("field-order", "field order to deinterlace with (default auto: the stream's flag,"
           " else measured)", choices=("auto", "tff", "bff"), default="auto"),
    Option("deinterlace-rate", "one output frame per frame (default) or per field (double"
           " rate)", choices=("frame", "field"), default="frame"),
    Option("height", "resize the upscaled picture to N lines (width from the display aspect),"
           " antialiased, after the model", read=positive_number, metavar="N"),
    Option("square-pixels", "resize the upscaled picture to square pixels at the same display"
           " aspect (anamorphic SD)", switch=True, negatable=True, default=False),
)

# How a file is read and turned, for `vidsr`, `vidsr batch` and `vidsr bench`.
FILE_OPTIONS = (
    Option("on-error", "undecodable frames: fail (default) or replace by the previous frame",
           choices=("fail", "skip"), default="fail"),
    Option("autorotate", "turn a rotated picture (phone clips) upright in the pixels instead"
           " of keeping its display matrix (always so with --ffmpeg)", switch=True,
           default=False),
)

# Everything a preset or a manifest row may name (less what only a command line may say,
# which vidsr.run_presets refuses with its reason).
SHARED_OPTIONS: dict[str, Option] = {
    option.name: option for option in (*MODEL_OPTIONS, *ENGINE_OPTIONS, *ENCODER_OPTIONS,
                                       *PICTURE_OPTIONS, *FILE_OPTIONS)}


def defaults() -> dict[str, Any]:
    """Every shared option's default value, by ``dest``."""
    return {option.dest: option.default for option in SHARED_OPTIONS.values()}


# -- presets and manifest rows ---------------------------------------------------------------


def preset_values(preset: RunPreset) -> dict[str, Any]:
    """``preset``'s options as values by ``dest``, each read as the command line reads it.

    An option that is not one of the shared options, or a bad value, is an OptionsError
    naming the file and the key (``mine.toml: scale = x: expected a whole number, got 'x'``).
    """
    from vidsr.run_presets import show_value

    values: dict[str, Any] = {}
    for key, value in preset.options.items():
        option = SHARED_OPTIONS.get(key.replace("_", "-"))
        if option is None:
            raise OptionsError(f"{preset.path}: unknown key {key!r} (a preset sets the model,"
                               " engine and encoding options of `vidsr`)")
        if option.switch:  # true turns it on, false leaves it off
            if not isinstance(value, bool):
                raise OptionsError(f"{preset.path}: {key} must be true or false, got {value!r}")
            values[option.dest] = value
            continue
        read = []
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (dict, list)):
                raise OptionsError(f"{preset.path}: {key} takes a value or a list of values,"
                                   f" got {item!r}")
            try:
                read.append(option.value_of(show_value(item)))
            except OptionsError as exc:
                raise OptionsError(f"{preset.path}: {key} = {show_value(value)}: {exc}") from None
        if read:  # a value given twice: the last one counts, as on a command line
            values[option.dest] = [*option.default, *read] if option.repeatable else read[-1]
    return values


def with_overrides(values: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    """``values`` with a manifest row's cells (``scale``, ``encoder_preset``: the options of
    the same names) read into them; a bad cell is an OptionsError naming its option."""
    given = dict(values)
    for column, text in overrides.items():
        option = SHARED_OPTIONS[column.replace("_", "-")]
        try:
            value = option.value_of(text)
        except OptionsError as exc:
            raise OptionsError(f"argument --{option.name}: {exc}") from None
        given[option.dest] = [*given[option.dest], value] if option.repeatable else value
    return given


# -- the option types a run takes --------------------------------------------------------------


def engine_options(values: Mapping[str, Any], runtime: str | None = None) -> EngineOptions:
    """What the engine is asked; ``runtime`` replaces the values' (`vidsr bench` runs each
    of several in turn), which must otherwise name one."""
    from vidsr.plan.run_plan import CpuOptions, CudaOptions, EngineOptions, OpenVinoOptions

    if runtime is None:
        if len(values["runtime"]) > 1:
            raise OptionsError("give one --runtime here; `vidsr bench --runtime"
                               " torch,openvino` compares several")
        runtime = values["runtime"][0]
    return EngineOptions(
        device=values["device"], precision=values["precision"],
        batch_size=values["batch_size"], channels_last=not values["no_channels_last"],
        tile=values["tile"], tile_overlap=values["tile_overlap"], compile=values["compile"],
        strict=values["strict"], runtime=runtime,  # type: ignore[arg-type]
        cpu=CpuOptions(workers=values["cpu_workers"], threads=values["threads"]),
        cuda=CudaOptions(in_flight=values["in_flight"]),
        openvino=OpenVinoOptions(force_int8=values["force_int8"],
                                 calibration=values["calibration"]),
    )


def encode_options(values: Mapping[str, Any], *, quiet: bool = False) -> EncodeOptions:
    """What the encoder is asked; ``quiet`` keeps encoders that print themselves to errors."""
    from vidsr.io.encode_options import EncodeOptions

    return EncodeOptions(codec=values["codec"], crf=values["crf"],
                         preset=values["encoder_preset"], pix_fmt=values["pix_fmt"],
                         encoder_opts=tuple(values["encoder_opt"]), quiet=quiet)


def transcode_options(values: Mapping[str, Any], *,
                      ffmpeg: str | None = None) -> TranscodeOptions:
    """How a file is read and turned; ``ffmpeg`` is only ever the command line's (a preset
    or a manifest row may not set it)."""
    from vidsr.run.transcode import TranscodeOptions

    return TranscodeOptions(
        on_error=values["on_error"], ffmpeg=ffmpeg,
        autorotate=values["autorotate"], deinterlace=values["deinterlace"],
        field_order=values["field_order"], deinterlace_rate=values["deinterlace_rate"],
        deinterlacer=values["deinterlacer"], height=values["height"],
        square_pixels=values["square_pixels"],
        video_stream=values["video_stream"],
    )


def upscale_arguments(values: Mapping[str, Any], *, quiet: bool = False,
                      ffmpeg: str | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`vidsr.upscale_video` (and of a batch's
    :class:`~vidsr.commands.batch.FileRun`) that ``values`` give: everything but the run's
    :class:`~vidsr.run.transcode.RunControl`, which the caller sets."""
    return dict(
        model=values["model"], scale=values["scale"], weights=values["weights"],
        allow_unsafe_weights=values["allow_unsafe_weights"], strength=values["strength"],
        engine=engine_options(values),
        encode=encode_options(values, quiet=quiet),
        options=transcode_options(values, ffmpeg=ffmpeg),
    )
