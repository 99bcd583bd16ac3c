"""The ``vidsr`` command: argument parsing and messages only.

``vidsr IN OUT [options]`` upscales a video; ``vidsr models``, ``vidsr eval``
and the other subcommands are dispatched on the first word.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vidsr import options
from vidsr.errors import Cancelled, OptionsError, VidsrError, command_line_spelling

log = logging.getLogger("vidsr")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C; a stop signal exits 128 + its number, as shells report it

# Signals that stop a run as Ctrl-C does: `docker stop`, `timeout`, `kill` and job schedulers
# send SIGTERM; a closed terminal sends SIGHUP. (No SIGHUP on Windows.)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


def _argument_type(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """``read`` as argparse's ``type``: its OptionsError becomes argparse's usage error."""

    def argument(text: str) -> Any:
        try:
            return read(text)
        except OptionsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    argument.__name__ = read.__name__
    return argument


def _add_option(parser: argparse.ArgumentParser, option: options.Option,
                **changes: Any) -> None:
    """Add a declared option (:mod:`vidsr.options`); ``changes`` are argparse's keywords
    where one command differs (a default model, a required scale)."""
    flag = f"--{option.name}"
    if option.switch:
        action: Any = argparse.BooleanOptionalAction if option.negatable else "store_true"
        spec: dict[str, Any] = dict(action=action, default=option.default)
    else:
        spec = dict(default=option.default)
        if option.read is not None:
            spec["type"] = _argument_type(option.read)
        if option.choices:
            spec["choices"] = list(option.choices)
        if option.repeatable:
            spec["action"] = "append"
        if option.metavar:
            spec["metavar"] = option.metavar
    parser.add_argument(flag, **{"help": option.help, **spec, **changes})


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")


def _add_model_args(parser: argparse.ArgumentParser, *, default_model: str | None) -> None:
    for option in options.MODEL_OPTIONS:
        if option is options.MODEL:
            _add_option(parser, option, default=default_model,
                        required=default_model is None,
                        help=option.help + (f" (default: {default_model})"
                                            if default_model else ""))
        else:
            _add_option(parser, option)


def upscale_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr",
        description="Upscale a video with a super-resolution model. Audio, subtitles, chapters,"
        " metadata, timestamps, colour tags and aspect ratio are kept.",
        epilog="Other commands: vidsr models | eval | eval-video | compare | bench | export"
        " | train | interpolate | batch"
        " (vidsr COMMAND --help).",
    )
    p.add_argument("input", type=Path, help="source video")
    p.add_argument("output", type=Path, help="output video; the container follows the extension")
    _add_model_args(p, default_model="compact")
    _add_run_args(p)
    _add_file_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the run plan (every decision about the run) and write nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    _add_common(p)
    return p


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """What the run plan is resolved from, shared by `vidsr` and `vidsr bench` so that a
    benchmark measures exactly the command it is given."""
    p.add_argument("--preset", dest="run_preset", metavar="NAME|PATH",
                   help="a run preset: a bundled name (see `vidsr presets`) or a TOML file;"
                   " options given here override its values")
    p.set_defaults(takes_run_preset=True)
    for option in (*options.ENGINE_OPTIONS, *options.ENCODER_OPTIONS):
        _add_option(p, option)
    p.add_argument("--ffmpeg", nargs="?", const="ffmpeg", metavar="PATH",
                   help="encode with a system ffmpeg instead of the bundled one")
    for option in options.PICTURE_OPTIONS:
        _add_option(p, option)


def _add_file_args(p: argparse.ArgumentParser) -> None:
    """How a file is read and turned, for `vidsr` and `vidsr batch`."""
    for option in options.FILE_OPTIONS:
        _add_option(p, option)


def run_upscale(args: argparse.Namespace) -> int:
    from vidsr.run.transcode import RunControl, plan_upscale, upscale_video

    if args.json and not args.dry_run:
        raise OptionsError("--json goes with --dry-run (the plan as JSON)")
    arguments = options.upscale_arguments(vars(args), quiet=args.quiet, ffmpeg=args.ffmpeg)
    arguments["control"] = RunControl(overwrite=args.overwrite,
                                      progress=False if args.no_progress else None)
    if args.dry_run:
        plan = plan_upscale(args.input, args.output, **arguments)
        print(plan.to_json() if args.json else plan.to_text())
        return 0
    result = upscale_video(args.input, args.output, **arguments)
    if not args.quiet:
        print(f"vidsr: {result.summary()}", file=sys.stderr)
    return 0


def models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidsr models", description="List the models vidsr knows.")
    _add_common(p)
    return p


def run_models(args: argparse.Namespace) -> int:
    from vidsr.models.zoo import card_network, count_flops_per_pixel, model_cards

    rows = [("name", "arch", "scales", "params", "GFLOP/Mpx", "input", "weights")]
    for card in model_cards().values():
        scale = max(card.scales)
        module = card_network(card, scale)
        spec = module.spec
        params = sum(p.numel() for p in module.parameters())
        flops = count_flops_per_pixel(module, spec, scale)
        space = {"rgb": "RGB", "y": "luma", "planes": "planes"}[spec.input_space]
        if spec.pre_upsampled:
            space += " (pre-upscaled)"
        sources = sorted({s.describe() for s in card.weights.values()}) or ["none"]
        rows.append((
            card.name, card.arch, ",".join(f"x{s}" for s in card.scales),
            f"{params / 1e6:.2f}M" if params else "0", f"{flops / 1e3:.1f}" if flops else "0",
            space, "; ".join(sources),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\nGFLOP/Mpx: floating-point operations per megapixel of input at the largest scale.")
    print("\nUse a model from the command line or in a VapourSynth script"
          " (pip install 'vidsr[vapoursynth]'; README, \"VapourSynth\"):\n"
          "  vidsr IN OUT --model NAME --scale N\n"
          "  clip = vsvidsr.upscale(clip, model=\"NAME\", scale=N)")
    return 0


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr eval",
        description="PSNR/SSIM on an image folder with the papers' protocol (Y channel,"
        " MATLAB-style bicubic LR, border of `scale` pixels cropped).",
    )
    p.add_argument("folder", type=Path, help="folder of high-resolution images (e.g. Set5)")
    _add_model_args(p, default_model=None)
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8"], default="fp32",
                   help="network precision (default fp32, as the papers report; int8 needs"
                   " --runtime openvino)")
    p.add_argument("--runtime", choices=["torch", "openvino"], default="torch",
                   help="what runs the network (default: torch)")
    p.add_argument("--calibration", type=Path, metavar="CLIP_OR_FOLDER",
                   help="with int8: frames to calibrate on (never the images scored)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(p)
    return p


def run_eval(args: argparse.Namespace) -> int:
    from vidsr.commands.evaluate import run_eval as evaluate

    print(evaluate(args.model, args.folder, args.scale, weights=args.weights,
                   device=args.device, precision=args.precision, as_json=args.json,
                   allow_unsafe=args.allow_unsafe_weights, runtime=args.runtime,
                   calibration=args.calibration, strength=args.strength))
    return 0


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr export",
        description="Write a model's network as ONNX (opset 17, dynamic batch, height and"
        " width; input and output float32 in [0, 1]; a window model takes its frames stacked on"
        " the channel axis, oldest first) for ONNX Runtime, OpenVINO or TensorRT,"
        " and check it against torch on real frames.",
    )
    p.add_argument("model", help=options.MODEL.help)
    for option in (options.SCALE, options.WEIGHTS, options.ALLOW_UNSAFE_WEIGHTS, options.STRENGTH):
        _add_option(p, option)
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--no-verify", action="store_true",
                   help="skip running the exported file against torch")
    p.add_argument("--dynamo", action="store_true",
                   help="torch's dynamo exporter (opset 18, needs onnxscript) instead of the"
                   " TorchScript one")
    _add_common(p)
    return p


def run_export(args: argparse.Namespace) -> int:
    from vidsr.commands.export import export_model
    from vidsr.models.zoo import load_model

    model = load_model(args.model, scale=args.scale, weights=args.weights,
                       allow_unsafe=args.allow_unsafe_weights, strength=args.strength)
    report = export_model(model, args.output, verify=not args.no_verify, dynamo=args.dynamo)
    if not args.quiet:
        print(f"vidsr: {model.name} x{model.scale}: {report.to_text()}", file=sys.stderr)
    return 0


def _model_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected NAME[,NAME...], got {text!r}")
    return names


def _crop(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H in pixels, got {text!r}") from None
    return x, y, w, h


def _add_models_args(p: argparse.ArgumentParser) -> None:
    """The models of `vidsr compare` and `vidsr eval-video`, their scale and device."""
    p.add_argument("--models", type=_model_list, required=True,
                   help="comma-separated model names or weights files (e.g. bicubic,compact)")
    _add_option(p, options.SCALE, required=True, help="upscaling factor")
    _add_option(p, options.WEIGHTS, help="weights file for the models' architecture")
    for option in (options.ALLOW_UNSAFE_WEIGHTS, options.DEVICE):
        _add_option(p, option)


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr compare",
        description="One PNG with the same frame (or a crop) upscaled by each model side by"
        " side, labelled with the model, the engine's time per frame and, against a"
        " reference, PSNR/SSIM on Y.",
    )
    p.add_argument("input", type=Path, help="video or image file")
    _add_models_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--frame", type=int, help="frame number, from 0 (default: 0)")
    which.add_argument("--time", type=float, help="the frame shown at this many seconds")
    p.add_argument("--crop", type=_crop, metavar="X,Y,W,H",
                   help="show only this region, in the input's pixels")
    picture = {option.name: option for option in options.PICTURE_OPTIONS}
    _add_option(p, picture["deinterlace"], default="off",
                help="deinterlace the frame before the models, at frame rate, as vidsr"
                " would (default off: the frame as stored, as the reference is)")
    for name in ("deinterlacer", "field-order"):
        _add_option(p, picture[name])
    p.add_argument("--zoom", type=int, default=1,
                   help="enlarge the panels K times with nearest neighbours (default: 1)")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", type=Path,
                     help="high-resolution video or image to score each panel against")
    ref.add_argument("--self-test", action="store_true",
                     help="downscale the input first (bicubic, as vidsr eval) and score"
                     " against the input itself")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto",
                   help="network precision (default: the run plan's, as vidsr would run)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed runs per model after a warm-up; the label shows the median")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    _add_common(p)
    return p


def run_compare(args: argparse.Namespace) -> int:
    from vidsr.commands.compare import CompareOptions
    from vidsr.commands.compare import run_compare as compare

    options = CompareOptions(
        scale=args.scale, frame=args.frame, time=args.time, deinterlace=args.deinterlace,
        deinterlacer=args.deinterlacer, field_order=args.field_order, crop=args.crop,
        zoom=args.zoom, reference=args.reference, self_test=args.self_test, device=args.device,
        precision=args.precision, repeats=args.repeats,
    )
    panels = compare(args.input, args.models, options, args.output, weights=args.weights,
                     allow_unsafe=args.allow_unsafe_weights, overwrite=args.overwrite)
    if not args.quiet:
        for panel in panels:
            print(f"vidsr: {' | '.join(panel.caption())}", file=sys.stderr)
        print(f"vidsr: wrote {args.output}", file=sys.stderr)
    return 0


def eval_video_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr eval-video",
        description="Downscale a high-resolution clip, upscale it back with each model through"
        " the transcoder, and report per-frame and mean PSNR/SSIM on Y, flicker (mean change"
        " of the error between frames), and a PNG plot of PSNR per frame.",
    )
    p.add_argument("clip", type=Path, help="high-resolution video")
    _add_models_args(p)
    p.add_argument("--degrade", choices=["bicubic", "archival"], default="bicubic",
                   help="bicubic (as vidsr eval, default) or archival: blur, noise and an"
                   " MPEG-2/H.264 round trip, seeded")
    p.add_argument("--archival-codec", choices=["mpeg2", "h264"], default="mpeg2",
                   help="the archival degradation's codec (default: mpeg2)")
    p.add_argument("--seed", type=int, default=0, help="the archival degradation's seed")
    p.add_argument("--frames", type=int, help="only the first N frames")
    p.add_argument("--plot", type=Path,
                   help="PNG plot of PSNR per frame (default: CLIP's name + _psnr.png, here)")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="network precision (default fp32, as vidsr eval)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--keep-lr", type=Path, metavar="LR.nut",
                   help="also keep the LR clip the models got (lossless RGB), e.g. to show it"
                   " with `vidsr compare LR.nut --reference CLIP`")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing plot (and --keep-lr file)")
    _add_common(p)
    return p


def run_eval_video(args: argparse.Namespace) -> int:
    from vidsr.commands.eval_video import EvalVideoOptions
    from vidsr.commands.eval_video import run_eval_video as evaluate
    from vidsr.train.degrade_clip import ArchivalOptions

    options = EvalVideoOptions(
        scale=args.scale, degradation=args.degrade, frames=args.frames, device=args.device,
        precision=args.precision,
        archival=ArchivalOptions(seed=args.seed, codec="h264" if args.archival_codec == "h264"
                                 else "mpeg2video"),
    )
    plot = args.plot or Path(f"{args.clip.stem}_psnr.png")
    print(evaluate(args.clip, args.models, options, plot=plot, as_json=args.json,
                   weights=args.weights, allow_unsafe=args.allow_unsafe_weights,
                   overwrite=args.overwrite, keep_lr=args.keep_lr))
    if not args.quiet:
        print(f"vidsr: wrote {plot}", file=sys.stderr)
    return 0


def bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr bench",
        description="Throughput of a model over a clip: the run plan `vidsr` would use with"
        " the same arguments, then per-stage busy time, wall time, fps, overlap efficiency,"
        " the CPU floor, model-only fps and a plain serial loop, on this machine.",
    )
    p.add_argument("clip", type=Path, help="source clip")
    _add_model_args(p, default_model="espcn")
    p.add_argument("--random-init", action="store_true",
                   help="random weights of the model's architecture (speed only)")
    _add_run_args(p)
    _add_file_args(p)
    p.add_argument("--container", default="mkv",
                   help="extension of the outputs written (default: mkv)")
    p.add_argument("--frames", type=int, help="only the first N frames")
    p.add_argument("--crop", type=int, help="centre crop to N x N pixels")
    p.add_argument("--repeats", type=int, default=1, help="best of N runs")
    p.add_argument("--no-serial", action="store_true", help="skip the serial-loop baselines")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    _add_common(p)
    return p


def run_bench(args: argparse.Namespace) -> int:
    from vidsr.commands.bench import BenchOptions, runtime_comparison
    from vidsr.commands.bench import run_bench as bench

    if args.ffmpeg is not None:
        raise OptionsError("vidsr bench measures the in-process encoder; drop --ffmpeg")
    values = vars(args)
    measured = BenchOptions(model=args.model, scale=args.scale, weights=args.weights,
                            random_init=args.random_init, strength=args.strength,
                            allow_unsafe=args.allow_unsafe_weights, container=args.container,
                            frames=args.frames, crop=args.crop, repeats=args.repeats,
                            serial=not args.no_serial,
                            run=options.transcode_options(values))
    # Several runtimes: the same clip and arguments, one runtime after the other.
    reports = []
    for runtime in args.runtime:
        report = bench(args.clip, measured, options.engine_options(values, runtime),
                       options.encode_options(values, quiet=args.quiet))
        print(report.to_text(), flush=True)
        reports.append(report)
    if len(reports) > 1:
        print(runtime_comparison(reports))
    if args.json:
        args.json.write_text(reports[0].to_json() if len(reports) == 1 else
                             "[" + ",\n".join(r.to_json() for r in reports) + "]\n")
    return 0


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr train",
        description="Train a model from a recipe preset (presets/train/*.toml or a TOML file).",
    )
    p.add_argument("--preset", required=True,
                   help="recipe: esrgan-psnr, esrgan-gan, vdsr, espcn, edsr, wdsr, rednet, ..."
                   " or a TOML path")
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="image folder or video file to train on (repeatable)")
    p.add_argument("--val", type=Path, help="folder of HR images for periodic validation PSNR")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a preset value (repeatable)")
    _add_common(p)
    return p


def run_train(args: argparse.Namespace) -> int:
    from vidsr.train import run_training

    result = run_training(args.preset, args.data, args.out, val=args.val, resume=args.resume,
                          overrides=args.overrides)
    text = f"vidsr: {result.run_dir}: stopped at step {result.step}"
    if result.checkpoint is not None:
        text += f"; checkpoint {result.checkpoint}"
    if result.best_psnr is not None:
        text += f"; best validation {result.best_psnr:.2f} dB ({result.best_weights})"
    print(text, file=sys.stderr)
    return 0


def interpolate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr interpolate",
        description="Network interpolation (ESRGAN): blend two checkpoints of one architecture"
        " parameter by parameter, out = (1 - alpha) * A + alpha * B.",
    )
    p.add_argument("a", type=Path, help="first weights file (alpha 0)")
    p.add_argument("b", type=Path, help="second weights file (alpha 1)")
    p.add_argument("--alpha", type=float, required=True, help="weight of B, in [0, 1]")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .safetensors")
    _add_common(p)
    return p


def run_interpolate(args: argparse.Namespace) -> int:
    from vidsr.train import interpolate_checkpoints

    out = interpolate_checkpoints(args.a, args.b, args.alpha, args.output)
    print(f"vidsr: wrote {out}", file=sys.stderr)
    return 0


def batch_parser() -> argparse.ArgumentParser:
    from vidsr.commands.batch.segments import DEFAULT_SEGMENT_SECONDS

    p = argparse.ArgumentParser(
        prog="vidsr batch",
        description="Upscale every video of a folder (recursively), a manifest or one file"
        " into OUT_DIR, mirroring the source tree. A job file in OUT_DIR records each file,"
        " so the same command continues a stopped batch: done files are skipped, files whose"
        " options changed are redone.",
    )
    p.add_argument("src", type=Path, help="a folder, a video, or a manifest (.txt/.lst: one"
                   " path a line; .csv: a 'path' column and per-file columns among "
                   + ", ".join(_batch_columns()) + ")")
    p.add_argument("out_dir", type=Path, help="folder the outputs and the job file go into")
    _add_model_args(p, default_model="compact")
    _add_run_args(p)
    _add_file_args(p)
    p.add_argument("--container", default="mkv",
                   help="the outputs' extension, which picks the container (default: mkv)")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the files that failed in an earlier run")
    p.add_argument("--segment-seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
                   metavar="S",
                   help="run files longer than this in segments of about S seconds, cut at"
                   " keyframes, so that a stopped batch redoes only the segment it was in"
                   f" (default: {DEFAULT_SEGMENT_SECONDS:g}; 0: whole files)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where the files run: this process, or the actors of a Ray cluster"
                   " (pip install 'vidsr[ray]'; inputs and OUT_DIR on a path every node"
                   " sees)")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: the cluster (auto, HOST:PORT or"
                   " ray://HOST:PORT; default: a Ray started on this machine)")
    p.add_argument("--ray-actors", type=int, metavar="N",
                   help="with --engine ray: actors (default: one per GPU of the cluster, or"
                   " one CPU actor per node)")
    p.add_argument("--ray-actor-cpus", type=float, metavar="N",
                   help="with --engine ray: CPUs each CPU actor takes and plans for"
                   " (default: a node's CPUs shared among its actors)")
    p.add_argument("--report", type=Path,
                   help="JSON report, one row per file (default: OUT_DIR/vidsr-report.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs in OUT_DIR that this batch did not write")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_common(p)
    return p


def _batch_columns() -> tuple[str, ...]:
    from vidsr.commands.batch.sources import OVERRIDE_COLUMNS

    return OVERRIDE_COLUMNS


def run_batch_command(args: argparse.Namespace) -> int:
    from vidsr.commands.batch import BatchOptions, run_batch, write_report
    from vidsr.commands.batch.runner import manifest_runs

    # The batch decides overwriting and progress for every file itself.
    file_run = manifest_runs(vars(args), quiet=args.quiet, ffmpeg=args.ffmpeg)
    file_run({})  # the command's own options are checked before any file is touched
    ray = None
    if args.engine == "ray":
        from vidsr.commands.batch.ray_engine import RayOptions, import_ray

        import_ray()  # without Ray: one line, before any file is touched
        ray = RayOptions(address=args.address, actors=args.ray_actors,
                         actor_cpus=args.ray_actor_cpus)
    elif args.address or args.ray_actors or args.ray_actor_cpus:
        raise OptionsError("--address, --ray-actors and --ray-actor-cpus go with --engine ray")
    result = run_batch(args.src, args.out_dir, file_run, BatchOptions(
        container=args.container, retry_failed=args.retry_failed, overwrite=args.overwrite,
        progress=False if args.no_progress or args.quiet else None,
        segment_seconds=args.segment_seconds, ray=ray,
    ))
    report = write_report(result, args.report or args.out_dir / "vidsr-report.json")
    if not args.quiet:
        print(f"vidsr: batch: {result.summary_line()}\n{result.summary_table()}\n"
              f"  report     {report}", file=sys.stderr)
    return 0 if result.ok else EXIT_ERROR


def presets_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidsr presets",
        description="The run presets vidsr ships (vidsr/presets/*.toml) and their settings;"
        " use one with `vidsr IN OUT --preset NAME` or `vidsr batch ... --preset NAME`.",
    )
    _add_common(p)
    return p


def run_presets(args: argparse.Namespace) -> int:
    from vidsr.run_presets import bundled_presets

    for preset in bundled_presets():
        print(preset.to_text())
    return 0


Command = tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]
SUBCOMMANDS: dict[str, Command] = {
    "models": (models_parser, run_models),
    "eval": (eval_parser, run_eval),
    "export": (export_parser, run_export),
    "eval-video": (eval_video_parser, run_eval_video),
    "compare": (compare_parser, run_compare),
    "presets": (presets_parser, run_presets),
    "bench": (bench_parser, run_bench),
    "train": (train_parser, run_train),
    "interpolate": (interpolate_parser, run_interpolate),
    "batch": (batch_parser, run_batch_command),
}


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vidsr: %(levelname)s: %(message)s"))
    root = logging.getLogger("vidsr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if quiet:
        # SVT-AV1 prints its banner to stderr itself, and reads this when an encoder opens.
        os.environ.setdefault("SVT_LOG", "1")


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[list[int]]:
    """While the block runs, the stop signals raise KeyboardInterrupt in the main thread as
    Ctrl-C does, so a run stops and cleans up the same way; yields the signals received.

    The first interrupts; later ones are only recorded, so that they cannot cut short the
    cleanup the first started. A signal ignored when vidsr started (``nohup``) or handled
    by an application that calls :func:`main` is left alone; the block restores the
    handlers it replaced.
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    replaced = {}
    if threading.current_thread() is threading.main_thread():  # the only thread that may
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) == signal.SIG_DFL:
                replaced[signum] = signal.signal(signum, interrupt)
    try:
        yield received
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)


def _interrupted(received: list[int], kept: str = "no output written") -> int:
    """Say so, and what was kept; return the exit code: 128 + the signal's number (130 for
    Ctrl-C)."""
    by = f" by {signal.Signals(received[0]).name}" if received else ""
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        print(f"vidsr: interrupted{by}; {kept}", file=sys.stderr)
    return 128 + received[0] if received else EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vidsr`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        make_parser, run = SUBCOMMANDS[argv[0]]
        argv = argv[1:]
    else:
        make_parser, run = upscale_parser, run_upscale
    parser = make_parser()
    _apply_preset(parser, argv)
    args = parser.parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    with stop_signals_interrupt() as received, command_line_spelling():
        return _run_reporting(run, args, received)


def console_main() -> int:
    """The ``vidsr`` console script and ``python -m vidsr``: :func:`main` in a process that
    ends when it returns."""
    code = main()
    # The process ends next. At interpreter shutdown the collector's passes over the
    # objects torch creates took 0.4-0.5 s of every run (2-core AMD EPYC); frozen, their
    # memory is left to the OS like the rest.
    gc.freeze()
    return code


def _apply_preset(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Make a ``--preset``'s values the defaults of ``parser``, so that the options given
    in ``argv`` override them (a run command's parser only; others keep their own
    ``--preset``)."""
    if not parser.get_default("takes_run_preset"):
        return
    scan = argparse.ArgumentParser(add_help=False)
    scan.add_argument("--preset", dest="run_preset")
    named = scan.parse_known_args(argv)[0].run_preset
    if named is None:
        return
    from vidsr.run_presets import load_preset

    try:
        parser.set_defaults(**options.preset_values(load_preset(named)))
    except OptionsError as exc:
        parser.error(str(exc))


def _run_reporting(run: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                   received: list[int]) -> int:
    """``run(args)``, with every way it can end turned into one line and an exit code."""
    try:
        return run(args)
    except (Cancelled, KeyboardInterrupt):
        if run is run_batch_command:
            return _interrupted(received, "the files finished are kept; the same command"
                                          " continues the batch")
        return _interrupted(received)
    except VidsrError as exc:
        if args.debug:
            log.exception("failed")
        print(f"vidsr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, OptionsError) else EXIT_ERROR
    except OSError as exc:  # disk full, permissions: the system's words are the clearest
        if args.debug:
            log.exception("failed")
        print(f"vidsr: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        if args.debug:
            raise
        print(f"vidsr: error: internal error: {type(exc).__name__}: {exc}"
              " (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
