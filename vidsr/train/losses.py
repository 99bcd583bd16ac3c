"""Losses as small functions: pixel (L1, MSE, Charbonnier), perceptual, RaGAN.

The perceptual loss follows ESRGAN: features are taken *before* the ReLU
(``conv5_4`` by default), which keeps brightness consistent and the features
dense. The VGG19 here is our own module with torchvision's parameter names
(``features.<index>.weight``), so a local copy of the ImageNet weights loads
into it directly; nothing is ever downloaded. Where no VGG19 weights are at hand, a
GAN-trained RRDB teacher's first layers serve as the feature network instead
(:class:`TeacherFeatures`): they were trained to see the textures the teacher makes.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidsr.errors import WeightsError
from vidsr.train.config import PixelLoss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return F.l1_loss(pred, target)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(pred, target)


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """sqrt((pred - target)^2 + eps^2), averaged: a smooth L1 (LapSRN, EDVR)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def pixel_loss(kind: PixelLoss, charbonnier_eps: float = 1e-3) -> LossFn:
    """The pixel loss named in a preset."""
    match kind:
        case "l1":
            return l1_loss
        case "mse":
            return mse_loss
        case "charbonnier":
            return lambda p, t: charbonnier_loss(p, t, charbonnier_eps)


# VGG19's convolution widths; "M" is a 2x2 max pool. Layer names are the paper's
# (conv<block>_<index>) and map to torchvision's ``features`` indices.
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names() -> dict[str, int]:
    """``{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 36}``: name to ``features`` index."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 1
    for item in _VGG19_LAYOUT:
        if item == "M":
            names[f"pool{block}"] = index
            index += 1
            block, conv = block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index, conv = index + 2, conv + 1
    return names


class VGG19Features(nn.Module):
    """VGG19's convolutional part, returning the outputs of chosen layers.

    Ask for ``conv*`` names to get features before activation (ESRGAN) or
    ``relu*`` names for after (SRGAN). Input is RGB in [0, 1]; ImageNet
    normalisation happens inside. Layers after the deepest one asked for are
    not built. Parameters are frozen.
    """

    def __init__(self, *, layers: tuple[str, ...] = ("conv5_4",)) -> None:
        super().__init__()
        names = vgg19_layer_names()
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; valid: {', '.join(names)}")
        self.layers = tuple(layers)
        self._index = {n: names[n] for n in layers}
        last = max(self._index.values())
        modules: list[nn.Module] = []
        in_ch = 3
        for item in _VGG19_LAYOUT:
            if len(modules) > last:
                break
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(item)
        self.features = nn.Sequential(*modules[:last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        wanted = {i: n for n, i in self._index.items()}
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


def load_vgg19_features(path: Path | str, layers: tuple[str, ...]) -> VGG19Features:
    """VGG19 features with ImageNet weights from a local file (torchvision's key layout).

    Accepts ``.safetensors`` or a ``.pth`` state dict (loaded with
    ``weights_only=True``); classifier weights in the file are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"VGG19 weights {path} not found; give a local copy of torchvision's "
                           "vgg19 ImageNet weights (vidsr does not download them)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise WeightsError(f"cannot read VGG19 weights {path}: {exc}") from exc
    model = VGG19Features(layers=layers)
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise WeightsError(f"{path} is not a torchvision-layout VGG19: missing {missing[:4]}")
    model.load_state_dict({k: sd[k] for k in wanted})
    return model


class TeacherFeatures(nn.Module):
    """The first layers of an RRDB super-resolution network (ESRGAN's generator, e.g.
    Real-ESRGAN x4plus) as a perceptual feature network, run on images at the output's size.

    Layers: ``conv_first``, ``body.N`` (the N-th RRDB's output) and ``body.N.rdbK`` (its
    K-th dense block's), before any activation as ESRGAN's VGG features are. Only the
    layers up to the deepest one asked for run. Parameters are frozen.
    """

    def __init__(self, network: nn.Module, layers: tuple[str, ...]) -> None:
        super().__init__()
        if getattr(network, "unshuffle", 1) != 1 or not hasattr(network, "body"):
            raise WeightsError("teacher features need an RRDB network that takes its input"
                               " at full size (x4, no pixel unshuffle)")
        blocks = len(network.body)
        valid = ["conv_first", *(f"body.{i}{part}" for i in range(blocks)
                                 for part in ("", ".rdb1", ".rdb2", ".rdb3"))]
        unknown = [n for n in layers if n not in valid]
        if unknown or not layers:
            raise ValueError(f"unknown teacher layer(s) {unknown}; valid: conv_first, body.N,"
                             f" body.N.rdb1..rdb3 (N < {blocks})")
        self.layers = tuple(layers)
        depth = max(valid.index(n) for n in layers)
        used = 0 if depth == 0 else (depth - 1) // 4 + 1  # RRDBs that must run
        self.conv_first = network.conv_first
        self.body = nn.ModuleList(list(network.body)[:used])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = set(self.layers)
        out: dict[str, torch.Tensor] = {}
        feat = self.conv_first(x)
        if "conv_first" in wanted:
            out["conv_first"] = feat
        for i, block in enumerate(self.body):
            h = feat
            for k in (1, 2, 3):
                h = getattr(block, f"rdb{k}")(h)
                if f"body.{i}.rdb{k}" in wanted:
                    out[f"body.{i}.rdb{k}"] = h
                if len(out) == len(wanted):
                    return out
            feat = h * 0.2 + feat  # RRDB's residual scaling
            if f"body.{i}" in wanted:
                out[f"body.{i}"] = feat
        return out


def load_teacher_features(name_or_path: str, layers: tuple[str, ...]) -> TeacherFeatures:
    """:class:`TeacherFeatures` of an RRDB network: a weights file (any format vidsr reads)
    or a model name (``realesrgan-x4plus``)."""
    from vidsr.models.zoo import load_model

    model = load_model(name_or_path)
    if model.spec.arch != "rrdb":
        raise WeightsError(f"{name_or_path}: teacher features need an RRDB network, this is"
                           f" {model.spec.arch}")
    return TeacherFeatures(model.module, layers)


def perceptual_loss(vgg: nn.Module, pred: torch.Tensor, target: torch.Tensor,
                    layer_weights: Mapping[str, float],
                    criterion: LossFn = l1_loss) -> torch.Tensor:
    """Weighted distance between the features (a network returning them by layer name:
    :class:`VGG19Features`, :class:`TeacherFeatures`) of ``pred`` and ``target``."""
    fp = vgg(pred)
    with torch.no_grad():
        ft = vgg(target)
    return sum((w * criterion(fp[n], ft[n]) for n, w in layer_weights.items()),
               start=pred.new_zeros(()))


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def ragan_generator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic average GAN loss for the generator (ESRGAN eq. 2).

    ``-E[log(1 - D_Ra(x_r, x_f))] - E[log(D_Ra(x_f, x_r))]``, each term
    averaged, the pair halved as in ESRGAN's code. ``real_logits`` should be
    detached by the caller: the generator does not train the discriminator.
    """
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return (_bce(real_rel, 0.0) + _bce(fake_rel, 1.0)) / 2


def ragan_discriminator_loss(real_logits: torch.Tensor,
                             fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic average GAN loss for the discriminator (ESRGAN eq. 1).

    ``-E[log(D_Ra(x_r, x_f))] - E[log(1 - D_Ra(x_f, x_r))]``, halved;
    ``fake_logits`` come from detached generator outputs.
    """
    real_rel = real_logits - fake_logits.mean()
    fake_rel = fake_logits - real_logits.mean()
    return (_bce(real_rel, 1.0) + _bce(fake_rel, 0.0)) / 2
