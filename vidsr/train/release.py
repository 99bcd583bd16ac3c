"""Turn a training run into shipped weights: a small safetensors file and its model card.

The weights are those of the newest checkpoint (its EMA by default), not the
checkpoint that scored best on the validation set: picking by Set5 would make
the card's Set5 figures optimistic. The card is measured here, with ``vidsr eval``'s
protocol, against the bicubic baseline on the same images.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidsr.archs import load_arch_from_state_dict
from vidsr.archs.reference import BicubicUpscaler
from vidsr.errors import InputError
from vidsr.models.weights_file import read_state_dict, save_state_dict
from vidsr.plan.devices import torch_threads
from vidsr.plan.machine import this_machine
from vidsr.train.checkpoints import latest_checkpoint, weights_metadata
from vidsr.train.teacher_cache import TEACHER_CACHE_NOTE

log = logging.getLogger("vidsr")


@dataclass(frozen=True)
class Scores:
    """Mean PSNR (dB) / SSIM of the model and of bicubic at one scale."""

    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float


@dataclass(frozen=True)
class Release:
    """What ``release_run`` wrote and measured."""

    weights: Path
    card: Path
    step: int
    scores: Mapping[int, Scores]  # per scale the network produces
    frame_s: float  # seconds per 352x288 frame at the largest scale, one thread, fp32


def seconds_per_frame(model: nn.Module, width: int = 352, height: int = 288,
                      repeats: int = 2) -> float:
    """Forward time of one RGB/Y frame (one thread, fp32, after a warm-up run)."""
    with torch_threads(1), torch.inference_mode():
        x = torch.rand(1, model.spec.channels, height, width)
        if model.spec.pre_upsampled:
            scale = max(model.spec.scales)
            x = torch.rand(1, model.spec.channels, height * scale, width * scale)
        model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        return (time.perf_counter() - start) / repeats


def _evaluate(module: nn.Module, folder: Path, scale: int) -> tuple[float, float]:
    from vidsr.imaging.scoring import evaluate_folder
    from vidsr.models.zoo import SRModel

    report = evaluate_folder(SRModel.from_module(module, scale), folder, scale)
    return report.mean_psnr, report.mean_ssim


@dataclass(frozen=True)
class Stage:
    """One training run that led to the released weights."""

    run_dir: Path
    config: dict
    step: int
    wall_s: float


def _stage(run_dir: Path, step: int) -> Stage:
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    wall = 0.0
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec["step"] <= step:
                wall = max(wall, rec.get("wall_s", rec.get("elapsed_s", 0.0)))
    note = run_dir / TEACHER_CACHE_NOTE
    if note.is_file():  # trained on a teacher's cached outputs
        config["teacher_cache"] = json.loads(note.read_text(encoding="utf-8"))
    return Stage(run_dir, config, step, wall)


def training_stages(run_dir: Path, step: int) -> list[Stage]:
    """The run and, through ``model.init`` pointing into another run's checkpoints
    (``RUN/checkpoints/<step>/params*.safetensors``), the runs before it; oldest first."""
    stages = [_stage(run_dir, step)]
    while True:
        init = Path(stages[0].config["model"].get("init") or ".")
        ckpt = init.parent
        earlier = ckpt.parent.parent
        if not (ckpt.name.isdigit() and ckpt.parent.name == "checkpoints"
                and (earlier / "config.json").exists()) or len(stages) > 8:
            return stages
        stages.insert(0, _stage(earlier, int(ckpt.name)))


def release_run(run_dir: Path, weights_dir: Path, name: str, *, eval_folder: Path,
                data_note: str, hardware_note: str = "", notes: str = "",
                use_ema: bool = True, half: bool = False) -> Release:
    """Write ``<name>.safetensors`` and ``<name>.md`` into ``weights_dir`` from a run.

    ``use_ema=False`` ships the raw parameters instead (early in a run, while
    the EMA still carries the random initialisation). ``half`` stores them in fp16 (half
    the size; they load into fp32 networks), and the card's figures are those of the
    fp16 weights.
    """
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise InputError(f"{run_dir} has no checkpoint to release yet")
    source = ckpt / "params_ema.safetensors"
    if not use_ema or not source.exists():
        source = ckpt / "params.safetensors"
    sd = read_state_dict(source)
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    module = load_arch_from_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}).eval()
    spec = module.spec
    step = int(ckpt.name)
    stages = training_stages(run_dir, step)
    config = stages[-1].config
    scores: dict[int, Scores] = {}
    for scale in sorted(spec.scales):
        model_fig = _evaluate(module, eval_folder, scale)
        bicubic_fig = _evaluate(BicubicUpscaler(scale=scale).eval(), eval_folder, scale)
        scores[scale] = Scores(*model_fig, *bicubic_fig)
        log.info("%s x%d: %.2f dB (bicubic %.2f)", name, scale, model_fig[0], bicubic_fig[0])
    frame_s = seconds_per_frame(module)
    weights_dir.mkdir(parents=True, exist_ok=True)
    weights = weights_dir / f"{name}.safetensors"
    figures = {eval_folder.name: {f"x{k}": [round(v.psnr, 4), round(v.ssim, 5)]
                                  for k, v in scores.items()}}
    save_state_dict(weights, sd, weights_metadata(spec, str(config.get("name", "")), step,
                                                  eval=json.dumps(figures)))
    params = sum(t.numel() for t in sd.values())
    card = weights_dir / f"{name}.md"
    hardware = hardware_note or this_machine().describe_cpu()
    card.write_text(_card_text(name, spec, params, stages, data_note, hardware, eval_folder,
                               scores, frame_s, notes, source.stem == "params_ema"),
                    encoding="utf-8")
    return Release(weights, card, step, scores, frame_s)


def _describe_recipe(config: dict) -> tuple[str, str]:
    """(loss, optimiser) of a run's configuration, in words."""
    o, loss, t = config["optim"], config["loss"], config["train"]
    schedule = (f"cosine {o['lr']:g} -> {o['min_lr']:g} over {t['total_steps']} steps"
                if o["schedule"] == "cosine" else
                f"{o['lr']:g}, x{o['gamma']:g} at {o['milestones']}")
    loss_text = (f"{loss['pixel']} (weight {loss['pixel_weight']:g})"
                 + (f", perceptual {loss['perceptual_weight']:g} ({_feature_net(loss)})"
                    if loss["perceptual_weight"] else "")
                 + (f", RaGAN {loss['gan_weight']:g}" if loss["gan_weight"] else ""))
    optimiser = (f"{o['kind']} betas {o['betas']}, lr {schedule}"
                 + (f", grad clip {o['grad_clip']:g}" if o["grad_clip"] else ""))
    return loss_text, optimiser


def _feature_net(loss: Mapping[str, Any]) -> str:
    """The perceptual loss's feature network and layers, in words."""
    if loss.get("perceptual_net", "vgg19") == "teacher":
        layers = loss["teacher_layers"]
        name = Path(str(loss["teacher_weights"])).name
        return (f"features of the teacher {name}: "
                + ", ".join(f"{k} x{v:g}" for k, v in layers.items()))
    return "VGG19 " + ", ".join(f"{k} x{v:g}" for k, v in loss["vgg_layers"].items())


def _describe_scale_draw(data: Mapping[str, object]) -> str:
    """How a multi-scale run drew each batch's scale, when not uniformly."""
    weights = data.get("scale_weights") or ()
    if not weights:
        return ""
    total = sum(weights)
    shares = ", ".join(f"x{s} {100 * w / total:.0f} %" for s, w in
                       zip(data["scales"], weights, strict=True))
    return f", one scale per batch ({shares})"


def _describe_batches(config: dict) -> str:
    """What a run's batches held, in words."""
    d = config["data"]
    cache = config.get("teacher_cache")
    if cache is None:
        return (f"{d['batch_size']} HR crops of {d['hr_size']}x{d['hr_size']}, flips + 90-degree"
                f" rotations{_describe_scale_draw(d)}, LR {_describe_lr(config)}")
    side = cache["core"] + 2 * cache["margin"]
    # The cache's LR was made by the degradation of the preset it was built with.
    cache_lr = {**config, "degrade": cache["degrade"], "train": {"seed": cache["seed"]}}
    scale, teacher_scale = d["scales"][0], cache["scale"]
    target = (f"the teacher's x{teacher_scale} output on the centre" if scale == teacher_scale
              else f"the teacher's x{teacher_scale} output on the centre downscaled to x{scale}"
                   " with vidsr's antialiased bicubic")
    return (f"{d['batch_size']} pairs drawn from a teacher cache of {cache['shards']:,} shards of"
            f" {cache['shard_size']} ({cache['shards'] * cache['shard_size']:,} pairs;"
            " `vidsr.train.teacher_cache`), flips + 90-degree rotations: LR crops of"
            f" {side}x{side} ({cache['core']}x{cache['core']} and {cache['margin']} px of"
            f" context a side), made {_describe_lr(cache_lr)}"
            f"; target: {target} (teacher {cache['teacher']}, run in {cache['precision']} on"
            f" {cache.get('runtime', 'torch')})")


def _describe_lr(config: dict) -> str:
    """How a run made its LR inputs, in words: the papers' bicubic, or the degradations."""
    g = config.get("degrade", {})
    if not g.get("enabled"):
        return "by MATLAB-style bicubic (as `vidsr eval`)"

    def span(pair: list[float]) -> str:
        return f"{pair[0]:g}-{pair[1]:g}"

    codecs = "/".join("H.264" if c == "h264" else "MPEG-2" for c in g["video_codecs"])
    frames = config.get("data", {}).get("clip_frames", 1)
    coded = ("of the batch as a clip" if frames <= 1 else
             f"of each run of {frames} crops panning across one image (up to"
             f" {config['data'].get('clip_motion', 2)} HR px a frame) as a clip, one blur,"
             " noise level and CRF per run")
    return ("by the degradation pipeline (`vidsr.train.degrade`), every draw from the run's"
            f" seeded generator (seed {config['train'].get('seed', 0)}): Gaussian blur"
            f" (p {g['blur_prob']:g}, sigma {span(g['blur_sigma'])} HR px), a"
            f" {'/'.join(g['resize_kernels'])} downscale, Gaussian noise (p {g['noise_prob']:g},"
            f" sigma {span(g['noise_sigma'])} code values), JPEG (p {g['jpeg_prob']:g},"
            f" quality {span(g['jpeg_quality'])}), and an {codecs} round trip {coded}"
            f" (p {g['video_prob']:g}, CRF {span(g['video_crf'])}"
            + ("; MPEG-2 at the quantiser of similar quality" if "mpeg2video" in g["video_codecs"]
               else "") + ")")


def _card_text(name: str, spec, params: int, stages: list[Stage], data_note: str,
               hardware: str, folder: Path, scores: Mapping[int, Scores], frame_s: float,
               notes: str, ema: bool) -> str:
    scale = max(scores)
    scale_text = ", ".join(f"x{k}" for k in sorted(scores))
    last = stages[-1]
    t = last.config["train"]
    loss_text, optimiser = _describe_recipe(last.config)
    presets = " then ".join(f"`{s.config.get('name', '')}`" for s in stages)
    total_steps = sum(s.step for s in stages)
    total_wall = sum(s.wall_s for s in stages)
    steps_text = (f"{last.step:,} of {t['total_steps']:,} planned" if len(stages) == 1 else
                  f"{total_steps:,} in {len(stages)} stages (below)")
    lines = [
        f"# {name}",
        "",
        f"Trained by vidsr itself (`vidsr.train`, preset {presets}).",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{spec.arch}` {json.dumps(dict(spec.config))} |",
        f"| parameters | {params:,} |",
        f"| scale, input | {scale_text}, {spec.input_space} in [0, 1]"
        + (" (bicubic-upscaled first)" if spec.pre_upsampled else "") + " |",
        f"| loss | {loss_text} |",
        f"| optimiser | {optimiser} |",
        f"| batches | {_describe_batches(last.config)} |",
        f"| EMA | decay {t['ema_decay']:g}; shipped: the "
        + ("EMA" if ema else "raw (not EMA)") + " weights of the newest checkpoint |",
        f"| steps | {steps_text} |",
        *([f"| starting weights | `{Path(stages[0].config['model']['init']).name}` |"]
          if stages[0].config["model"].get("init") else []),
        f"| data | {data_note} |",
        f"| hardware | {hardware} |",
        f"| wall time | {total_wall / 3600:.2f} h ({total_wall / 60:.0f} min) of training |",
        f"| speed | {frame_s:.2f} s per 352x288 frame (x{scale} out), one CPU thread, fp32 |",
        "",
    ]
    if len(stages) > 1:
        lines += ["## Training stages", "",
                  "| stage | preset | loss | optimiser | steps | wall time |",
                  "|---|---|---|---|---|---|"]
        for i, stage in enumerate(stages, 1):
            s_loss, s_opt = _describe_recipe(stage.config)
            lines.append(f"| {i} | `{stage.config.get('name', '')}` | {s_loss} | {s_opt} | "
                         f"{stage.step:,} | {stage.wall_s / 60:.0f} min |")
        lines.append("")
    lines += [
        f"## {folder.name} (Y of BT.601, border of `scale` pixels cropped; `vidsr eval`)",
        "",
        "| scale | bicubic PSNR / SSIM | this model PSNR / SSIM |",
        "|---|---|---|",
        *(f"| x{k} | {v.bicubic_psnr:.2f} / {v.bicubic_ssim:.4f} | {v.psnr:.2f} / {v.ssim:.4f} |"
          for k, v in sorted(scores.items())),
        "",
        f"{folder.name} was never trained on. "
        + (f"Checkpoints were not picked by their {folder.name} score: the figures are those"
           " of the shipped weights." if last.step >= t["total_steps"] else
           "The run was shipped before its planned end, at its newest checkpoint: when to"
           f" stop may have been decided by its {folder.name} validation, so read its figure"
           " as a validation figure, not a held-out one."),
    ]
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"
