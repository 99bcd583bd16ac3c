"""The training loop: one generator (and, for GAN recipes, a discriminator), step by step.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON record per
logged step and per validation), ``progress.png`` (loss and validation PSNR),
``checkpoints/<step>/`` and ``best_ema.safetensors`` (the EMA weights with
the best validation PSNR). Checkpoints resume exactly: parameters, EMA,
optimiser moments and the step are saved, the learning rate and every batch
are functions of the step, so the numbers after a resume are bit-identical to
those of an uninterrupted run (same device, same thread count).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from vidsr.archs.spec import ArchSpec
from vidsr.engine.model_space import ModelSpace
from vidsr.errors import Cancelled, ModelError, OptionsError, with_article
from vidsr.plan.devices import resolve_device, torch_threads
from vidsr.train.checkpoints import (
    TrainingState,
    export_weights,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from vidsr.train.config import TrainConfig, load_config
from vidsr.train.data import Batch, PairSampler, collect_sources
from vidsr.train.discriminator import VGGStyleDiscriminator
from vidsr.train.losses import (
    load_teacher_features,
    load_vgg19_features,
    perceptual_loss,
    pixel_loss,
    ragan_discriminator_loss,
    ragan_generator_loss,
)
from vidsr.train.plot import write_progress_plot
from vidsr.train.schedule import learning_rate
from vidsr.train.teacher_cache import TEACHER_CACHE_NOTE, CachedPairs, is_teacher_cache
from vidsr.train.windows import WindowSampler, collect_window_sources

log = logging.getLogger("vidsr")


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    step: int
    checkpoint: Path | None
    best_psnr: float | None
    best_weights: Path | None


def init_weights_path(init: str) -> Path:
    """``model.init`` as a path: a file, else the name of a bundled weights file."""
    from vidsr.models.zoo import WEIGHTS_DIR

    path = Path(init)
    bundled = WEIGHTS_DIR / init
    return bundled if not path.exists() and bundled.is_file() else path


def build_generator(cfg: TrainConfig) -> nn.Module:
    """The generator named by the preset, fresh or from ``model.init`` weights."""
    from vidsr.archs import ARCHITECTURES, create_arch, load_arch_from_state_dict
    from vidsr.models.weights_file import read_state_dict

    if cfg.model.init:
        model = load_arch_from_state_dict(read_state_dict(init_weights_path(cfg.model.init)))
        differ = {k: (v, model.spec.config.get(k)) for k, v in cfg.model.config.items()
                  if model.spec.config.get(k) != v}
        if model.spec.arch == cfg.model.arch and not differ:
            return model.train()
        grow = ARCHITECTURES[cfg.model.arch].grow if cfg.model.arch in ARCHITECTURES else None
        if grow is not None:
            # A network grown from a trained one (a window network from a frame-wise one,
            # a wider compact from a narrower one) computes the same at step 0.
            try:
                return grow(model, dict(cfg.model.config)).train()
            except ModelError as exc:
                why = f" ({exc})"
        else:
            why = ""
        if model.spec.arch != cfg.model.arch:
            raise OptionsError(f"model.init {cfg.model.init} holds"
                               f" {with_article(model.spec.arch)}, the preset trains"
                               f" {with_article(cfg.model.arch)}{why}")
        raise OptionsError(f"model.init {cfg.model.init} does not match model.config: "
                           + ", ".join(f"{k} = {a!r} in the preset, {b!r} in the weights"
                                       for k, (a, b) in differ.items()) + why)
    return create_arch(cfg.model.arch, **cfg.model.config).train()


def make_optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter], lr: float
                   ) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=o.betas, weight_decay=o.weight_decay)


def new_state(cfg: TrainConfig, generator: nn.Module, device: torch.device) -> TrainingState:
    # channels_last, as inference runs: on a CPU, NCHW convolutions (WDSR's wide 1x1s
    # above all) train several times slower
    generator = generator.to(device, memory_format=torch.channels_last).train()
    ema = None
    if cfg.train.ema_decay > 0:
        ema = copy.deepcopy(generator).eval().requires_grad_(False)
    disc = disc_opt = None
    if cfg.loss.gan_weight > 0:
        disc = VGGStyleDiscriminator(num_in_ch=3, num_feat=cfg.loss.disc_feat,
                                     input_size=cfg.data.hr_size).to(device).train()
        disc_opt = make_optimizer(cfg, disc.parameters(), cfg.optim.disc_lr)
    scaler = None
    if cfg.train.precision == "fp16":
        if device.type != "cuda":
            raise OptionsError("train.precision = 'fp16' needs CUDA; use 'bf16' on CPU")
        scaler = torch.amp.GradScaler("cuda")
    return TrainingState(generator, ema, make_optimizer(cfg, generator.parameters(), cfg.optim.lr),
                         disc, disc_opt, scaler)


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    match cfg.train.precision:
        case "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        case "fp16":
            return torch.autocast(device.type, dtype=torch.float16)
        case _:
            return contextlib.nullcontext()


def to_model_space(batch: Batch, spec: ArchSpec, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input and target for a batch, as the architecture's spec asks.

    Luma models get BT.601 studio-swing Y scaled to [0, 1] (as the papers
    train them); pre-upsampling models get the LR bicubic-upscaled to HR size.
    """
    space = ModelSpace.of(spec, batch.scale)
    hr = space.from_rgb(batch.hr)
    h, w = batch.lr.shape[-2:]
    lr = space.pre_upsample(space.from_rgb(batch.lr), size=(h * batch.scale, w * batch.scale))
    # Windows (N, T, C, h, w) have no channels_last layout; the network lays out its fusion.
    lr_format = torch.channels_last if lr.ndim == 4 else torch.contiguous_format
    return (lr.to(device, memory_format=lr_format),
            hr.to(device, memory_format=torch.channels_last))


def ema_decay_at(decay: float, step: int) -> float:
    """The EMA decay for a step, warmed up as ``(1 + step) / (10 + step)`` until it reaches
    ``decay``: with a fixed 0.999 the average still weighs the random initial network by
    0.999 ** 1000 = 37 % after a thousand steps, and early validation figures mislead."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``params_ema = decay * params_ema + (1 - decay) * params``; buffers are copied."""
    ema_p = list(ema.parameters())
    torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - decay)
    for eb, b in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(b)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _backward_step(state: TrainingState, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   params: Sequence[nn.Parameter], clip: float) -> float | None:
    optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(optimizer)
    else:
        loss.backward()
    norm = None
    if clip > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if state.scaler is not None:
        state.scaler.step(optimizer)
        state.scaler.update()
    else:
        optimizer.step()
    return norm


class StepLosses:
    """The loss terms of a configuration, built once (VGG weights are loaded here)."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.pixel = pixel_loss(cfg.loss.pixel, cfg.loss.charbonnier_eps)
        self.features: nn.Module | None = None
        self.feature_layers: Mapping[str, float] = {}
        if cfg.loss.perceptual_weight > 0 and cfg.loss.perceptual_net == "teacher":
            self.feature_layers = cfg.loss.teacher_layers
            self.features = load_teacher_features(
                cfg.loss.teacher_weights, tuple(self.feature_layers)).to(device)
        elif cfg.loss.perceptual_weight > 0:
            self.feature_layers = cfg.loss.vgg_layers
            self.features = load_vgg19_features(cfg.loss.vgg_weights,
                                                tuple(self.feature_layers)).to(device)

    def generator_terms(self, sr: torch.Tensor, hr: torch.Tensor,
                        disc: nn.Module | None) -> dict[str, torch.Tensor]:
        c = self.cfg.loss
        terms = {"pixel": c.pixel_weight * self.pixel(sr, hr)}
        if self.features is not None:
            terms["perceptual"] = c.perceptual_weight * perceptual_loss(
                self.features, sr, hr, self.feature_layers)
        if disc is not None:
            real = disc(hr).detach()
            terms["gan"] = c.gan_weight * ragan_generator_loss(real, disc(sr))
        return terms


def train_step(state: TrainingState, batch: Batch, cfg: TrainConfig, losses: StepLosses,
               device: torch.device) -> dict[str, float]:
    """One optimisation step of the generator (and the discriminator); returns the numbers."""
    spec = state.generator.spec
    lr_in, target = to_model_space(batch, spec, device)
    rate = learning_rate(cfg.optim, state.step, cfg.train.total_steps)
    set_lr(state.optimizer, rate)
    disc = state.discriminator
    if disc is not None:
        disc.requires_grad_(False)
    with autocast(cfg, device):
        sr = state.generator(lr_in)
        if batch.margin:  # the target covers the centre; the margins were context
            edge = batch.margin * batch.scale
            sr = sr[..., edge:-edge, edge:-edge]
        terms = losses.generator_terms(sr.float(), target, disc)
    loss = sum(terms.values(), start=torch.zeros((), device=device))
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {float(loss)} at step {state.step}; "
                                 "lower optim.lr or enable optim.grad_clip")
    norm = _backward_step(state, state.optimizer, loss, list(state.generator.parameters()),
                          cfg.optim.grad_clip)
    record = {"loss": loss.item(), "lr": rate,
              **{f"loss_{k}": v.item() for k, v in terms.items()}}
    if norm is not None:
        record["grad_norm"] = norm
    if disc is not None and state.disc_optimizer is not None:
        disc.requires_grad_(True)
        set_lr(state.disc_optimizer, learning_rate(cfg.optim, state.step, cfg.train.total_steps,
                                                   base=cfg.optim.disc_lr))
        with autocast(cfg, device):
            d_loss = ragan_discriminator_loss(disc(target).float(), disc(sr.detach()).float())
        _backward_step(state, state.disc_optimizer, d_loss, list(disc.parameters()), 0.0)
        record["loss_disc"] = d_loss.item()
    if state.params_ema is not None:
        update_ema(state.params_ema, state.generator, ema_decay_at(cfg.train.ema_decay,
                                                                   state.step))
    state.step += 1
    return record


def validate(model: nn.Module, folder: Path, scales: Sequence[int]) -> dict[str, float]:
    """Y-channel PSNR/SSIM on a folder of HR images (``vidsr eval``'s protocol), per scale."""
    from vidsr.imaging.scoring import evaluate_folder
    from vidsr.models.zoo import SRModel

    # A copy in eval mode: the training module stays in train mode.
    module = copy.deepcopy(model).eval()
    device = next(module.parameters()).device.type
    result: dict[str, float] = {}
    for scale in scales:
        report = evaluate_folder(SRModel.from_module(module, scale), folder,
                                 scale, device=device)
        result[f"val_psnr_x{scale}"] = report.mean_psnr
        result[f"val_ssim_x{scale}"] = report.mean_ssim
    return result


class MetricsLog:
    """``metrics.jsonl`` in the run directory, trimmed to the resumed step on resume."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec["step"] <= resume_step:
                        self.records.append(rec)
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def fit(cfg: TrainConfig, sampler: PairSampler | WindowSampler | CachedPairs, run_dir: Path, *,
        generator: nn.Module, val: Path | None = None, resume: bool = False,
        stop_at: int | None = None) -> TrainResult:
    """Train ``generator`` on ``sampler``'s batches into ``run_dir``.

    ``resume`` continues from the newest checkpoint in ``run_dir`` (an error if
    there is none). ``stop_at`` ends the run early at that step, with a
    checkpoint, as an interruption would (tests use it).
    """
    device = resolve_device(cfg.train.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = new_state(cfg, generator, device)
    ckpt_root = run_dir / "checkpoints"
    if resume:
        ckpt = latest_checkpoint(ckpt_root)
        if ckpt is None:
            raise OptionsError(f"--resume: no checkpoint in {ckpt_root}; start without --resume")
        load_checkpoint(state, ckpt)
        log.info("resumed %s at step %d", run_dir, state.step)
    elif latest_checkpoint(ckpt_root) is not None:
        raise OptionsError(f"{run_dir} already holds checkpoints; pass resume or pick a new "
                           "output directory")
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    if isinstance(sampler, CachedPairs):  # the data the model card describes
        (run_dir / TEACHER_CACHE_NOTE).write_text(json.dumps(sampler.described, indent=1),
                                                  encoding="utf-8")
    metrics = MetricsLog(run_dir / "metrics.jsonl", state.step)
    if resume and state.wall_s == 0.0:  # a checkpoint from before wall time was saved
        state.wall_s = max((r.get("wall_s", r.get("elapsed_s", 0.0)) for r in metrics.records),
                           default=0.0)
    losses = StepLosses(cfg, device)
    scales = sorted(set(cfg.data.scales))
    best = max((r.get(f"val_psnr_x{scales[-1]}", -math.inf) for r in metrics.records),
               default=-math.inf)
    end = cfg.train.total_steps if stop_at is None else min(stop_at, cfg.train.total_steps)
    last_ckpt: Path | None = None
    window: list[dict[str, float]] = []
    bar = tqdm(total=end, initial=state.step, disable=not cfg.train.progress, unit="step",
               dynamic_ncols=True)
    session_start, wall_at_start = time.monotonic(), state.wall_s
    try:
        while state.step < end:
            record = train_step(state, sampler.batch(state.step), cfg, losses, device)
            window.append(record)
            state.wall_s = wall_at_start + time.monotonic() - session_start
            bar.update(1)
            step = state.step
            if step % cfg.train.log_every == 0 or step == end:
                mean = {k: sum(r[k] for r in window) / len(window) for k in window[-1]}
                metrics.append({"step": step, **mean, "wall_s": round(state.wall_s, 2)})
                bar.set_postfix(loss=f"{mean['loss']:.4g}", lr=f"{mean['lr']:.2g}")
                window = []
            # The checkpoint comes first: a failing validation must not cost training.
            if step % cfg.train.checkpoint_every == 0 or step == end:
                last_ckpt = save_checkpoint(state, ckpt_root, cfg)
                prune_checkpoints(ckpt_root, cfg.train.keep_checkpoints)
            if val is not None and (step % cfg.train.val_every == 0 or step == end):
                model = state.params_ema if state.params_ema is not None else state.generator
                scores = validate(model, val, scales)
                metrics.append({"step": step, **scores})
                log.info("step %d: %s", step, scores)
                if scores[f"val_psnr_x{scales[-1]}"] > best:
                    best = scores[f"val_psnr_x{scales[-1]}"]
                    export_weights(model, run_dir / "best_ema.safetensors", cfg, step, scores)
            if step % cfg.train.checkpoint_every == 0 or step == end:
                write_progress_plot(metrics.records, run_dir / "progress.png")
    except KeyboardInterrupt:
        # Ctrl-C (or a SIGTERM a launcher turns into one) keeps the work done so far.
        if last_ckpt is None or int(last_ckpt.name) != state.step:
            last_ckpt = save_checkpoint(state, ckpt_root, cfg)
        raise Cancelled(f"training interrupted at step {state.step}; checkpoint saved in "
                        f"{last_ckpt}, continue with resume") from None
    finally:
        bar.close()
    best_path = run_dir / "best_ema.safetensors"
    return TrainResult(run_dir, state.step, last_ckpt or latest_checkpoint(ckpt_root),
                       best if best > -math.inf else None,
                       best_path if best_path.exists() else None)


def teacher_cache_in(data: Path | Sequence[Path]) -> Path | None:
    """The teacher cache ``data`` names, if it names one (and nothing else)."""
    paths = [Path(data)] if isinstance(data, str | Path) else [Path(p) for p in data]
    caches = [p for p in paths if is_teacher_cache(p)]
    if caches and len(paths) > 1:
        raise OptionsError(f"train on a teacher cache ({caches[0]}) alone, not with other data")
    return caches[0] if caches else None


def run_training(preset: str | Path, data: Path | Sequence[Path], out: Path, *,
                 val: Path | None = None, resume: bool = False,
                 overrides: Mapping[str, Any] | Iterable[str] = ()) -> TrainResult:
    """Train a model from a preset (bundled name or TOML path) — the ``vidsr train`` command.

    ``data``: image folders and/or video files; ``out``: the run directory;
    ``val``: a folder of HR images for periodic Y-PSNR (e.g. Set5);
    ``resume``: continue the newest checkpoint in ``out``;
    ``overrides``: ``"section.key=value"`` strings or a mapping of dotted keys.
    """
    cfg = load_config(preset, overrides)
    if val is not None and not Path(val).is_dir():
        raise OptionsError(f"validation folder {val} does not exist")
    torch.manual_seed(cfg.train.seed)  # the generator's initial weights
    generator = build_generator(cfg)
    spec_scales = set(generator.spec.scales)
    if not set(cfg.data.scales) <= spec_scales:
        raise OptionsError(f"data.scales {list(cfg.data.scales)} do not fit the {cfg.model.arch} "
                           f"model, which produces x{sorted(spec_scales)}")
    sampler: PairSampler | WindowSampler | CachedPairs
    cache = teacher_cache_in(data)
    if cache is not None:
        sampler = CachedPairs(cache, cfg.data, seed=cfg.train.seed)
    elif generator.spec.window > 1:
        videos, images = collect_window_sources(data)
        sampler = WindowSampler(videos, images, cfg.data, window=generator.spec.window,
                                seed=cfg.train.seed, degrade=cfg.degrade)
    else:
        sampler = PairSampler(collect_sources(data, cfg.data.frames_per_video), cfg.data,
                              seed=cfg.train.seed, degrade=cfg.degrade)
    with torch_threads(cfg.train.threads):
        return fit(cfg, sampler, Path(out), generator=generator, val=val, resume=resume)
