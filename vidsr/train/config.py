"""Training configuration: one frozen dataclass per concern, filled from a TOML preset.

A preset is a TOML file with the tables ``[model]``, ``[data]``, ``[degrade]``
(optional), ``[loss]``, ``[optim]`` and ``[train]``. Overrides from the command
line are dotted keys (``optim.lr=1e-4``) applied to the parsed TOML before it is
validated, so a preset and its overrides are checked in one place, here.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vidsr.errors import OptionsError
from vidsr.plain_data import plain_data

PixelLoss = Literal["l1", "mse", "charbonnier"]
Precision = Literal["fp32", "bf16", "fp16"]
Schedule = Literal["multistep", "cosine"]
OptimizerKind = Literal["adam", "sgd"]
ResizeKernel = Literal["bicubic", "bilinear", "area", "nearest"]
VideoCodec = Literal["h264", "mpeg2video"]

# Inside the package so a wheel carries them; the checkout's top-level presets/ links here.
PRESET_DIR = Path(__file__).resolve().parents[1] / "presets" / "train"


@dataclass(frozen=True)
class ModelOptions:
    """The generator: an architecture name for ``vidsr.archs.create_arch`` and its keywords."""

    arch: str
    config: Mapping[str, Any] = field(default_factory=dict)
    init: str = ""  # weights to start from (a stage-one checkpoint); "" starts from scratch


@dataclass(frozen=True)
class DataOptions:
    """How training pairs are made."""

    hr_size: int = 128  # HR crop side; must be divisible by every scale
    scales: tuple[int, ...] = (4,)
    # How often each scale is drawn, relative (empty: all alike). A multi-scale MSE run
    # needs more x2 batches: the small x2 residuals give small gradients, which Adam's
    # shared second moment, set by the x3/x4 batches, turns into small x2 updates.
    scale_weights: tuple[float, ...] = ()
    batch_size: int = 16
    flip: bool = True
    rotate: bool = True  # 90-degree rotations
    frames_per_video: int = 32  # frames sampled evenly across each video file
    # Crops in runs of clip_frames from one image, each run panning by up to clip_motion HR
    # pixels a frame: the degradations' video round trip then codes each run as a clip, so
    # the codec sees motion it can predict (P-frames, skipped blocks) as in real footage,
    # not a cut at every frame. 1: unrelated crops, the whole batch one clip.
    clip_frames: int = 1
    clip_motion: int = 2
    # For networks that see windows of frames: the share of windows taken from video files
    # (consecutive real frames) rather than from images panned by up to clip_motion pixels.
    video_share: float = 0.5


@dataclass(frozen=True)
class DegradeOptions:
    """Degradations for real footage, applied between the HR crop and the network input."""

    enabled: bool = False
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    resize_kernels: tuple[ResizeKernel, ...] = ("bicubic", "bilinear", "area")
    noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 15.0)  # in 0..255 code values
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    video_prob: float = 0.3
    video_codecs: tuple[VideoCodec, ...] = ("h264", "mpeg2video")
    video_crf: tuple[int, int] = (18, 35)  # h264 CRF; MPEG-2 gets the matching qscale


@dataclass(frozen=True)
class LossOptions:
    """Weighted sum of a pixel loss, an optional perceptual loss and an optional RaGAN loss."""

    pixel: PixelLoss = "l1"
    pixel_weight: float = 1.0
    charbonnier_eps: float = 1e-3
    perceptual_weight: float = 0.0
    # The perceptual loss's feature network: VGG19 (ESRGAN's) or a GAN-trained RRDB
    # teacher's first layers (vidsr.train.losses.TeacherFeatures), for want of VGG19 weights.
    perceptual_net: Literal["vgg19", "teacher"] = "vgg19"
    vgg_weights: str = ""  # local VGG19 weights (torchvision layout) for the perceptual loss
    vgg_layers: Mapping[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    # The RRDB teacher for perceptual_net "teacher": a weights file or a model name.
    teacher_weights: str = ""
    teacher_layers: Mapping[str, float] = field(
        default_factory=lambda: {"conv_first": 0.5, "body.0.rdb1": 1.0})
    gan_weight: float = 0.0
    disc_feat: int = 64


@dataclass(frozen=True)
class OptimOptions:
    """Optimiser and learning-rate schedule (generator, and discriminator when GAN is on)."""

    kind: OptimizerKind = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: Schedule = "multistep"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    min_lr: float = 0.0  # cosine only
    grad_clip: float = 0.0  # max global gradient norm; 0 disables
    disc_lr: float = 1e-4


@dataclass(frozen=True)
class RunOptions:
    """Length of the run, precision and bookkeeping intervals."""

    total_steps: int = 1000
    seed: int = 0
    ema_decay: float = 0.999  # 0 disables the EMA
    precision: Precision = "fp32"
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    log_every: int = 100
    val_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    progress: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, validated."""

    model: ModelOptions
    data: DataOptions = field(default_factory=DataOptions)
    degrade: DegradeOptions = field(default_factory=DegradeOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    train: RunOptions = field(default_factory=RunOptions)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A plain, TOML/JSON-friendly copy (for the run directory and model cards)."""
        return plain_data(self)


_SECTIONS: dict[str, type] = {
    "model": ModelOptions,
    "data": DataOptions,
    "degrade": DegradeOptions,
    "loss": LossOptions,
    "optim": OptimOptions,
    "train": RunOptions,
}


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a type hint, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(c) for c in typing.get_args(hint))
            raise OptionsError(f"{where}: expected one of {choices}, found {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise OptionsError(f"{where}: expected a list, found {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise OptionsError(f"{where}: expected {len(args)} values, found {len(value)}")
        return tuple(_coerce(f"{where}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args,
                                                                                    strict=True)))
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise OptionsError(f"{where}: expected a table, found {value!r}")
        args = typing.get_args(hint)
        if args and args[1] is not Any:
            return types.MappingProxyType(
                {k: _coerce(f"{where}.{k}", v, args[1]) for k, v in value.items()})
        return types.MappingProxyType(dict(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionsError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionsError(f"{where}: expected an integer, found {value!r}")
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise OptionsError(f"{where}: expected a {hint.__name__}, found {value!r}")
        return value
    raise AssertionError(f"no coercion for {hint!r} at {where}")


def _build(section: str, cls: type, table: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise OptionsError(
            f"[{section}]: unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(names)}")
    values = {k: _coerce(f"{section}.{k}", v, hints[k]) for k, v in table.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        raise OptionsError(f"[{section}]: {exc}") from None


def _validate(cfg: TrainConfig) -> None:
    d, o, r, loss = cfg.data, cfg.optim, cfg.train, cfg.loss
    if not d.scales or any(s < 1 for s in d.scales):
        raise OptionsError(f"data.scales: expected scales >= 1, found {list(d.scales)}")
    if d.scale_weights and (len(d.scale_weights) != len(d.scales)
                            or min(d.scale_weights) < 0 or sum(d.scale_weights) <= 0):
        raise OptionsError(
            f"data.scale_weights: expected one weight >= 0 per scale {list(d.scales)}, "
            f"found {list(d.scale_weights)}")
    if d.clip_frames < 1 or d.batch_size % d.clip_frames or d.clip_motion < 0:
        raise OptionsError(
            f"data.clip_frames must be >= 1 and divide data.batch_size {d.batch_size}, and"
            f" data.clip_motion >= 0; found {d.clip_frames}, {d.clip_motion}")
    if not 0 <= d.video_share <= 1:
        raise OptionsError(f"data.video_share must be in [0, 1], found {d.video_share}")
    bad = [s for s in d.scales if d.hr_size % s]
    if bad:
        raise OptionsError(
            f"data.hr_size {d.hr_size} is not divisible by scale(s) {bad}; pick a common multiple")
    if d.batch_size < 1 or d.hr_size < 4:
        raise OptionsError("data.batch_size must be >= 1 and data.hr_size >= 4")
    if o.lr <= 0 or not 0 < o.gamma <= 1:
        raise OptionsError(
            f"optim.lr must be > 0 and optim.gamma in (0, 1]; found {o.lr}, {o.gamma}")
    if list(o.milestones) != sorted(o.milestones):
        raise OptionsError(f"optim.milestones must increase, found {list(o.milestones)}")
    if r.total_steps < 1 or min(r.log_every, r.val_every, r.checkpoint_every) < 1:
        raise OptionsError("train.total_steps and the *_every intervals must be >= 1")
    if not 0 <= r.ema_decay < 1:
        raise OptionsError(f"train.ema_decay must be in [0, 1), found {r.ema_decay}")
    if loss.perceptual_net not in ("vgg19", "teacher"):
        raise OptionsError(f"loss.perceptual_net must be vgg19 or teacher, found"
                           f" {loss.perceptual_net!r}")
    if loss.perceptual_weight > 0 and loss.perceptual_net == "vgg19" and not loss.vgg_weights:
        raise OptionsError(
            "loss.perceptual_weight > 0 needs loss.vgg_weights: a local VGG19 weights file "
            "(torchvision layout, .pth or .safetensors); vidsr never downloads weights"
            " (or perceptual_net = \"teacher\" with loss.teacher_weights)")
    if loss.perceptual_weight > 0 and loss.perceptual_net == "teacher" and not loss.teacher_weights:
        raise OptionsError("loss.perceptual_net = \"teacher\" needs loss.teacher_weights: the"
                           " RRDB teacher's weights file")
    if loss.gan_weight > 0 and d.hr_size % 32:
        raise OptionsError(
            f"the discriminator needs data.hr_size divisible by 32, found {d.hr_size}")
    for lo, hi, name in ((*cfg.degrade.blur_sigma, "blur_sigma"),
                         (*cfg.degrade.noise_sigma, "noise_sigma"),
                         (*cfg.degrade.jpeg_quality, "jpeg_quality"),
                         (*cfg.degrade.video_crf, "video_crf")):
        if lo > hi:
            raise OptionsError(f"degrade.{name}: low {lo} is above high {hi}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 1e-4)``: the value as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise OptionsError(f"override {text!r}: expected SECTION.KEY=VALUE, e.g. optim.lr=1e-4")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(table: Mapping[str, Any],
                    overrides: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """A copy of a parsed preset with dotted-key overrides applied."""
    items = (overrides.items() if isinstance(overrides, Mapping)
             else (parse_override(o) for o in overrides))
    result: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in table.items()}
    for key, value in items:
        section, _, rest = key.partition(".")
        if section not in _SECTIONS:
            raise OptionsError(f"override {key!r}: unknown section; valid: {', '.join(_SECTIONS)}")
        target = result.setdefault(section, {})
        *parents, leaf = rest.split(".")
        for p in parents:  # e.g. model.config.num_feat
            target = target.setdefault(p, {})
        target[leaf] = value
    return result


def config_from_dict(table: Mapping[str, Any], name: str = "") -> TrainConfig:
    """Validate a parsed preset and build the configuration."""
    unknown = sorted(set(table) - set(_SECTIONS) - {"name"})
    if unknown:
        raise OptionsError(f"preset: unknown table(s) {', '.join(unknown)}; "
                           f"valid tables are {', '.join(_SECTIONS)}")
    if "model" not in table:
        raise OptionsError("preset: a [model] table with at least arch = \"...\" is required")
    parts = {s: _build(s, cls, table.get(s, {})) for s, cls in _SECTIONS.items()}
    cfg = TrainConfig(**parts, name=str(table.get("name", name)))
    _validate(cfg)
    return cfg


def resolve_preset(preset: str | Path) -> Path:
    """A preset path, or the name of a bundled preset (``esrgan-psnr``)."""
    path = Path(preset)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise OptionsError(f"preset file {path} does not exist")
        return path
    bundled = PRESET_DIR / f"{preset}.toml"
    if not bundled.is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
        raise OptionsError(f"unknown training preset {preset!r}; bundled: {', '.join(names)}")
    return bundled


def load_config(preset: str | Path,
                overrides: Mapping[str, Any] | Iterable[str] = ()) -> TrainConfig:
    """Read a preset (name or path), apply overrides and validate."""
    path = resolve_preset(preset)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise OptionsError(f"preset {path}: not valid TOML ({exc})") from None
    return config_from_dict(apply_overrides(table, overrides), name=path.stem)
