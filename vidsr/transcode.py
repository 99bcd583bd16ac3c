"""``upscale_video``: wires the decoder, the engine and the encoder for one file.

The output is written under a temporary name beside the target and renamed
only when complete, so a failed or cancelled run never leaves a half-written
file under the final name and never touches an existing one.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from vidsr.devices import plan_cpu_threads, resolve_devices
from vidsr.engine import Engine, EngineOptions, with_cpu_plan
from vidsr.errors import OptionsError, OutputError, VidsrError
from vidsr.io.decode import Decoder
from vidsr.io.encode import EncodeOptions, Encoder, choose_output_layout
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.probe import VideoInfo, check_input_path, probe
from vidsr.models import SRModel, load_model
from vidsr.pipeline import StageTiming, run_pipeline

log = logging.getLogger("vidsr")


@dataclass(frozen=True)
class TranscodeOptions:
    """Everything about one upscaling run that is not the model or the encoder."""

    batch_size: int | None = None  # None: 1 on a CPU, 4 on CUDA
    on_error: str = "fail"  # "fail" or "skip" undecodable frames
    overwrite: bool = False
    progress: bool | None = None  # None: only when stderr is a terminal
    queue_depth: int = 3
    ffmpeg: str | None = None  # path of a system ffmpeg to encode with, or None for PyAV


@dataclass
class TranscodeResult:
    """What a run produced, for the summary line and for callers."""

    output: Path
    frames: int
    skipped: int
    wall_s: float
    size_bytes: int
    width: int
    height: int
    timing: StageTiming = field(default_factory=StageTiming)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        mib = self.size_bytes / (1 << 20)
        text = (
            f"{self.output}: {self.frames} frames at {self.width}x{self.height}"
            f" in {self.wall_s:.1f} s ({self.fps:.2f} fps), {mib:.1f} MiB"
        )
        if self.skipped:
            text += f"; {self.skipped} undecodable frames replaced by their predecessor"
        return text


def check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse what would lose data before any work starts."""
    check_input_path(src)
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: output is the input file; choose another output name")
    if dst.is_dir():
        raise OutputError(f"{dst}: is a directory; give an output file name")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst}: already exists (use --overwrite to replace it)")
    if not dst.parent.is_dir():
        raise OutputError(f"{dst.parent}: output folder does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise OutputError(f"{dst.parent}: output folder is not writable")


# Encoders that need whole chroma samples: odd sizes are refused in subsampled formats.
_EVEN_SIZE_CODECS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc",
                     "av1_nvenc", "prores_ks")


def check_frame_size(codec: str, layout: PlaneLayout, width: int, height: int) -> None:
    """Refuse, before any work, a frame size the encoder cannot take in this layout."""
    odd_w = layout.log2_chroma_w and width % 2
    odd_h = layout.log2_chroma_h and height % 2
    if codec in _EVEN_SIZE_CODECS and (odd_w or odd_h):
        raise OptionsError(
            f"{codec} cannot encode {width}x{height} in {layout.pix_fmt}: chroma subsampling"
            " needs an even width and height; choose another --scale, --pix-fmt yuv444p,"
            " or --codec ffv1"
        )


def temporary_output_path(dst: Path) -> Path:
    """A hidden name beside ``dst``; the same extension makes the muxer pick the same container."""
    token = secrets.token_hex(4)
    return dst.with_name(f".{dst.name}.vidsr-{token}{dst.suffix}")


def _progress_bar(info: VideoInfo, enabled: bool | None) -> tqdm:
    if enabled is None:
        enabled = sys.stderr.isatty()
    total = info.frame_count or info.frame_count_estimate
    return tqdm(
        total=total, unit="frame", disable=not enabled, dynamic_ncols=True,
        desc=info.path.name, leave=False,
    )


def upscale_video(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | Path | SRModel = "compact",
    scale: int | None = None,
    weights: str | Path | None = None,
    allow_unsafe_weights: bool = False,
    engine: EngineOptions | None = None,
    encode: EncodeOptions | None = None,
    options: TranscodeOptions | None = None,
) -> TranscodeResult:
    """Upscale the video ``src`` into ``dst``: the main job of vidsr.

    Audio, subtitles, chapters and metadata are carried over; every frame keeps
    its timestamp; colour tags and the sample aspect ratio survive.
    """
    src, dst = Path(src), Path(dst)
    options = options or TranscodeOptions()
    encode = encode or EncodeOptions()
    if options.batch_size is not None and options.batch_size < 1:
        raise OptionsError(f"batch size must be at least 1, got {options.batch_size}")
    check_paths(src, dst, options.overwrite)
    info = probe(src)
    sr_model = model if isinstance(model, SRModel) else load_model(
        model, scale=scale, weights=weights, allow_unsafe=allow_unsafe_weights
    )
    engine = engine or EngineOptions()
    on_cpu = all(device.type == "cpu" for device in resolve_devices(engine.device))
    threads = plan_cpu_threads() if on_cpu else None
    if threads:
        engine = with_cpu_plan(engine, threads)
    out_w, out_h = info.width * sr_model.scale, info.height * sr_model.scale
    out_layout = choose_output_layout(encode.codec, info.layout, encode.pix_fmt)
    check_frame_size(encode.codec, out_layout, out_w, out_h)
    # Nothing may fail between here and the `with` that closes the engine (its CPU workers
    # and the process's torch threads).
    runner = Engine(sr_model, engine)
    log.info(
        "%s: %dx%d %s -> %dx%d %s with %s x%d on %s (%s)",
        src, info.width, info.height, info.layout.pix_fmt, out_w, out_h, out_layout.pix_fmt,
        sr_model.name, sr_model.scale, runner.device, str(runner.dtype).removeprefix("torch."),
    )

    # On a CPU the network already uses every core; batches of one keep its working set in
    # cache (measured faster than 4, benchmarks/RESULTS.md). GPUs want larger batches.
    batch_size = options.batch_size or (1 if on_cpu else 4)
    codec_threads = threads.decoder if threads else 0
    if threads and not encode.threads:
        encode = replace(encode, threads=threads.encoder)

    tmp = temporary_output_path(dst)
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            stack.enter_context(runner)
            decoder = stack.enter_context(
                Decoder(src, batch_size=batch_size, on_error=options.on_error,
                        threads=codec_threads)
            )
            encoder = stack.enter_context(
                _open_sink(options.ffmpeg, tmp, info, out_w, out_h, out_layout, encode)
            )
            bar = stack.enter_context(_progress_bar(info, options.progress))

            written = 0

            def write(batch: FrameBatch) -> None:
                nonlocal written
                encoder.write(batch)
                written += len(batch)
                bar.update(len(batch))

            infer = runner.infer_stage(info.colour, out_layout)
            timing = run_pipeline(decoder, [("infer", infer)], write, depth=options.queue_depth)
            skipped = decoder.skipped
        publish(tmp, dst, options.overwrite)
    except VidsrError as exc:
        tmp.unlink(missing_ok=True)
        # Users know the output by its final name, not the temporary one.
        raise type(exc)(str(exc).replace(str(tmp), str(dst))) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return TranscodeResult(
        output=dst, frames=written, skipped=skipped, wall_s=time.perf_counter() - started,
        size_bytes=dst.stat().st_size, width=out_w, height=out_h, timing=timing,
    )


def publish(tmp: Path, dst: Path, overwrite: bool) -> None:
    """Give the finished file its final name in one step.

    Without ``overwrite`` a hard link is used, which fails if ``dst`` appeared
    while we worked, so a file created meanwhile is never replaced.
    """
    if overwrite:
        os.replace(tmp, dst)
        return
    appeared = OutputError(f"{dst}: appeared while upscaling; not replaced (use --overwrite)")
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise appeared from None
    except OSError:  # filesystems without hard links: the check at the start must do
        if dst.exists():
            raise appeared from None
        os.replace(tmp, dst)
        return
    tmp.unlink()


def _open_sink(
    ffmpeg: str | None, tmp: Path, info: VideoInfo, width: int, height: int,
    layout: PlaneLayout, encode: EncodeOptions,
) -> Encoder:
    # The temporary name keeps the target's extension, so the container is chosen from it.
    if ffmpeg is None:
        return Encoder(tmp, info, width=width, height=height, layout=layout, options=encode)
    from vidsr.io.ffmpeg_sink import FFmpegEncoder

    return FFmpegEncoder(tmp, info, width=width, height=height, layout=layout, options=encode,
                         ffmpeg=ffmpeg)

